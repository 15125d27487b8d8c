"""A lower bound on the mutual information between two views, on the unit sphere.

Schaeffer et al. (2024), arXiv 2406.09366: perfectly aligned and uniform
embeddings maximise the reconstruction + entropy lower bound on the mutual information
between the embeddings of two views (Gallager 1968; Rodriguez-Galvez et al., ICML 2023):

    I(Z1; Z2) = H(Z1) - H(Z1 | Z2) >= E[log q(Z1 | Z2)] + H(Z1)

for any conditional density q, because -E[log q(Z1 | Z2)] >= H(Z1 | Z2) (Gibbs). Here
Z1, Z2 lie on S^{D-1} (MMCR L2-normalises every view) and densities are with respect to
the surface measure of S^{D-1}. All quantities are in nats.

Read below the uniform maximum. Adding and subtracting log |S^{D-1}| (the entropy of
the uniform distribution, the largest any law on the sphere has) splits the bound into

    bound = gain - deficit,
    gain    = E[log q(Z1 | Z2)] + log |S^{D-1}|   (>= 0: alignment; 0 for independent views)
    deficit = log |S^{D-1}| - H(Z1) = KL(p_Z1 || uniform)   (>= 0: non-uniformity)

so for a given alignment the bound is largest, equal to the gain, exactly when the
embeddings are uniform; "aligned and uniform maximise the bound" is then "large gain,
zero deficit". Both pieces are differences of quantities that are each huge in high
dimension (log |S^127| = -127 nats), which is why they are reported rather than the
absolute reconstruction term and entropy.

Reconstruction term. q is a von Mises-Fisher density centred on the other view,
q(z1 | z2) = C_D(kappa) exp(kappa z1.z2), so E[log q] = log C_D(kappa) + kappa R with
R = E[z1.z2]. kappa is the maximum-likelihood one, A_D(kappa) = R (0 when R <= 0), which
makes the gain >= 0; fitting one parameter on the same pairs is optimistic by O(1/N).

Entropy term. The deficit is estimated by :func:`~mmcr.geometry.sphere_entropy.entropy_deficit`:
a reference-corrected kNN estimate, which on known answers is far closer than the plain
Kozachenko-Leonenko estimate in high dimension (that one is kept as ``bound_knn``).

What it can say, and what it cannot:
- The population bound is <= I(Z1; Z2). Its estimate is not a certified bound: no
  finite sample can rule out structure finer than its neighbour distances, so the
  deficit can be under-estimated; benchmarks/mi_validation.py measures by how much,
  against the sample size, at D = 8, 32 and 128 (``reliable`` flags samples below the
  size it validates).
- The bound is tight when Z1 is uniform and Z1 | Z2 is a vMF around Z2. It is loose, and
  can be far below 0 (vacuous: I >= 0 always), when the embeddings are non-uniform, e.g.
  near a subspace: the isotropic q cannot follow an anisotropic conditional, and the
  deficit grows faster than the gain. A negative bound says "far from uniform", not
  "no information".
- An invertible map applied to both views leaves I(Z1; Z2) unchanged but moves the bound:
  the bound measures alignment and uniformity, as the paper states, not the information.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from mmcr.geometry.sphere_entropy import (
    _as_float64,
    _normalise_rows,
    entropy_deficit,
    sphere_entropy_knn,
)
from mmcr.geometry.von_mises_fisher import (
    _check_dim,
    bessel_ratio,
    log_bessel_iv,
    log_sphere_area,
    sample_vmf,
    vmf_kappa_mle,
    vmf_log_normalizer,
)

__all__ = [
    "MIN_SAMPLES_PER_DIM",
    "bessel_ratio",
    "log_bessel_iv",
    "log_sphere_area",
    "mi_lower_bound",
    "mi_reliability",
    "sample_vmf",
    "sphere_entropy_knn",
    "vmf_kappa_mle",
    "vmf_log_normalizer",
]

# The sizes from which benchmarks/mi_validation.py finds the debiased deficit within
# max(0.5 nats, 10 %) of the truth on every known answer, and the reported one never
# under-stated beyond that: N >= 256 at D = 8 and 32 (the smallest size measured), 512 at
# D = 128 (results/mi_validation/table.md).
MIN_SAMPLES_PER_DIM = 4
MIN_SAMPLES = 256


def mi_reliability(n_samples: int, dim: int, kappa: float = 0.0) -> tuple[bool, str]:
    """Whether ``n_samples`` embeddings of dimension ``dim`` are enough for the bound, and why.

    Reliable means: at least max(MIN_SAMPLES, MIN_SAMPLES_PER_DIM * dim) samples (the size
    from which the validation finds the estimate within its tolerance) and a finite kappa.
    The reason states by how much the reported bound errs low from fitting the entropy's
    reference on the same points, (D (D + 3) / 2 - 1) / 2N nats.
    """
    needed = max(MIN_SAMPLES, MIN_SAMPLES_PER_DIM * int(dim))
    if not math.isfinite(kappa):
        return False, "the views coincide (R = 1): the reconstruction term is infinite"
    if n_samples < needed:
        return False, (
            f"N = {n_samples} samples is too few for D = {dim}: the validation needs "
            f"N >= {needed} (max({MIN_SAMPLES}, {MIN_SAMPLES_PER_DIM} D)) for the entropy deficit, "
            "below which the validation does not vouch for the estimate"
        )
    optimism = (dim * (dim + 3) / 2 - 1) / (2 * n_samples)
    return True, (
        f"N = {n_samples} >= {needed} samples for D = {dim}; the bound errs low by about "
        f"{optimism:.2g} nats (bound_debiased adds it back)"
    )


def mi_lower_bound(
    z1: ArrayLike | torch.Tensor,
    z2: ArrayLike | torch.Tensor | None = None,
    *,
    k: int = 1,
    normalize: bool = True,
    max_entropy_views: int = 4,
) -> dict[str, Any]:
    """Reconstruction + entropy lower bound on I(Z1; Z2) for embeddings on S^{D-1} (nats).

    bound = gain - deficit (module docstring): gain = E[log q(Z1 | Z2)] + log |S^{D-1}| with
    q a vMF centred on Z2 (kappa by maximum likelihood), deficit = log |S^{D-1}| - H(Z1)
    by the reference-corrected entropy estimate. Aligned views make the gain large,
    uniform embeddings make the deficit 0; the bound can never exceed the gain.

    Args:
        z1: (N, D) embeddings of the first view, paired row by row with ``z2``; or an
            (N, K, D) array of K >= 2 views per sample, with z2 omitted: then the
            reconstruction term pools every pair of distinct views (z.z' is symmetric, so
            ordered and unordered pairs agree) and the deficit is the mean over the first
            ``max_entropy_views`` views (views of one sample are not independent draws,
            so they are not pooled into one sample). With z2 given, it is z1's.
        z2: (N, D) embeddings of the second view, or None with a 3-D ``z1``.
        k: neighbour order of the entropy estimator.
        normalize: L2-normalise the embeddings first (MMCR's convention); if False they
            must already be unit vectors.
        max_entropy_views: views whose deficit is estimated (each costs two N x N
            similarity passes; their marginals are the same law).

    Returns:
        "bound" (gain - deficit), "reconstruction_gain", "entropy_deficit" (its pieces
        "deficit_reference_term" and "deficit_remainder"), "reconstruction" (E[log q], the
        gain - log |S^{D-1}|), "entropy" (log |S^{D-1}| - deficit), "max_entropy"
        (log |S^{D-1}|), "kappa", "mean_resultant_length" (R), the plain kNN estimates
        "entropy_knn" and "bound_knn", "n_samples", "dim", "n_views", "k", and
        "reliable" (bool) with its "reliability" reason, and "bound_debiased" (the bound
        plus "deficit_fit_optimism", the expected over-statement of the deficit by fitting
        its reference on the same points: an estimate of the population bound that errs
        neither way, where "bound" errs low). With R = 1 the gain and the bound
        are +inf.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z2 = rng.standard_normal((500, 8))
        >>> z1 = z2 + 0.3 * rng.standard_normal((500, 8))
        >>> out = mi_lower_bound(z1, z2)
        >>> out["bound"] > 0, out["bound"] <= out["reconstruction_gain"]
        (True, True)
    """
    views = _as_views(z1, z2, normalize)
    n, n_views, D = views.shape
    _check_dim(D)
    if n <= k:
        raise ValueError(f"Need more samples than k = {k}; got N = {n}.")
    if isinstance(max_entropy_views, bool) or not isinstance(max_entropy_views, int) or max_entropy_views < 1:
        raise ValueError(f"max_entropy_views must be a positive integer; got {max_entropy_views!r}.")
    # Mean of z_i.z_j over pairs i < j of distinct views: (|sum_i z_i|^2 - K) / (K (K - 1)).
    summed = views.sum(axis=1)
    pair_dots = (np.sum(summed * summed, axis=1) - n_views) / (n_views * (n_views - 1))
    R = float(np.clip(np.mean(pair_dots), -1.0, 1.0))
    kappa = vmf_kappa_mle(R, D)
    max_entropy = log_sphere_area(D)
    if math.isinf(kappa):
        reconstruction = math.inf
    else:
        reconstruction = float(vmf_log_normalizer(kappa, D)) + kappa * max(R, 0.0)
    gain = reconstruction + max_entropy
    # H(Z1) is the first view's; with K exchangeable views, the mean over the first few.
    used = range(1 if z2 is not None else min(n_views, max_entropy_views))
    parts = [entropy_deficit(views[:, v], k=k, normalize=False) for v in used]
    deficit = float(np.mean([p["deficit"] for p in parts]))
    deficit_knn = float(np.mean([p["deficit_knn"] for p in parts]))
    optimism = float(np.mean([p["fit_optimism"] for p in parts]))
    reliable, reason = mi_reliability(n, D, kappa)
    return {
        "bound": gain - deficit,
        "bound_debiased": gain - deficit + optimism,
        "reconstruction_gain": gain,
        "entropy_deficit": deficit,
        "deficit_reference_term": float(np.mean([p["reference_term"] for p in parts])),
        "deficit_remainder": float(np.mean([p["remainder"] for p in parts])),
        "deficit_fit_optimism": optimism,
        "reconstruction": reconstruction,
        "entropy": max_entropy - deficit,
        "max_entropy": max_entropy,
        "kappa": kappa,
        "mean_resultant_length": R,
        "entropy_knn": max_entropy - deficit_knn,
        "bound_knn": gain - deficit_knn,
        "n_samples": n,
        "dim": D,
        "n_views": n_views,
        "k": k,
        "reliable": reliable,
        "reliability": reason,
    }


def _as_views(z1: Any, z2: Any, normalize: bool) -> np.ndarray:
    """The (N, K, D) array of unit views from either calling convention."""
    first = _as_float64("z1", z1)
    if z2 is None:
        if first.ndim != 3 or first.shape[1] < 2:
            raise ValueError(
                "Pass z1 and z2 of shape (N, D), or a single z1 of shape (N, K, D) with K >= 2; "
                f"got z1 of shape {first.shape} and no z2."
            )
        return _normalise_rows("z1", first, normalize)
    second = _as_float64("z2", z2)
    if first.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"z1 and z2 must both have shape (N, D); got {first.shape} and {second.shape}.")
    return np.stack(
        [_normalise_rows("z1", first, normalize), _normalise_rows("z2", second, normalize)],
        axis=1,
    )
