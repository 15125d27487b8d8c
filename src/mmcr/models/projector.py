"""Projector heads (MLPs) and the encoder + projector network that MMCR trains.

The reference recipes use bias-free projectors: CIFAR/STL ``2048 -> 512 -> 128``
(``build_projector(2048, [512], 128)``) and ImageNet ``2048 -> 8192 -> 8192 -> 512``
(``build_projector(2048, [8192, 8192], 512)``).

>>> import torch
>>> from mmcr.models import build_projector
>>> projector = build_projector(2048, [512], 128)
>>> projector(torch.randn(4, 2048)).shape
torch.Size([4, 128])
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn


def build_projector(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int,
    *,
    bias: bool = False,
    batch_norm: bool = True,
) -> nn.Sequential:
    """An MLP ``(N, in_dim) -> (N, out_dim)``.

    Each hidden layer is ``Linear -> BatchNorm1d -> ReLU`` (``Linear -> ReLU`` when
    ``batch_norm`` is false); the output layer is a single ``Linear``. With
    ``bias=False`` no Linear layer has a bias (the hidden BatchNorm layers keep their
    affine shift). An empty ``hidden_dims`` gives one linear map.
    """
    dims = [in_dim, *hidden_dims, out_dim]
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"Projector dimensions must be positive integers, got in_dim={in_dim!r}, "
                f"hidden_dims={list(hidden_dims)!r}, out_dim={out_dim!r}."
            )
    layers: list[nn.Module] = []
    for d_in, d_out in pairwise(dims[:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if batch_norm:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=bias))
    return nn.Sequential(*layers)


class MMCRNetwork(nn.Module):
    """An encoder followed by a projector.

    ``forward(x)`` maps images ``(N, C, H, W)`` to ``(features, projections)`` of shapes
    ``(N, feature_dim)`` and ``(N, out_dim)``; the loss sees the projections, the
    evaluations (kNN, linear probe) the backbone features from :meth:`embed`.
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    @property
    def feature_dim(self) -> int:
        """Dimension of the backbone features (the encoder's ``feature_dim``)."""
        return int(self.encoder.feature_dim)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features, projections)``: ``(N, feature_dim)`` and ``(N, out_dim)``."""
        features = self.encoder(x)
        return features, self.projector(features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of images ``(N, C, H, W)``."""
        return self.encoder(x)
