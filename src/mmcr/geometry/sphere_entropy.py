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
a deficit of 12 nats for a law near a 16-dimensional subspace whose deficit is 32 nats).

Reference-corrected estimate (the default). Split the deficit with a fitted reference
density r on the sphere whose density is known in closed form:

    KL(p || uniform) = E_p[log r(Z) + log |S^{D-1}|] + KL(p || r).

The first term is a plain sample mean, and a lower estimate of the deficit (Gibbs: it is
the deficit minus KL(p || r)) when r is fixed; fitted on the same points it is optimistic
by about (parameters) / 2N = (D (D + 3) / 2 - 1) / 2N nats (Wilks), which raises the
deficit: the bound then errs low, as a lower bound should. That amount is returned
("fit_optimism"), so that it can be removed for an estimate that errs neither way.

The second term is >= 0 and small when r fits p; it is estimated by the kNN divergence
estimator of Wang, Kulkarni and Verdu (2009) against N - 1 samples drawn from r, the same
number as the sample has neighbours, so that its bias vanishes when p = r (both distances
then have the same law). A negative estimate of it is set to 0 (the divergence cannot be
negative), which can only raise the deficit.

r is the projected normal PN(m, Sigma), the law of x / |x| for x ~ N(m, Sigma), fitted by
maximum likelihood (EM over the lost radius, :func:`fit_projected_normal`). Its density is
a 1-D integral in closed form (:class:`ProjectedNormal`); it models a mean direction (a
cluster) and anisotropy (embeddings near a subspace, a low effective rank) together, and
contains the uniform law (m = 0, Sigma = I) and the angular central Gaussian (m = 0).
Sigma is shrunk towards the identity by D / N, so that with few samples r is close to
uniform and the estimate falls back to the plain kNN one. Multi-modal structure (several
clusters) is left to the kNN remainder, which in high dimension over-states it.

Neither estimate is a bound: a finite sample cannot rule out structure finer than its
nearest-neighbour distances, so any estimate of a divergence from samples can fall short
of it. What each one's error is, on distributions whose deficit is known, is measured by
benchmarks/mi_validation.py and summarised in docs/analyses.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import linalg, special

from mmcr.geometry.von_mises_fisher import _TINY, _check_dim, log_sphere_area

__all__ = [
    "ProjectedNormal",
    "entropy_deficit",
    "fit_projected_normal",
    "log_radial_integral",
    "sphere_entropy_knn",
]

_RADIAL_NODES = 160
_RADIAL_WINDOW = 40.0  # Laplace half-widths of the radial integrand covered by the quadrature


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
        if k == 1:
            neighbour[start : start + block.shape[0]] = np.argmax(block, axis=1)
        else:
            block *= -1.0
            neighbour[start : start + block.shape[0]] = np.argpartition(block, k - 1, axis=1)[:, k - 1]
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


@functools.lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = special.roots_legendre(_RADIAL_NODES)
    return np.asarray(nodes), np.asarray(weights)


def log_radial_integral(a: ArrayLike, order: int) -> np.ndarray:
    """log J_n(a) = log int_0^inf s^(n-1) exp(-s^2/2 + a s) ds, elementwise, for order n >= 1.

    The integrand is log-concave with curvature >= 1, so Gauss-Legendre quadrature over
    +-40 Laplace half-widths around its mode (160 nodes) is accurate to rounding. J_n
    is the radial integral of the projected normal density; J_1(a) = sqrt(2 pi)
    e^(a^2/2) Phi(a), J_2(a) = 1 + a J_1(a), and J_(n+2) = a J_(n+1) + n J_n.
    """
    return _radial_integrals(np.asarray(a, dtype=np.float64), order)[0]


