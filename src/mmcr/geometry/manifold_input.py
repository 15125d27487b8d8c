"""Validation of manifold inputs at the boundary of the capacity functions.

A manifold is an ``(M, N)`` array or tensor of M samples x N features; a set of P manifolds
is a sequence of them (or one ``(P, M, N)`` array). Every check raises a ``ValueError``
that names the manifold at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ManifoldsLike", "check_kappa", "check_manifolds"]

ManifoldsLike = Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor


def check_manifolds(manifolds: ManifoldsLike) -> tuple[list[torch.Tensor], float]:
    """Validate P manifolds ``(M_i, N)``; returns them as float64 tensors and the input's eps.

    A stacked ``(P, M, N)`` array is accepted as P manifolds of M samples. Raises
    ``ValueError`` naming the manifold for: fewer than 2 manifolds, a manifold that is not
    a 2-D array, an empty manifold, a different number of features, non-finite values.
    """
    if isinstance(manifolds, np.ndarray | torch.Tensor):
        if manifolds.ndim != 3:
            raise ValueError(
                "expected a sequence of (samples, features) arrays or one (P, M, N) array, "
                f"got an array of shape {tuple(manifolds.shape)}"
            )
        items: list[Any] = list(manifolds)
    else:
        items = list(manifolds)
    if len(items) < 2:
        raise ValueError(
            "need at least 2 manifolds to measure capacity (it is about telling them apart), "
            f"got {len(items)}"
        )
    out: list[torch.Tensor] = []
    eps = float(np.finfo(np.float64).eps)
    features: int | None = None
    for i, item in enumerate(items):
        x = item.detach().cpu() if isinstance(item, torch.Tensor) else torch.as_tensor(np.asarray(item))
        if x.ndim != 2:
            raise ValueError(
                f"manifold {i} must be a 2-D (samples, features) array, got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"manifold {i} is empty (0 samples of {x.shape[1]} features)")
        if x.shape[1] == 0:
            raise ValueError(f"manifold {i} has 0 features")
        if features is None:
            features = int(x.shape[1])
        elif x.shape[1] != features:
            raise ValueError(
                f"manifold {i} has {x.shape[1]} features but manifold 0 has {features}: "
                "all manifolds must be in the same space"
            )
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"manifold {i} must be real-valued, got dtype {x.dtype}")
        if x.is_floating_point():
            eps = max(eps, float(torch.finfo(x.dtype).eps))
        x = x.double().contiguous()
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"manifold {i} has {bad} non-finite values (NaN or inf)")
        out.append(x)
    return out, eps


def check_kappa(kappa: float) -> float:
    if not (isinstance(kappa, int | float) and math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be a finite number >= 0 (in units of the centre norm), got {kappa!r}")
    return float(kappa)
