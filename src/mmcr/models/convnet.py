"""A small four-stage ConvNet: the CPU default encoder.

Sized for 28 x 28 grayscale Fashion-MNIST and 32 x 32 CIFAR images on a laptop CPU.
Each stage is ``convs_per_stage`` blocks of conv3x3 -> BatchNorm -> ReLU; stages 2-4
halve the resolution (a stride-2 first convolution by default, or a 2 x 2 max-pool), so
a 28 x 28 input goes 28 -> 14 -> 7 -> 4 before global average pooling. The channel
widths are ``width x (1, 2, 4, 8)``: 32-64-128-256 by default, ``feature_dim = 8 width``.

>>> import torch
>>> from mmcr.models import build_encoder
>>> encoder = build_encoder("convnet", in_channels=1)
>>> encoder(torch.randn(4, 1, 28, 28)).shape
torch.Size([4, 256])
"""

from __future__ import annotations

import torch
from torch import nn

DOWNSAMPLE_MODES = ("stride", "pool")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    # The convolution has no bias: the BatchNorm that follows has its own shift.
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ConvNet(nn.Module):
    """Four stages of conv3x3-BN-ReLU blocks and a global average pool.

    Args:
        in_channels: channels of the input images (1 for Fashion-MNIST, 3 for RGB).
        width: channels of the first stage; the stages have ``width * (1, 2, 4, 8)``.
        convs_per_stage: conv-BN-ReLU blocks per stage (1 is the fast default).
        downsample: ``"stride"`` (the first convolution of stages 2-4 has stride 2) or
            ``"pool"`` (a 2 x 2 max-pool, ceil mode, after stages 1-3).
        pool_size: the final average pool's output grid: 1 (global average pooling) or
            g > 1, which keeps a coarse g x g spatial layout (flattened) in the features,
            useful for small centred images such as Fashion-MNIST.

    Input ``(N, in_channels, H, W)`` float images; output ``(N, feature_dim)`` features
    with ``feature_dim = 8 * width * pool_size**2``.
    """

    feature_dim: int

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        convs_per_stage: int = 1,
        downsample: str = "stride",
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}.")
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}.")
        if convs_per_stage < 1:
            raise ValueError(f"convs_per_stage must be at least 1, got {convs_per_stage}.")
        if downsample not in DOWNSAMPLE_MODES:
            raise ValueError(
                f"downsample must be one of {', '.join(DOWNSAMPLE_MODES)}, got {downsample!r}."
            )
        if pool_size < 1:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size}.")
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, out_channels in enumerate(widths):
            if stage > 0 and downsample == "pool":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for block in range(convs_per_stage):
                stride = 2 if stage > 0 and block == 0 and downsample == "stride" else 1
                layers.extend(_conv_bn_relu(channels, out_channels, stride))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.feature_dim = widths[-1] * pool_size * pool_size
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` to features ``(N, feature_dim)``."""
        return torch.flatten(self.pool(self.features(x)), 1)
