"""Geometry of multi-view embeddings: alignment, uniformity, effective rank, PPE.

Inputs are either ``(B, K, D)`` multi-view embeddings (B samples, K views) or ``(N, D)``
single-view embeddings. Every function L2-normalises the views first, as the MMCR loss
does, so the numbers describe points on the unit sphere S^{D-1}.

References: Wang and Isola, "Understanding Contrastive Representation Learning through
Alignment and Uniformity on the Hypersphere", ICML 2020 (alignment, uniformity);
Garrido et al., "RankMe", ICML 2023 (effective rank); Schaeffer et al. 2024, Eq. 4
(pretraining percent error).
"""

from __future__ import annotations

import math

import torch

from mmcr.objectives.base import check_finite, check_views, normalize_views
from mmcr.objectives.mmcr import pretraining_percent_error


def _views(z: torch.Tensor, min_views: int = 1) -> torch.Tensor:
    check_views(z, min_views=min_views)
    return normalize_views(z if z.dtype == torch.float64 else z.float())


def _points(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected an (N >= 2, D) matrix of embeddings, got shape {tuple(x.shape)}")
    check_finite(x, name="embeddings")
    return normalize_views(x if x.dtype == torch.float64 else x.float())


@torch.no_grad()
def alignment(z: torch.Tensor, form: str = "centroid") -> float:
    """How close the views of each sample are, on the unit sphere (0 = identical views).

    ``form="centroid"``: mean over samples and views of ``||z_nk - mu_n||^2``, with
    ``mu_n`` the centroid of sample n's normalised views (in [0, 1]; equals
    ``1 - mean_n ||mu_n||^2``). ``form="pairwise"``: Wang and Isola's
    ``E ||z_a - z_b||^2`` over all pairs of views of the same sample (alpha = 2, in
    [0, 4]); for K = 2 it is 4 times the centroid form.

    Args:
        z: ``(B, K, D)`` embeddings, K >= 2 for the pairwise form.
    """
    if form not in ("centroid", "pairwise"):
        raise ValueError(f"form must be 'centroid' or 'pairwise', got {form!r}")
    views = _views(z, min_views=2 if form == "pairwise" else 1)
    if form == "centroid":
        centroids = views.mean(dim=1, keepdim=True)
        return float((views - centroids).pow(2).sum(-1).mean())
    k = views.shape[1]
    dist2 = torch.cdist(views, views).pow(2)  # (B, K, K)
    off_diagonal = dist2.sum(dim=(1, 2)) / (k * (k - 1))
    return float(off_diagonal.mean())


@torch.no_grad()
def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang and Isola's uniformity ``log E_{i != j} exp(-t ||x_i - x_j||^2)`` (lower = more uniform).

    Args:
        x: ``(N, D)`` embeddings, or ``(B, K, D)``, in which case the uniformity of each
            view position's ``(B, D)`` set is computed and averaged.
        t: the temperature (2 in the paper).
    """
    if x.ndim == 3:
        views = _views(x)
        return sum(_uniformity(views[:, k], t) for k in range(views.shape[1])) / views.shape[1]
    return _uniformity(_points(x), t)


def _uniformity(points: torch.Tensor, t: float) -> float:
    dist2 = torch.pdist(points.double()).pow(2)
    return float(torch.logsumexp(-t * dist2, dim=0) - math.log(dist2.numel()))


@torch.no_grad()
def effective_rank(x: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe effective rank ``exp(-sum_i p_i log p_i)``, ``p_i = sigma_i / sum_j sigma_j + eps``.

    Between 1 (all embeddings on one line) and ``min(N, D)`` (isotropic).

    Args:
        x: an ``(N, D)`` embedding matrix, used as given (RankMe does not normalise), or
            ``(B, K, D)`` multi-view embeddings, in which case the ``B x D`` matrix of
            centroids of the normalised views is used (the matrix whose nuclear norm
            MMCR maximises).
    """
    if x.ndim == 3:
        matrix = _views(x).mean(dim=1)
    else:
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"expected (N >= 2, D) or (B, K, D) embeddings, got shape {tuple(x.shape)}")
        check_finite(x, name="embeddings")
        matrix = x.double()
    sigma = torch.linalg.svdvals(matrix.double())
    total = sigma.sum()
    if total <= 0:
        return 1.0
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def geometry_summary(z: torch.Tensor) -> dict[str, float]:
    """All metrics of this module for ``(B, K, D)`` embeddings, as a flat dict of floats."""
    out = {
        "alignment": alignment(z),
        "uniformity": uniformity(z),
        "effective_rank": effective_rank(z),
        "ppe": float(pretraining_percent_error(z)),
    }
    if z.shape[1] >= 2:
        out["alignment_pairwise"] = alignment(z, form="pairwise")
    return out


@torch.no_grad()
def wasserstein_uniformity(x: torch.Tensor) -> float:
    """Fang et al.'s uniformity: the W2 distance from the embeddings' Gaussian fit to the sphere's.

    The uniform distribution on S^{m-1} is close to ``N(0, I/m)`` for large m. With
    ``N(mu, Sigma)`` the Gaussian fit of the L2-normalised embeddings, the closed form of the
    2-Wasserstein distance between two Gaussians gives

        W2 = sqrt(||mu||^2 + 1 + tr(Sigma) - (2 / sqrt(m)) tr(Sigma^{1/2}))

    (Fang et al., "Rethinking the Uniformity Metric in Self-Supervised Learning", ICLR 2024;
    they report ``-W2`` so that larger is better). Here: lower = more uniform; 0 for an
    isotropic Gaussian fit, sqrt(2) for fully collapsed embeddings.

    Args:
        x: ``(N, D)`` embeddings, or ``(B, K, D)``, in which case the distance of each view
            position's ``(B, D)`` set is computed and averaged.
    """
    if x.ndim == 3:
        views = _views(x)
        return sum(_wasserstein_uniformity(views[:, k]) for k in range(views.shape[1])) / views.shape[1]
    return _wasserstein_uniformity(_points(x))


def _wasserstein_uniformity(points: torch.Tensor) -> float:
    points = points.double()
    mean = points.mean(dim=0)
    centred = points - mean
    covariance = centred.T @ centred / points.shape[0]
    root_trace = torch.linalg.eigvalsh(covariance).clamp(min=0).sqrt().sum()
    m = points.shape[1]
    squared = mean.square().sum() + 1.0 + covariance.trace() - 2.0 / math.sqrt(m) * root_trace
    return float(squared.clamp(min=0).sqrt())
