"""Projector heads and the encoder + projector network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcr.models import MMCRNetwork, build_encoder, build_projector


def test_cifar_projector_shapes_and_layout() -> None:
    projector = build_projector(2048, [512], 128)
    kinds = [type(m) for m in projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert projector(torch.randn(4, 2048)).shape == (4, 128)


def test_imagenet_projector_shapes_on_meta_device() -> None:
    # 2048 -> 8192 -> 8192 -> 512 has 88M weights: build it on the meta device (no memory).
    with torch.device("meta"):
        projector = build_projector(2048, [8192, 8192], 512)
        out = projector(torch.empty(4, 2048))
    assert out.shape == (4, 512)
    linears = [m for m in projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (2048, 8192),
        (8192, 8192),
        (8192, 512),
    ]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in projector) == 2


def test_no_biases_by_default() -> None:
    projector = build_projector(16, [32, 32], 8)
    linears = [m for m in projector if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert all(m.bias is None for m in linears)
    with_bias = build_projector(16, [32, 32], 8, bias=True)
    assert all(m.bias is not None for m in with_bias if isinstance(m, nn.Linear))


def test_hidden_batch_norm_present_and_optional() -> None:
    projector = build_projector(16, [32, 24], 8)
    norms = [m for m in projector if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in norms] == [32, 24]
    assert isinstance(projector[-1], nn.Linear)  # nothing after the output layer
    plain = build_projector(16, [32, 24], 8, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain)
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]


def test_no_hidden_layers_is_one_linear_map() -> None:
    projector = build_projector(16, [], 8)
    assert len(projector) == 1 and isinstance(projector[0], nn.Linear)
    assert projector(torch.randn(3, 16)).shape == (3, 8)


@pytest.mark.parametrize(
    ("in_dim", "hidden", "out_dim"), [(0, [8], 4), (8, [0], 4), (8, [8], -1), (8, [2.5], 4)]
)
def test_bad_dimensions_raise(in_dim: int, hidden: list[int], out_dim: int) -> None:
    with pytest.raises(ValueError, match="positive integers"):
        build_projector(in_dim, hidden, out_dim)


def test_mmcr_network_forward_and_embed() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("convnet", in_channels=1, width=8)
    network = MMCRNetwork(encoder, build_projector(encoder.feature_dim, [32], 16)).eval()
    x = torch.randn(5, 1, 28, 28)
    features, projections = network(x)
    assert features.shape == (5, 64) and projections.shape == (5, 16)
    assert network.feature_dim == 64
    torch.testing.assert_close(network.embed(x), features)
    torch.testing.assert_close(network.projector(features), projections)
