"""Entropy on the unit sphere S^{D-1}, estimated as a deficit below the uniform maximum.

The uniform distribution has the largest entropy on the sphere, log |S^{D-1}| =
log(2 pi^(D/2) / Gamma(D/2)), known in closed form. So the entropy of embeddings is
reported as the *deficit* KL(p || uniform) = log |S^{D-1}| - H(p) >= 0 (nats), which is
0 exactly for uniform embeddings. Densities are with respect to the surface measure.

Kozachenko-Leonenko (kNN) estimate, written for the sphere as a (D-1)-manifold: with
theta_i the geodesic distance from z_i to its k-th nearest neighbour among the other
N - 1 points and V(theta) the area of a spherical cap of geodesic radius theta,

    H_knn = psi(N) - psi(k) + (1/N) sum_i log V(theta_i),
    V(theta) = (|S^{D-1}| / 2) I_(sin^2 theta)((D - 1)/2, 1/2)   for theta <= pi/2

(I_x(a, b) the regularised incomplete beta function; V(theta) = |S^{D-1}| - V(pi - theta)
beyond). For the uniform distribution P(cap) = V / |S^{D-1}| exactly, so H_knn is unbiased
there. For non-uniform densities in high dimension it is not: the k-th neighbour is far
away, the density is not constant over its cap, and the estimate of the entropy comes out
far too high (measured, benchmarks/mi_validation.py: at D = 128 and N = 4096 it reports
a deficit of 21 nats for an anisotropic law whose deficit is 61 nats).

Reference-corrected estimate (the default). Split the deficit with a fitted reference
density r on the sphere whose density is known in closed form:

    KL(p || uniform) = E_p[log r(Z) + log |S^{D-1}|] + KL(p || r).

The first term is a plain sample mean. The second is >= 0 and small when r fits p; it is
estimated by the kNN divergence estimator of Wang, Kulkarni and Verdu (2009) against
N - 1 samples drawn from r, the same number as the sample has neighbours, so that its
bias vanishes when p = r (both distances then have the same law) and is small when p is
close to r. A negative estimate of it is set to 0 (the divergence cannot be negative),
which can only raise the deficit. r is the angular central Gaussian ACG(Sigma),

    r(z) = |Sigma|^(-1/2) (z' Sigma^-1 z)^(-D/2) / |S^{D-1}|,

the law of x / |x| for x ~ N(0, Sigma). It captures anisotropy (embeddings near a subspace,
a low effective rank) in closed form; Sigma is Tyler's (1987) maximum-likelihood estimate,
shrunk towards the identity by D / N (so that with few samples r is close to uniform and
the estimate falls back to the plain kNN one). Being antipodally symmetric, the ACG does
not model a single cluster; the kNN remainder does.

Neither estimate is a bound: a finite sample cannot rule out structure finer than its
nearest-neighbour distances, so any estimate of a divergence from samples can fall short
of it. What each one's error is, on distributions whose deficit is known, is measured by
benchmarks/mi_validation.py and summarised in docs/analyses.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import linalg, special

from mmcr.geometry.von_mises_fisher import _TINY, _check_dim, log_sphere_area

__all__ = [
    "acg_log_density",
    "entropy_deficit",
    "fit_acg",
    "sample_acg",
    "sphere_entropy_knn",
]


def _log_cap_area(theta: np.ndarray, D: int) -> np.ndarray:
    """log V(theta): log surface area of a geodesic cap of radius theta in (0, pi] on S^{D-1}."""
    a = 0.5 * (D - 1.0)
    log_half_area = log_sphere_area(D) - math.log(2.0)
    small = theta <= 0.5 * math.pi
    x = np.sin(np.where(small, theta, math.pi - theta)) ** 2  # the same x for theta, pi - theta
    regularised = special.betainc(a, 0.5, x)
    with np.errstate(divide="ignore"):
        log_reg = np.log(np.maximum(regularised, _TINY))
    tiny = regularised < 1e-250
    if np.any(tiny):
        # I_x(a, 1/2) = x^a (1-x)^(1/2) / (a B(a, 1/2)) 2F1(a + 1/2, 1; a + 1; x)  (A&S 26.5.23).
        xt = np.maximum(x[tiny], 1e-300)
        log_reg[tiny] = (
            a * np.log(xt)
            + 0.5 * np.log1p(-xt)
            - math.log(a)
            - special.betaln(a, 0.5)
            + np.log(special.hyp2f1(a + 0.5, 1.0, a + 1.0, xt))
        )
    # Caps beyond a hemisphere: V(theta) = |S| - V(pi - theta) = |S| (1 - I/2).
    return np.where(
        small,
        log_half_area + log_reg,
        log_half_area + math.log(2.0) + np.log1p(-0.5 * np.exp(log_reg)),
    )


def _as_float64(name: str, z: Any) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        z = z.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(z, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values.")
    return array


def _normalise_rows(name: str, z: np.ndarray, normalize: bool) -> np.ndarray:
    norms = np.linalg.norm(z, axis=-1, keepdims=True)
    if normalize:
        if np.any(norms == 0):
            raise ValueError(f"{name} has zero vectors, which have no direction on the sphere.")
        return z / norms
    if not np.allclose(norms, 1.0, atol=1e-5):
        raise ValueError(f"{name} rows must be unit vectors (or pass normalize=True).")
    return z


def _check_points(z: Any, k: int, normalize: bool) -> np.ndarray:
    points = _as_float64("z", z)
    if points.ndim != 2:
        raise ValueError(f"z must be an (N, D) array; got shape {points.shape}.")
    n, D = points.shape
    _check_dim(D)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    if n <= k:
        raise ValueError(f"Need more points than k = {k}; got N = {n}.")
    return _normalise_rows("z", points, normalize)


def _knn_distance(
    queries: np.ndarray, points: np.ndarray, k: int, *, same: bool, chunk_size: int = 2048
) -> np.ndarray:
    """Geodesic distance from each query to its k-th nearest row of ``points``.

    With ``same`` the queries are the points and a point is not its own neighbour.
    """
    neighbour = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], chunk_size):
        block = queries[start : start + chunk_size] @ points.T
        if same:
            rows = np.arange(block.shape[0])
            block[rows, start + rows] = -np.inf
        # The k-th largest cosine is the k-th nearest point.
        neighbour[start : start + block.shape[0]] = np.argpartition(-block, k - 1, axis=1)[:, k - 1]
    # The distance from the difference vector is exact even for very close points.
    chord = np.linalg.norm(queries - points[neighbour], axis=1)
    return np.asarray(2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0)))


def sphere_entropy_knn(
    z: ArrayLike | torch.Tensor, k: int = 1, normalize: bool = True, chunk_size: int = 2048
) -> float:
    """Kozachenko-Leonenko entropy (nats) of points on S^{D-1}, w.r.t. the surface measure.

    H_hat = psi(N) - psi(k) + mean_i log V(theta_i), theta_i the geodesic distance from
    z_i to its k-th nearest neighbour and V the spherical-cap area (module docstring).
    Unbiased for the uniform distribution; too high for concentrated ones in high
    dimension (see :func:`entropy_deficit` for the corrected estimate).

    Args:
        z: (N, D) samples, N > k, D >= 2 (L2-normalised here when ``normalize``).
        k: which neighbour (larger k: less variance, more bias for peaked densities).
        normalize: project the rows onto the sphere first; if False they must be unit.
        chunk_size: rows per block of the N x N similarity computation (memory bound).

    Returns:
        The entropy estimate; log |S^{D-1}| for the uniform distribution up to noise.

    Raises:
        ValueError: on bad shapes, too few points, or duplicate points (zero distances).
    """
    points = _check_points(z, k, normalize)
    theta = _knn_distance(points, points, k, same=True, chunk_size=chunk_size)
    if np.any(theta <= 0.0):
        raise ValueError("z contains duplicate points; the nearest-neighbour entropy is undefined.")
    n, D = points.shape
    return float(special.digamma(n) - special.digamma(k) + np.mean(_log_cap_area(theta, D)))


def fit_acg(
    z: ArrayLike | torch.Tensor,
    *,
    shrinkage: float | None = None,
    normalize: bool = True,
    max_iter: int = 200,
    tol: float = 1e-7,
) -> np.ndarray:
    """Tyler's (1987) estimate of the angular central Gaussian's Sigma, shrunk towards I.

    Fixed point Sigma = (1 - a) (D / N) sum_i z_i z_i' / (z_i' Sigma^-1 z_i) + a I, with
    trace(Sigma) = D (the ACG does not depend on the scale of Sigma). Without shrinkage
    (a = 0) this is the maximum-likelihood estimate, which needs N > D points in general
    position; the default a = min(1, D / N) keeps it well conditioned.

    Args:
        z: (N, D) points (L2-normalised here when ``normalize``).
        shrinkage: a in [0, 1]; None for min(1, D / N).
        normalize: project the rows onto the sphere first.
        max_iter, tol: iteration limit and relative change (Frobenius) to stop at.

    Returns:
        (D, D) symmetric positive-definite Sigma with trace D.
    """
    points = _check_points(z, 1, normalize)
    n, D = points.shape
    a = min(1.0, D / n) if shrinkage is None else float(shrinkage)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1]; got {shrinkage}.")
    sigma = np.eye(D)
    if a == 1.0:
        return sigma
    for _ in range(max_iter):
        quad = _acg_quadratic_forms(points, sigma)
        update = (points / quad[:, None]).T @ points * (D / n)
        update = (1.0 - a) * update + a * np.eye(D)
        update *= D / np.trace(update)
        change = np.linalg.norm(update - sigma) / np.linalg.norm(sigma)
        sigma = 0.5 * (update + update.T)
        if change < tol:
            break
    return sigma


def _acg_quadratic_forms(z: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """z_i' Sigma^-1 z_i for every row, through a Cholesky factor of Sigma."""
    factor = linalg.cholesky(sigma, lower=True)
    whitened = linalg.solve_triangular(factor, z.T, lower=True)
    return np.asarray(np.sum(whitened * whitened, axis=0))


