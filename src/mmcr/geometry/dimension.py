"""Total dimension of a data set: the participation ratio and the components for a share of the variance.

Both read the eigenvalues ``lambda_i`` of the covariance of all samples (centred on their
mean), as Cohen et al. (Nat. Commun. 11, 746, 2020, Methods) measure the dimension of a
whole layer beside the manifold dimension:

* participation ratio ``(sum_i lambda_i)^2 / sum_i lambda_i^2``: between 1 (one direction)
  and the rank (isotropic);
* explained-variance dimension: the smallest k whose top-k components hold ``fraction``
  (default 90 %) of the variance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["covariance_spectrum", "explained_variance_dimension", "participation_ratio", "total_dimension"]

DataLike = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


def covariance_spectrum(data: DataLike) -> torch.Tensor:
    """Eigenvalues of the covariance of all samples, descending (float64).

    Args:
        data: an ``(S, N)`` array of samples x features, or a sequence of such arrays (the
            manifolds of :func:`~mmcr.geometry.capacity.manifold_capacity`), concatenated.
    """
    if isinstance(data, np.ndarray | torch.Tensor):
        parts = [data]
    else:
        parts = list(data)
        if not parts:
            raise ValueError("expected samples: got an empty sequence")
    tensors = [
        p.detach().cpu().double() if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)).double()
        for p in parts
    ]
    for i, t in enumerate(tensors):
        if t.ndim != 2 or t.shape[0] == 0:
            raise ValueError(
                f"part {i} must be a non-empty 2-D (samples, features) array, got shape {tuple(t.shape)}"
            )
        if t.shape[1] != tensors[0].shape[1]:
            raise ValueError(f"part {i} has {t.shape[1]} features but part 0 has {tensors[0].shape[1]}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"part {i} has non-finite values (NaN or inf)")
    x = torch.cat(tensors)
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {x.shape[0]}")
    x = x - x.mean(dim=0)
    # the smaller Gram matrix has the same non-zero eigenvalues
    gram = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    return torch.linalg.eigvalsh(gram / x.shape[0]).clamp(min=0).flip(0)


def participation_ratio(data: DataLike) -> float:
    """``(sum lambda)^2 / sum lambda^2`` of the covariance eigenvalues (0 for constant data)."""
    eig = covariance_spectrum(data)
    denominator = float(eig.square().sum())
    return float(eig.sum()) ** 2 / denominator if denominator > 0 else 0.0


def explained_variance_dimension(data: DataLike, fraction: float = 0.9) -> int:
    """The smallest number of principal components that hold ``fraction`` of the variance."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    eig = covariance_spectrum(data)
    total = float(eig.sum())
    if total <= 0:
        return 0
    share = (eig.cumsum(0) / total).numpy()
    return int(np.searchsorted(share, fraction - 1e-12) + 1)


def total_dimension(data: DataLike, fraction: float = 0.9) -> dict[str, float]:
    """Participation ratio, explained-variance dimension and the number of features, as a dict."""
    eig_features = (data if isinstance(data, np.ndarray | torch.Tensor) else next(iter(data))).shape[-1]
    return {
        "participation_ratio": participation_ratio(data),
        "explained_variance_dimension": float(explained_variance_dimension(data, fraction)),
        "fraction": fraction,
        "features": float(eig_features),
    }
