"""A lower bound on the mutual information between two views, on the unit sphere.

Schaeffer et al. (2024), arXiv 2406.09366: perfectly aligned and uniform
embeddings maximise the reconstruction + entropy lower bound on the mutual information
between the embeddings of two views (Gallager 1968; Rodriguez-Galvez et al., ICML 2023):

    I(Z1; Z2) = H(Z1) - H(Z1 | Z2) >= E[log q(Z1 | Z2)] + H(Z1)

for any conditional density q, because -E[log q(Z1 | Z2)] >= H(Z1 | Z2) (Gibbs). Here
Z1, Z2 lie on S^{D-1} (MMCR L2-normalises every view) and densities are with respect to
the surface measure of S^{D-1}. All quantities are in nats.

Reconstruction term. q is a von Mises-Fisher (vMF) density centred on the other view,

    q(z1 | z2) = C_D(kappa) exp(kappa z1.z2),
    C_D(kappa) = kappa^(D/2 - 1) / ((2 pi)^(D/2) I_(D/2 - 1)(kappa)),

so E[log q] = log C_D(kappa) + kappa R with R = E[z1.z2] (the mean resultant length
along the paired direction). Maximising over kappa >= 0 gives the vMF maximum-likelihood
equation A_D(kappa) = I_(D/2)(kappa) / I_(D/2 - 1)(kappa) = R (kappa = 0 when R <= 0).
Bessel functions are evaluated in log space: scipy's exponentially scaled ``ive`` where it
is representable, the uniform (Debye) asymptotic expansion for large order or argument
(Abramowitz & Stegun 9.7.7 with 9.3.9-10), and the power series for tiny arguments; so
D in the thousands and R close to 0 or 1 are handled.

Entropy term. H(Z1) by the Kozachenko-Leonenko k-nearest-neighbour estimator, written for
the sphere as a (D-1)-dimensional manifold: with theta_i the geodesic (great-circle)
distance from z_i to its k-th nearest neighbour among the other N - 1 points and V(theta)
the surface area of a spherical cap of geodesic radius theta,

    H_hat = psi(N) - psi(k) + (1/N) sum_i log V(theta_i),
    V(theta) = |S^{D-2}| int_0^theta sin^(D-2)(t) dt
             = (|S^{D-1}| / 2) I_(sin^2 theta)((D - 1)/2, 1/2)   for theta <= pi/2,

(I_x(a, b) the regularised incomplete beta function; V(theta) = |S^{D-1}| - V(pi - theta)
beyond pi/2). It follows from P(cap) ~ p(z_i) V(theta_i) and E[log of the k-th of N - 1
uniform spacings] = psi(k) - psi(N). For the uniform distribution P(cap) = V / |S^{D-1}|
exactly, so the estimator is unbiased there; for concentrated densities it is consistent,
with a bias that grows with D (as every nearest-neighbour estimator's does) — compare
values at equal N and D. The maximum, attained by the uniform distribution, is
log |S^{D-1}| = log(2 pi^(D/2) / Gamma(D/2)).

The reconstruction term uses the kappa fitted on the same pairs, so it is optimistic by
O(1/N); for independent Z1, Z2 the bound is close to 0 up to that and the entropy
estimator's noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import optimize, special

__all__ = [
    "bessel_ratio",
    "log_bessel_iv",
    "log_sphere_area",
    "mi_lower_bound",
    "sample_vmf",
    "sphere_entropy_knn",
    "vmf_kappa_mle",
    "vmf_log_normalizer",
]

_TINY = 1e-280

# Debye polynomials u_k(t) (Abramowitz & Stegun 9.3.9-10), as {power of t: coefficient}.
_DEBYE = (
    {1: 3 / 24, 3: -5 / 24},
    {2: 81 / 1152, 4: -462 / 1152, 6: 385 / 1152},
    {3: 30375 / 414720, 5: -369603 / 414720, 7: 765765 / 414720, 9: -425425 / 414720},
    {
        4: 4465125 / 39813120,
        6: -94121676 / 39813120,
        8: 349922430 / 39813120,
        10: -446185740 / 39813120,
        12: 185910725 / 39813120,
    },
)


def _check_dim(D: int) -> int:
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 2:
        raise ValueError(f"The sphere S^(D-1) needs an integer dimension D >= 2; got {D!r}.")
    return int(D)


def log_sphere_area(D: int) -> float:
    """log |S^{D-1}| = log(2 pi^(D/2) / Gamma(D/2)), the log surface area of the unit sphere in R^D.

    This is also the entropy (nats) of the uniform distribution on S^{D-1}, the largest
    entropy any distribution on the sphere can have.
    """
    D = _check_dim(D)
    return math.log(2.0) + 0.5 * D * math.log(math.pi) - math.lgamma(0.5 * D)


def _log_ive_debye(nu: float, x: np.ndarray) -> np.ndarray:
    """log(I_nu(x) e^-x) by the uniform asymptotic expansion, good for large nu or large x.

    With rho = sqrt(nu^2 + x^2) and tau = 1/rho (so t = nu/rho):
    log I_nu(x) = -log(2 pi rho)/2 + rho + nu log(x / (nu + rho)) + log(1 + sum_k u_k(t)/nu^k),
    where u_k(t)/nu^k = sum_j c_kj nu^(j-k) tau^j stays finite as nu -> 0 (it becomes the
    large-argument Hankel series there).
    """
    rho = np.hypot(nu, x)
    tau = 1.0 / rho
    correction = np.zeros_like(x)
    for k, poly in enumerate(_DEBYE, start=1):
        for j, coefficient in poly.items():
            correction = correction + coefficient * nu ** (j - k) * tau**j
    rho_minus_x = nu * nu / (rho + x)
    # log(x / (nu + rho)) = -log1p((nu + rho - x) / x): no cancellation when x >> nu.
    log_x_ratio = -np.log1p((nu + rho_minus_x) / x)
    return (
        -0.5 * np.log(2.0 * math.pi * rho) + rho_minus_x + nu * log_x_ratio + np.log1p(correction)
    )


def _log_ive_series(nu: float, x: np.ndarray) -> np.ndarray:
    """log(I_nu(x) e^-x) by the power series sum_m (x^2/4)^m / (m! Gamma(nu + m + 1)).

    Used for small arguments only (x^2/4 << nu + 1), where 24 terms are plenty.
    """
    quarter_sq = 0.25 * x * x
    term = np.ones_like(x)
    total = np.ones_like(x)
    for m in range(1, 25):
        term = term * quarter_sq / (m * (nu + m))
        total = total + term
    return nu * np.log(0.5 * x) - math.lgamma(nu + 1.0) + np.log(total) - x


def _log_ive(nu: float, x: np.ndarray) -> np.ndarray:
    """log(I_nu(x)) - x for nu >= 0 and x > 0, elementwise, without under- or overflow."""
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = special.ive(nu, x)
        out = np.log(np.where(direct > _TINY, direct, 1.0))
    bad = ~(np.isfinite(direct) & (direct > _TINY))
    if np.any(bad):
        xb = x[bad]
        # The series converges fast while x^2/4 <= (nu + 1)/4; beyond, the uniform expansion
        # is accurate because there ive only fails for large orders or huge arguments.
        asymptotic = xb > math.sqrt(nu + 1.0)
        fallback = np.empty_like(xb)
        if np.any(asymptotic):
            fallback[asymptotic] = _log_ive_debye(nu, xb[asymptotic])
        if np.any(~asymptotic):
            fallback[~asymptotic] = _log_ive_series(nu, xb[~asymptotic])
        out[bad] = fallback
    return out


def log_bessel_iv(nu: float, x: ArrayLike) -> np.ndarray:
    """log I_nu(x), the log of the modified Bessel function of the first kind.

    Stable for orders in the thousands and arguments from 1e-300 to 1e300 (where
    ``scipy.special.iv`` under- or overflows and ``ive`` returns 0 or NaN).

    Args:
        nu: order, >= 0.
        x: arguments, >= 0 (log I_nu(0) is 0 for nu = 0 and -inf otherwise).

    Returns:
        Array of the shape of ``x``.
    """
    if not nu >= 0:
        raise ValueError(f"The order nu must be >= 0; got {nu}.")
    xs = np.asarray(x, dtype=np.float64)
    if np.any(xs < 0) or np.any(np.isnan(xs)):
        raise ValueError("log_bessel_iv needs arguments x >= 0.")
    flat = xs.reshape(-1)
    out = np.full(flat.shape, 0.0 if nu == 0 else -np.inf)
    positive = flat > 0
    out[positive] = _log_ive(float(nu), flat[positive]) + flat[positive]
    return out.reshape(xs.shape)


def bessel_ratio(D: int, kappa: ArrayLike) -> np.ndarray:
    """A_D(kappa) = I_(D/2)(kappa) / I_(D/2-1)(kappa), the mean resultant length of a vMF.

    Increases from 0 (kappa = 0; A_D ~ kappa / D) to 1 (A_D ~ 1 - (D-1)/(2 kappa)).
    Computed as exp(log ive(D/2) - log ive(D/2 - 1)), so the e^kappa factors cancel exactly;
    1 - A_D is then resolved to about 1e-15 absolute (a few per cent relative at kappa ~ 1e13).
    """
    D = _check_dim(D)
    k = np.asarray(kappa, dtype=np.float64)
    if np.any(k < 0) or np.any(np.isnan(k)):
        raise ValueError("bessel_ratio needs kappa >= 0.")
    flat = k.reshape(-1)
    out = np.zeros(flat.shape)
    positive = flat > 0
    kp = flat[positive]
    out[positive] = np.exp(_log_ive(0.5 * D, kp) - _log_ive(0.5 * D - 1.0, kp))
    return np.minimum(out, 1.0).reshape(k.shape)


def vmf_log_normalizer(kappa: ArrayLike, D: int) -> np.ndarray:
    """log C_D(kappa), the log normaliser of the vMF density C_D(kappa) exp(kappa mu.z) on S^{D-1}.

    log C_D(kappa) = (D/2 - 1) log kappa - (D/2) log(2 pi) - log I_(D/2-1)(kappa), with the
    limit -log |S^{D-1}| at kappa = 0. Densities are per unit surface area of S^{D-1}.
    """
    D = _check_dim(D)
    k = np.asarray(kappa, dtype=np.float64)
    if np.any(k < 0) or np.any(np.isnan(k)):
        raise ValueError("vmf_log_normalizer needs kappa >= 0.")
    flat = k.reshape(-1)
    out = np.full(flat.shape, -log_sphere_area(D))
    positive = flat > 0
    kp = flat[positive]
    nu = 0.5 * D - 1.0
    out[positive] = nu * np.log(kp) - 0.5 * D * math.log(2.0 * math.pi) - (_log_ive(nu, kp) + kp)
    return out.reshape(k.shape)


def vmf_kappa_mle(mean_resultant_length: float, D: int) -> float:
    """Maximum-likelihood vMF concentration: the kappa >= 0 with A_D(kappa) = R.

    Args:
        mean_resultant_length: R = mean of mu.z over the samples, in [-1, 1].
        D: ambient dimension (the sphere is S^{D-1}).

    Returns:
        kappa; 0 when R <= 0 (the likelihood then peaks at the boundary kappa = 0) and
        ``inf`` when R = 1 (every sample equals its mean direction).
    """
    D = _check_dim(D)
    R = float(mean_resultant_length)
    if not -1.0 <= R <= 1.0:
        raise ValueError(f"The mean resultant length must lie in [-1, 1]; got {R}.")
    if R <= 0.0:
        return 0.0
    if R >= 1.0:
        return math.inf

    def gap(log_kappa: float) -> float:
        return float(bessel_ratio(D, math.exp(log_kappa))) - R

    # Banerjee et al. (2005) approximation as the first guess, then bracket and solve in log kappa.
    guess = max(R * (D - R * R) / ((1.0 - R) * (1.0 + R)), 1e-300)
    low = high = math.log(guess)
    while gap(low) > 0.0:
        low -= 1.0
    while gap(high) < 0.0:
        high += 1.0
    if low == high:
        return guess
    return math.exp(optimize.brentq(gap, low, high, xtol=1e-14, rtol=1e-14, maxiter=200))


def sample_vmf(
    mean_direction: ArrayLike,
    kappa: float,
    n: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Draw von Mises-Fisher samples on S^{D-1} by Wood's (1994) rejection algorithm.

    The component along the mean, w = mu.z, has density proportional to
    exp(kappa w) (1 - w^2)^((D-3)/2); Wood's envelope (a transformed Beta((D-1)/2, (D-1)/2)
    variable) samples it exactly, and z = w mu + sqrt(1 - w^2) xi with xi uniform on the
    unit sphere of the complement of mu.

    Args:
        mean_direction: (D,) unit vector with ``n`` samples drawn around it, or (N, D) unit
            vectors with one sample drawn around each row.
        kappa: concentration, >= 0 (0 gives the uniform distribution).
        n: number of samples for a single (D,) mean direction.
        rng: a numpy Generator or a seed.

    Returns:
        (n, D) or (N, D) float64 array of unit vectors.
    """
    generator = np.random.default_rng(rng)
    mu = np.asarray(mean_direction, dtype=np.float64)
    if mu.ndim == 1:
        if n is None or n < 1:
            raise ValueError(
                "With a single (D,) mean direction, pass the number of samples n >= 1."
            )
        mu = np.broadcast_to(mu, (n, mu.shape[0]))
    elif mu.ndim != 2:
        raise ValueError(f"mean_direction must be (D,) or (N, D); got shape {mu.shape}.")
    count, D = mu.shape
    _check_dim(D)
    if not np.allclose(np.linalg.norm(mu, axis=1), 1.0, atol=1e-6):
        raise ValueError("mean_direction rows must be unit vectors.")
    if not kappa >= 0 or not math.isfinite(kappa):
        raise ValueError(f"kappa must be finite and >= 0; got {kappa}.")
    w = _sample_vmf_cosine(float(kappa), D, count, generator)
    xi = generator.standard_normal((count, D))
    xi -= np.sum(xi * mu, axis=1, keepdims=True) * mu
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    return np.asarray(w[:, None] * mu + np.sqrt(np.clip(1.0 - w * w, 0.0, None))[:, None] * xi)