def acg_log_density(z: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """log r(z) of the angular central Gaussian ACG(Sigma) on S^{D-1} (per unit surface area).

    r(z) = |Sigma|^(-1/2) (z' Sigma^-1 z)^(-D/2) / |S^{D-1}| for unit z; Sigma = I is uniform.
    """
    points = np.asarray(z, dtype=np.float64)
    cov = np.asarray(sigma, dtype=np.float64)
    D = points.shape[-1]
    if cov.shape != (D, D):
        raise ValueError(f"sigma must be ({D}, {D}) for points of dimension {D}; got {cov.shape}.")
    _, log_det = np.linalg.slogdet(cov)
    quad = _acg_quadratic_forms(points.reshape(-1, D), cov)
    log_r = -log_sphere_area(D) - 0.5 * log_det - 0.5 * D * np.log(quad)
    return np.asarray(log_r.reshape(points.shape[:-1]))


def sample_acg(sigma: ArrayLike, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """n draws of ACG(Sigma): x / |x| for x ~ N(0, Sigma); an (n, D) array of unit vectors."""
    cov = np.asarray(sigma, dtype=np.float64)
    generator = np.random.default_rng(rng)
    x = generator.standard_normal((n, cov.shape[0])) @ linalg.cholesky(cov, lower=True).T
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def entropy_deficit(
    z: ArrayLike | torch.Tensor,
    *,
    k: int = 1,
    normalize: bool = True,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, float]:
    """KL(p || uniform) = log |S^{D-1}| - H(p) of points on S^{D-1}, reference-corrected (nats).

    deficit = E_p[log r + log |S^{D-1}|] + max(0, KL_knn(p || r)) with r the fitted angular
    central Gaussian (module docstring). The plain kNN estimate is returned beside it.

    Args:
        z: (N, D) samples (L2-normalised here when ``normalize``), N > k.
        k: neighbour order of the kNN terms.
        normalize: project the rows onto the sphere first; if False they must be unit.
        rng: seed or Generator for the N - 1 reference draws (fixed by default, so that
            the same points give the same answer).

    Returns:
        {"deficit", "reference_term" (E_p[log r + log|S|]), "remainder" (the kNN estimate
        of KL(p || r), before clipping at 0), "deficit_knn" (log|S| - H_knn),
        "max_entropy" (log |S^{D-1}|)}.
    """
    points = _check_points(z, k, normalize)
    n, D = points.shape
    rho = _knn_distance(points, points, k, same=True)
    if np.any(rho <= 0.0):
        raise ValueError("z contains duplicate points; the nearest-neighbour entropy is undefined.")
    log_rho_cap = _log_cap_area(rho, D)
    max_entropy = log_sphere_area(D)
    knn_entropy = float(special.digamma(n) - special.digamma(k) + np.mean(log_rho_cap))
    sigma = fit_acg(points, normalize=False)
    reference_term = float(np.mean(acg_log_density(points, sigma))) + max_entropy
    reference = sample_acg(sigma, n - 1, rng)
    nu = np.maximum(_knn_distance(points, reference, k, same=False), 1e-300)
    # Wang-Kulkarni-Verdu with M = N - 1 reference points: the log(M / (N - 1)) term is 0.
    remainder = float(np.mean(_log_cap_area(nu, D) - log_rho_cap))
    return {
        "deficit": reference_term + max(remainder, 0.0),
        "reference_term": reference_term,
        "remainder": remainder,
        "deficit_knn": max_entropy - knn_entropy,
        "max_entropy": max_entropy,
    }