def _radial_integrals(a: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(log J_n(a), J_(n+1)(a) / J_n(a)) from one quadrature (module docstring of J)."""
    m = float(order) - 1.0
    mode = 0.5 * (a + np.sqrt(a * a + 4.0 * m))  # the root of m / s - s + a = 0
    if m == 0.0:
        mode = np.maximum(a, 0.0)
    width = 1.0 / np.sqrt(1.0 + m / np.maximum(mode * mode, 1e-300))
    low = np.maximum(mode - _RADIAL_WINDOW * width, 0.0)
    high = mode + _RADIAL_WINDOW * width
    nodes, weights = _legendre()
    half = 0.5 * (high - low)[..., None]
    s = 0.5 * (high + low)[..., None] + half * nodes
    log_f = -0.5 * s * s + a[..., None] * s
    if m > 0.0:
        log_f = log_f + m * np.log(np.maximum(s, 1e-300))
    peak = np.max(log_f, axis=-1, keepdims=True)
    weighted = weights * np.exp(log_f - peak)
    total = np.sum(weighted, axis=-1)
    log_j = peak[..., 0] + np.log(total * half[..., 0])
    return np.asarray(log_j), np.asarray(np.sum(weighted * s, axis=-1) / total)


@dataclass(frozen=True)
class ProjectedNormal:
    """PN(m, Sigma), the law of x / |x| for x ~ N(m, Sigma), on S^{D-1}.

    m = 0 is the angular central Gaussian; Sigma = I, m = 0 the uniform distribution.
    Its density per unit area, with A = z' Sigma^-1 z, B = z' Sigma^-1 m, C = m' Sigma^-1 m:

        r(z) = (2 pi)^(-D/2) |Sigma|^(-1/2) exp(-C/2) A^(-D/2) J_D(B / sqrt(A)).
    """

    mean: np.ndarray
    cov: np.ndarray

    def _forms(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        factor = linalg.cholesky(self.cov, lower=True)
        white_z = linalg.solve_triangular(factor, z.T, lower=True)
        white_m = linalg.solve_triangular(factor, self.mean, lower=True)
        A = np.sum(white_z * white_z, axis=0)
        return A, white_m @ white_z, float(white_m @ white_m)

    def log_density(self, z: ArrayLike) -> np.ndarray:
        """log r(z) at the rows of z (unit vectors), per unit area of S^{D-1}."""
        points = np.asarray(z, dtype=np.float64).reshape(-1, self.cov.shape[0])
        D = points.shape[1]
        A, B, C = self._forms(points)
        _, log_det = np.linalg.slogdet(self.cov)
        return np.asarray(
            -0.5 * D * math.log(2.0 * math.pi)
            - 0.5 * log_det
            - 0.5 * C
            - 0.5 * D * np.log(A)
            + log_radial_integral(B / np.sqrt(A), D)
        )

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """(n, D) draws, unit vectors."""
        generator = np.random.default_rng(rng)
        x = (
            self.mean
            + generator.standard_normal((n, self.cov.shape[0])) @ linalg.cholesky(self.cov, lower=True).T
        )
        return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def fit_projected_normal(
    z: ArrayLike | torch.Tensor,
    *,
    shrinkage: float | None = None,
    normalize: bool = True,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> ProjectedNormal:
    """Maximum-likelihood PN(m, Sigma) by EM over the lost radius, Sigma shrunk towards I.

    The radius r of x = r z has posterior density proportional to
    r^(D-1) exp(-A r^2 / 2 + B r), whose moments are ratios of J integrals:
    E[r] = J_(D+1)(a) / (J_D(a) sqrt(A)), E[r^2] = J_(D+2)(a) / (J_D(a) A), a = B / sqrt(A).
    The M-step is m = mean(E[r] z), Sigma = mean(E[r^2] z z') - m m', then
    Sigma <- (1 - s) Sigma + s (trace(Sigma) / D) I with s = min(1, D / N) by default (so
    that few samples give a reference close to uniform). With m held at 0 this is Tyler's
    (1987) fixed point for the angular central Gaussian. PN(c m, c^2 Sigma) is the same
    law for every c > 0; the fit keeps trace(Sigma) = D.

    Args:
        z: (N, D) points (L2-normalised here when ``normalize``).
        shrinkage: s in [0, 1]; None for min(1, D / N).
        normalize: project the rows onto the sphere first.
        max_iter, tol: iteration limit and relative change of (m, Sigma) to stop at.
    """
    points = _check_points(z, 1, normalize)
    n, D = points.shape
    s = min(1.0, D / n) if shrinkage is None else float(shrinkage)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1]; got {shrinkage}.")
    model = ProjectedNormal(np.zeros(D), np.eye(D))
    for _ in range(max_iter):
        A, B, _ = model._forms(points)
        a = B / np.sqrt(A)
        ratio = _radial_integrals(a, D)[1]  # J_(D+1) / J_D; J_(D+2) / J_D = a ratio + D
        r1 = ratio / np.sqrt(A)
        r2 = (a * ratio + D) / A
        mean = np.mean(r1[:, None] * points, axis=0)
        cov = (points * r2[:, None]).T @ points / n - np.outer(mean, mean)
        cov = (1.0 - s) * cov + s * (np.trace(cov) / D) * np.eye(D)
        scale = math.sqrt(D / np.trace(cov))
        mean, cov = mean * scale, 0.5 * (cov + cov.T) * scale * scale
        change = np.linalg.norm(cov - model.cov) + np.linalg.norm(mean - model.mean)
        model = ProjectedNormal(mean, cov)
        if change < tol * math.sqrt(D):
            break
    return model


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
        of KL(p || r), before clipping at 0), "fit_optimism" ((D (D + 3) / 2 - 1) / 2N, the
        expected amount by which fitting r on the same points raises the reference term,
        hence the deficit; measured to match at N >= 4D), "deficit_knn" (log|S| - H_knn),
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
    fitted = fit_projected_normal(points, normalize=False)
    reference_term = float(np.mean(fitted.log_density(points))) + max_entropy
    reference = fitted.sample(n - 1, rng)
    nu = np.maximum(_knn_distance(points, reference, k, same=False), 1e-300)
    # Wang-Kulkarni-Verdu with M = N - 1 reference points: the log(M / (N - 1)) term is 0.
    remainder = float(np.mean(_log_cap_area(nu, D) - log_rho_cap))
    shrinkage = min(1.0, D / n)
    # Wilks: the in-sample log-likelihood exceeds the best reference's by (parameters) / 2N
    # on average; the parameters are m and a trace-normalised Sigma.
    optimism = 0.0 if shrinkage >= 1.0 else (D * (D + 3) / 2 - 1) / (2 * n)
    return {
        "deficit": reference_term + max(remainder, 0.0),
        "fit_optimism": optimism,
        "reference_term": reference_term,
        "remainder": remainder,
        "deficit_knn": max_entropy - knn_entropy,
        "max_entropy": max_entropy,
    }
