"""Encoders: output shapes, feature_dim, stems and max-pool, parameter counts, helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcr.models import (
    ENCODERS,
    BasicBlock,
    Bottleneck,
    ConvNet,
    ResNet,
    build_encoder,
    convert_sync_batchnorm,
    to_channels_last,
)


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "feature_dim"),
    [
        ("convnet", 1, 28, 256),
        ("convnet", 3, 32, 256),
        ("resnet18_cifar", 3, 32, 512),
        ("resnet18_cifar", 1, 16, 512),
        ("resnet50_cifar", 3, 16, 2048),
        ("resnet18", 3, 64, 512),
        ("resnet50", 3, 32, 2048),
    ],
)
def test_output_shape_and_feature_dim(
    name: str, in_channels: int, size: int, feature_dim: int
) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, in_channels=in_channels)
    assert isinstance(encoder.feature_dim, int)
    assert encoder.feature_dim == feature_dim
    with torch.no_grad():
        features = encoder(torch.randn(2, in_channels, size, size))
    assert features.shape == (2, feature_dim)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_every_registered_name_builds() -> None:
    assert set(ENCODERS) == {"convnet", "resnet18_cifar", "resnet50_cifar", "resnet18", "resnet50"}


def test_gradients_reach_every_parameter() -> None:
    encoder = build_encoder("convnet", in_channels=1, width=8)
    encoder(torch.randn(4, 1, 28, 28)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize(
    ("kwargs", "feature_dim"), [({"width": 16}, 128), ({"convs_per_stage": 2}, 256)]
)
def test_convnet_options(kwargs: dict[str, int], feature_dim: int) -> None:
    encoder = build_encoder("convnet", in_channels=1, **kwargs)
    assert encoder.feature_dim == feature_dim
    assert encoder(torch.randn(2, 1, 28, 28)).shape == (2, feature_dim)


def test_convnet_pool_downsampling_reaches_4x4_on_28x28() -> None:
    encoder = ConvNet(in_channels=1, width=8, downsample="pool")
    assert _count(encoder, nn.MaxPool2d) == 3
    maps = encoder.features(torch.randn(2, 1, 28, 28))
    assert maps.shape == (2, 64, 4, 4)
    stride_maps = ConvNet(in_channels=1, width=8).features(torch.randn(2, 1, 28, 28))
    assert stride_maps.shape == (2, 64, 4, 4)


def test_resnet_parameter_counts() -> None:
    # The standard ResNets without their classification layer.
    assert 11.1e6 < _num_params(build_encoder("resnet18_cifar")) < 11.2e6
    assert 23.4e6 < _num_params(build_encoder("resnet50_cifar")) < 23.6e6
    assert _num_params(build_encoder("resnet18")) == 11_176_512
    assert _num_params(build_encoder("resnet50")) == 23_508_032


def test_block_layouts() -> None:
    r18 = build_encoder("resnet18_cifar")
    r50 = build_encoder("resnet50_cifar")
    assert isinstance(r18, ResNet) and isinstance(r50, ResNet)
    assert [len(s) for s in (r18.layer1, r18.layer2, r18.layer3, r18.layer4)] == [2, 2, 2, 2]
    assert [len(s) for s in (r50.layer1, r50.layer2, r50.layer3, r50.layer4)] == [3, 4, 6, 3]
    assert _count(r18, BasicBlock) == 8 and _count(r18, Bottleneck) == 0
    assert _count(r50, Bottleneck) == 16 and _count(r50, BasicBlock) == 0


def _layer1_input_size(encoder: nn.Module, size: int) -> tuple[int, int]:
    seen: list[tuple[int, int]] = []
    handle = encoder.layer1.register_forward_hook(  # type: ignore[union-attr]
        lambda _m, inputs, _out: seen.append(tuple(inputs[0].shape[-2:]))
    )
    encoder(torch.randn(2, 3, size, size))
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("name", "kwargs", "pools", "layer1_size"),
    [
        ("resnet18_cifar", {}, 0, (32, 32)),  # 3x3 stride-1 stem, no max-pool
        ("resnet18_cifar", {"maxpool": True}, 1, (16, 16)),  # the STL-10 recipe
        ("resnet18", {}, 1, (8, 8)),  # 7x7 stride 2, then max-pool stride 2
        ("resnet18", {"maxpool": False}, 0, (16, 16)),
    ],
)
def test_stem_and_maxpool_option(
    name: str, kwargs: dict[str, bool], pools: int, layer1_size: tuple[int, int]
) -> None:
    encoder = build_encoder(name, width=8, **kwargs)
    assert _count(encoder, nn.MaxPool2d) == pools
    with torch.no_grad():
        assert _layer1_input_size(encoder, 32) == layer1_size


def test_stem_kernels() -> None:
    cifar = build_encoder("resnet18_cifar", width=8)
    imagenet = build_encoder("resnet18", width=8)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)


@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet50_cifar"])
def test_zero_init_residual(name: str) -> None:
    plain = build_encoder(name, width=8)
    zeroed = build_encoder(name, width=8, zero_init_residual=True)
    blocks = [m for m in zeroed.modules() if isinstance(m, BasicBlock | Bottleneck)]
    assert blocks and all(torch.all(b.last_bn.weight == 0) for b in blocks)
    assert all(
        torch.all(m.last_bn.weight == 1)
        for m in plain.modules()
        if isinstance(m, BasicBlock | Bottleneck)
    )


def test_kaiming_init_of_convolutions() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18_cifar")
    weight = encoder.layer3[0].conv2.weight
    fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]
    assert weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"resnet18_cifar") as info:
        build_encoder("vit_b16")
    for name in ENCODERS:
        assert name in str(info.value)


def test_unknown_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="maxpool"):
        build_encoder("convnet", maxpool=True)
    with pytest.raises(ValueError, match="downsample"):
        build_encoder("convnet", downsample="avg")


def test_name_is_case_insensitive() -> None:
    assert build_encoder(" ConvNet ", width=4).feature_dim == 32


def test_to_channels_last_keeps_outputs() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("convnet", in_channels=1, width=8).eval()
    x = torch.randn(3, 1, 28, 28)
    expected = encoder(x)
    converted = to_channels_last(encoder)
    conv = next(m for m in converted.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = converted(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_convert_sync_batchnorm_replaces_every_batchnorm() -> None:
    encoder = convert_sync_batchnorm(build_encoder("resnet18_cifar", width=8))
    assert _count(encoder, nn.SyncBatchNorm) == _count(
        build_encoder("resnet18_cifar"), nn.BatchNorm2d
    )
    assert _count(encoder, nn.BatchNorm2d) == 0
    assert encoder.feature_dim == 64


def test_convnet_pool_size_keeps_a_spatial_grid() -> None:
    encoder = build_encoder("convnet", in_channels=1, width=8, pool_size=2)
    assert encoder.feature_dim == 8 * 8 * 4
    out = encoder(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 256)
    with pytest.raises(ValueError, match="pool_size"):
        build_encoder("convnet", pool_size=0)
