"""The von Mises-Fisher distribution on S^{D-1}, and the Bessel functions it needs, in log space.

vMF(mu, kappa) has density C_D(kappa) exp(kappa mu.z) with respect to the surface measure
of S^{D-1}, where

    C_D(kappa) = kappa^(D/2 - 1) / ((2 pi)^(D/2) I_(D/2 - 1)(kappa)),

and mean resultant length E[mu.z] = A_D(kappa) = I_(D/2)(kappa) / I_(D/2 - 1)(kappa). Its
entropy is -log C_D(kappa) - kappa A_D(kappa). Because the integral of exp(v.z) over the
sphere is 1 / C_D(|v|) for any v in R^D, products of vMF densities integrate in closed
form (used by :mod:`mmcr.geometry.mi_known_answers`).

Bessel functions are evaluated in log space: scipy's exponentially scaled ``ive`` where it
is representable, the uniform (Debye) asymptotic expansion for large order or argument
(Abramowitz & Stegun 9.7.7 with 9.3.9-10), and the power series for tiny arguments; so
D in the thousands and kappa close to 0 or huge are handled.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

__all__ = [
    "bessel_ratio",
    "log_bessel_iv",
    "log_sphere_area",
    "sample_vmf",
    "vmf_entropy",
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
    return -0.5 * np.log(2.0 * math.pi * rho) + rho_minus_x + nu * log_x_ratio + np.log1p(correction)


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
            raise ValueError("With a single (D,) mean direction, pass the number of samples n >= 1.")
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


def vmf_entropy(kappa: float, D: int) -> float:
    """Differential entropy (nats) of vMF(mu, kappa) on S^{D-1}: -log C_D(kappa) - kappa A_D(kappa).

    log |S^{D-1}| at kappa = 0 (the uniform distribution); falls without bound as kappa grows.
    """
    D = _check_dim(D)
    if not kappa >= 0 or not math.isfinite(kappa):
        raise ValueError(f"kappa must be finite and >= 0; got {kappa}.")
    return -float(vmf_log_normalizer(kappa, D)) - kappa * float(bessel_ratio(D, kappa))
