"""Residual networks (He et al., 2016) for CIFAR-sized and ImageNet-sized images.

Two stems:

- ``"cifar"``: one 3x3 stride-1 convolution, no max-pool by default (32 x 32 inputs keep
  their resolution into the first stage).
- ``"imagenet"``: a 7x7 stride-2 convolution followed by a 3x3 stride-2 max-pool.

The max-pool is an explicit option for both stems (``maxpool``): the STL-10 recipe uses
the CIFAR stem *with* the max-pool, which the reference code drops by accident.

The classification layer is left out: the network ends with a global average pool and
returns ``(N, feature_dim)`` features (512 for ResNet-18, 2048 for ResNet-50).

>>> import torch
>>> from mmcr.models import build_encoder
>>> encoder = build_encoder("resnet18_cifar")
>>> encoder(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 512])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STEMS = ("cifar", "imagenet")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    ``(N, in_channels, H, W) -> (N, channels, H / stride, W / stride)``.
    """

    expansion: int = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, C, H, W)`` feature maps."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, residual (ResNet-50).

    ``(N, in_channels, H, W) -> (N, 4 channels, H / stride, W / stride)``.
    """

    expansion: int = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``(N, C, H, W)`` feature maps."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Projection shortcut (1x1 conv + BN) only where the shape changes.
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """A ResNet backbone ending in a global average pool.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)``.
        in_channels: channels of the input images.
        stem: ``"cifar"`` (3x3 stride-1 conv) or ``"imagenet"`` (7x7 stride-2 conv).
        maxpool: whether a 3x3 stride-2 max-pool follows the stem; ``None`` takes the
            stem's default (``False`` for ``"cifar"``, ``True`` for ``"imagenet"``).
        zero_init_residual: start the last BatchNorm of each residual branch at
            gamma = 0, so every block begins as the identity (Goyal et al., 2017).
        width: channels of the first stage (64 in the standard networks); the stages
            have ``width * (1, 2, 4, 8)`` base channels.

    Input ``(N, in_channels, H, W)``; output ``(N, feature_dim)`` with
    ``feature_dim = 8 * width * block.expansion``.
    """

    feature_dim: int

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_channels: int = 3,
        stem: str = "cifar",
        maxpool: bool | None = None,
        zero_init_residual: bool = False,
        width: int = 64,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}.")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must give four positive block counts, got {tuple(layers)}.")
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}.")
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}.")
        if maxpool is None:
            maxpool = stem == "imagenet"
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        channels = width
        stages: list[nn.Sequential] = []
        for index, num_blocks in enumerate(layers):
            base = width * 2**index
            stride = 1 if index == 0 else 2
            blocks: list[nn.Module] = []
            for b in range(int(num_blocks)):
                blocks.append(block(channels, base, stride if b == 0 else 1))
                channels = base * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock | Bottleneck):
                    nn.init.zeros_(module.last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` to features ``(N, feature_dim)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(
    in_channels: int = 3,
    *,
    stem: str = "imagenet",
    maxpool: bool | None = None,
    zero_init_residual: bool = False,
    width: int = 64,
) -> ResNet:
    """ResNet-18 (BasicBlock, ``[2, 2, 2, 2]``), ``feature_dim = 8 * width`` (512)."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        in_channels,
        stem=stem,
        maxpool=maxpool,
        zero_init_residual=zero_init_residual,
        width=width,
    )


def resnet50(
    in_channels: int = 3,
    *,
    stem: str = "imagenet",
    maxpool: bool | None = None,
    zero_init_residual: bool = False,
    width: int = 64,
) -> ResNet:
    """ResNet-50 (Bottleneck, ``[3, 4, 6, 3]``), ``feature_dim = 32 * width`` (2048)."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        in_channels,
        stem=stem,
        maxpool=maxpool,
        zero_init_residual=zero_init_residual,
        width=width,
    )