def _sample_vmf_cosine(kappa: float, D: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Wood's (1994) rejection sampler for w = mu.z of a vMF(mu, kappa) on S^{D-1}."""
    m1 = D - 1.0
    if kappa == 0.0:
        # Uniform on the sphere: (w + 1)/2 ~ Beta((D-1)/2, (D-1)/2).
        return 2.0 * rng.beta(m1 / 2.0, m1 / 2.0, size=count) - 1.0
    b = m1 / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + m1 * m1))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m1 * math.log1p(-x0 * x0)
    out = np.empty(count)
    filled = 0
    while filled < count:
        want = count - filled
        batch = max(16, int(want * 1.3))
        beta = rng.beta(m1 / 2.0, m1 / 2.0, size=batch)
        w = (1.0 - (1.0 + b) * beta) / (1.0 - (1.0 - b) * beta)
        u = rng.uniform(size=batch)
        accept = kappa * w + m1 * np.log1p(-x0 * w) - c >= np.log(u)
        taken = w[accept][:want]
        out[filled : filled + taken.shape[0]] = taken
        filled += taken.shape[0]
    return out


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


def sphere_entropy_knn(
    z: ArrayLike | torch.Tensor, k: int = 1, normalize: bool = True, chunk_size: int = 2048
) -> float:
    """Kozachenko-Leonenko entropy (nats) of points on S^{D-1}, w.r.t. the surface measure.

    H_hat = psi(N) - psi(k) + mean_i log V(theta_i), theta_i the geodesic distance from
    z_i to its k-th nearest neighbour and V the spherical-cap area (module docstring).

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
    points = _as_float64("z", z)
    if points.ndim != 2:
        raise ValueError(f"z must be an (N, D) array; got shape {points.shape}.")
    n, D = points.shape
    _check_dim(D)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    if n <= k:
        raise ValueError(f"Need more points than k = {k}; got N = {n}.")
    points = _normalise_rows("z", points, normalize)
    neighbour = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk_size):
        block = points[start : start + chunk_size] @ points.T
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = -np.inf  # a point is not its own neighbour
        # The k-th largest cosine is the k-th nearest point.
        part = np.argpartition(-block, k - 1, axis=1)[:, k - 1]
        neighbour[start : start + block.shape[0]] = part
    # Recompute the distance from the difference vector: exact even for very close points.
    chord = np.linalg.norm(points - points[neighbour], axis=1)
    theta = 2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0))
    if np.any(theta <= 0.0):
        raise ValueError("z contains duplicate points; the nearest-neighbour entropy is undefined.")
    log_v = _log_cap_area(theta, D)
    return float(special.digamma(n) - special.digamma(k) + np.mean(log_v))


def mi_lower_bound(
    z1: ArrayLike | torch.Tensor,
    z2: ArrayLike | torch.Tensor | None = None,
    *,
    k: int = 1,
    normalize: bool = True,
) -> dict[str, float]:
    """Reconstruction + entropy lower bound on I(Z1; Z2) for embeddings on S^{D-1} (nats).

    bound = E[log q(Z1 | Z2)] + H(Z1) with q a vMF centred on Z2, its kappa fitted by
    maximum likelihood, and H(Z1) the spherical Kozachenko-Leonenko estimate (see the
    module docstring). Aligned views (R -> 1) make the first term large, uniform
    embeddings make the second as large as it can be (log |S^{D-1}|).

    Args:
        z1: (N, D) embeddings of the first view, paired row by row with ``z2``; or an
            (N, K, D) array of K >= 2 views per sample, with z2 omitted: then the
            reconstruction term pools every pair of distinct views (z.z' is symmetric, so
            ordered and unordered pairs agree) and H(Z1) is the mean of the per-view
            entropies (views of one sample are not independent draws, so they are not
            pooled into one sample).
        z2: (N, D) embeddings of the second view, or None with a 3-D ``z1``.
        k: neighbour order of the entropy estimator.
        normalize: L2-normalise the embeddings first (MMCR's convention); if False they
            must already be unit vectors.

    Returns:
        {"bound", "reconstruction", "entropy", "kappa", "mean_resultant_length",
        "max_entropy" (log |S^{D-1}|), "n_samples", "dim", "n_views", "k"}; with R = 1
        the reconstruction term and the bound are +inf.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z2 = rng.standard_normal((500, 8))
        >>> z1 = z2 + 0.3 * rng.standard_normal((500, 8))
        >>> out = mi_lower_bound(z1, z2)
        >>> out["bound"] > 0
        True
    """
    first = _as_float64("z1", z1)
    if z2 is None:
        if first.ndim != 3 or first.shape[1] < 2:
            raise ValueError(
                "Pass z1 and z2 of shape (N, D), or a single z1 of shape (N, K, D) with K >= 2; "
                f"got z1 of shape {first.shape} and no z2."
            )
        views = _normalise_rows("z1", first, normalize)
    else:
        second = _as_float64("z2", z2)
        if first.ndim != 2 or first.shape != second.shape:
            raise ValueError(
                f"z1 and z2 must both have shape (N, D); got {first.shape} and {second.shape}."
            )
        views = np.stack(
            [_normalise_rows("z1", first, normalize), _normalise_rows("z2", second, normalize)],
            axis=1,
        )
    n, n_views, D = views.shape
    _check_dim(D)
    if n <= k:
        raise ValueError(f"Need more samples than k = {k}; got N = {n}.")
    # Mean of z_i.z_j over pairs i < j of distinct views: (|sum_i z_i|^2 - K) / (K (K - 1)).
    summed = views.sum(axis=1)
    pair_dots = (np.sum(summed * summed, axis=1) - n_views) / (n_views * (n_views - 1))
    R = float(np.clip(np.mean(pair_dots), -1.0, 1.0))
    kappa = vmf_kappa_mle(R, D)
    if math.isinf(kappa):
        reconstruction = math.inf
    else:
        reconstruction = float(vmf_log_normalizer(kappa, D)) + kappa * max(R, 0.0)
    if z2 is None:
        entropy = float(
            np.mean([sphere_entropy_knn(views[:, v], k, False) for v in range(n_views)])
        )
    else:
        entropy = sphere_entropy_knn(views[:, 0], k, False)
    return {
        "bound": reconstruction + entropy,
        "reconstruction": reconstruction,
        "entropy": entropy,
        "kappa": kappa,
        "mean_resultant_length": R,
        "max_entropy": log_sphere_area(D),
        "n_samples": n,
        "dim": D,
        "n_views": n_views,
        "k": k,
    }
