"""Pairs of views on S^{D-1} whose mutual information is known, to validate the MI bound.

Three families, each with a sampler and its true mutual information I(Z1; Z2) (nats),
the true entropy deficit KL(p_Z1 || uniform) and the true value of the population
reconstruction + entropy bound of :mod:`mmcr.geometry.mutual_information` (the bound with
the population R = E[z1.z2] and its kappa, and the true deficit):

* ``vmf_channel``: z1 uniform, z2 ~ vMF(z1, kappa). Closed form: z2 is uniform too, so
  I = log |S^{D-1}| - h_vMF(kappa) = log |S^{D-1}| + log C_D(kappa) + kappa A_D(kappa).
  The vMF q of the bound is the true conditional, so the bound equals I.
* ``gaussian_channel``: z1 uniform, z2 = (z1 + sigma g) / |z1 + sigma g| with g ~ N(0, I_D).
  The density of z2 given z1 depends on t = z1.z2 only (a projected normal):

      p(t) = (2 pi)^(-D/2) exp(-1 / (2 sigma^2)) J_D(t / sigma),
      J_D(a) = int_0^inf s^(D-1) exp(-s^2/2 + a s) ds,

  J computed by :func:`~mmcr.geometry.sphere_entropy.log_radial_integral`.
  z2 is uniform by symmetry, so I = log |S^{D-1}| + E[log p(T)], the expectation a 2-D
  Gauss quadrature over the two variables that make T: g_1 ~ N(0, 1) along z1 and the
  squared norm of the rest, sigma^2 chi^2_(D-1). Here the vMF q is not the true
  conditional, so the bound is below I.
* ``latent_views``: a latent c ~ vMF(mu, kappa_latent) (uniform when kappa_latent = 0: a
  cluster otherwise) and two views z1, z2 ~ vMF(c, kappa_view) independently given c, like
  two augmentations of one image. Because int exp(v.z) dz = 1 / C_D(|v|), the latent
  integrates out in closed form:

      p(z1)     = C(k0) C(k) / C(|k0 mu + k z1|),
      p(z1, z2) = C(k0) C(k)^2 / C(|k0 mu + k (z1 + z2)|),

  so I and the deficit are expectations of exact log densities, taken by a large Monte
  Carlo (returned with its standard error); E[z1.z2] = A_D(k)^2 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from mmcr.geometry.sphere_entropy import log_radial_integral
from mmcr.geometry.von_mises_fisher import (
    _check_dim,
    bessel_ratio,
    log_sphere_area,
    sample_vmf,
    vmf_entropy,
    vmf_kappa_mle,
    vmf_log_normalizer,
)

__all__ = [
    "KnownAnswer",
    "gaussian_channel",
    "gaussian_channel_log_density",
    "latent_views",
    "population_gain",
    "sample_gaussian_channel",
    "sample_latent_views",
    "sample_uniform",
    "vmf_channel",
]


@dataclass(frozen=True)
class KnownAnswer:
    """The true values for one distribution of pairs (nats).

    Attributes:
        mi: I(Z1; Z2).
        deficit: KL(p_Z1 || uniform) = log |S^{D-1}| - H(Z1).
        mean_resultant_length: R = E[z1.z2].
        bound: the population reconstruction + entropy bound, population_gain(R) - deficit.
        standard_error: Monte Carlo standard error of ``mi`` (0 for quadrature and closed forms).
    """

    mi: float
    deficit: float
    mean_resultant_length: float
    bound: float
    standard_error: float = 0.0


def sample_uniform(n: int, D: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """n points uniform on S^{D-1}: normalised standard Gaussians, (n, D)."""
    g = np.random.default_rng(rng).standard_normal((n, _check_dim(D)))
    return np.asarray(g / np.linalg.norm(g, axis=1, keepdims=True))


def population_gain(mean_resultant_length: float, D: int) -> float:
    """The bound's reconstruction gain log C_D(kappa) + kappa R + log |S^{D-1}| at kappa = mle(R)."""
    R = float(mean_resultant_length)
    kappa = vmf_kappa_mle(R, D)
    if math.isinf(kappa):
        return math.inf
    return float(vmf_log_normalizer(kappa, D)) + kappa * max(R, 0.0) + log_sphere_area(D)


def vmf_channel(kappa: float, D: int) -> KnownAnswer:
    """Known answer for z1 uniform, z2 ~ vMF(z1, kappa): I = log |S^{D-1}| - h_vMF(kappa)."""
    mi = log_sphere_area(D) - vmf_entropy(kappa, D)
    return KnownAnswer(mi=mi, deficit=0.0, mean_resultant_length=float(bessel_ratio(D, kappa)), bound=mi)


def gaussian_channel_log_density(t: np.ndarray, sigma: float, D: int) -> np.ndarray:
    """log p(z2 | z1) (per unit area of S^{D-1}) of the Gaussian channel, at cosines t = z1.z2."""
    D = _check_dim(D)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and > 0; got {sigma}.")
    t = np.asarray(t, dtype=np.float64)
    return np.asarray(
        -0.5 * D * math.log(2.0 * math.pi) - 0.5 / (sigma * sigma) + log_radial_integral(t / sigma, D)
    )


def _channel_cosines(g1: np.ndarray, rest: np.ndarray, sigma: float) -> np.ndarray:
    """T = z1.z2 from g_1 (along z1) and the squared norm of the other components of g."""
    along = 1.0 + sigma * g1
    return np.asarray(along / np.sqrt(along * along + sigma * sigma * rest))


def gaussian_channel(sigma: float, D: int, nodes: int = 96) -> KnownAnswer:
    """Known answer for z1 uniform, z2 = normalise(z1 + sigma g), by 2-D Gauss quadrature.

    E[f(T)] over g_1 ~ N(0, 1) (Gauss-Hermite) and chi^2_(D-1) = 2 v, v ~ Gamma((D-1)/2)
    (generalised Gauss-Laguerre), ``nodes`` points each.
    """
    D = _check_dim(D)
    x, wx = special.roots_hermitenorm(nodes)
    wx = wx / wx.sum()
    v, wv = special.roots_genlaguerre(nodes, 0.5 * (D - 1) - 1.0)
    wv = wv / wv.sum()
    t = _channel_cosines(x[:, None], 2.0 * v[None, :], sigma)
    weight = wx[:, None] * wv[None, :]
    mean_log_p = float(np.sum(weight * gaussian_channel_log_density(t, sigma, D)))
    R = float(np.sum(weight * t))
    mi = log_sphere_area(D) + mean_log_p
    return KnownAnswer(mi=mi, deficit=0.0, mean_resultant_length=R, bound=population_gain(R, D))


def sample_gaussian_channel(
    n: int, sigma: float, D: int, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n pairs (z1, z2) of the Gaussian channel, each (n, D)."""
    generator = np.random.default_rng(rng)
    z1 = sample_uniform(n, D, generator)
    y = z1 + sigma * generator.standard_normal(z1.shape)
    return z1, np.asarray(y / np.linalg.norm(y, axis=1, keepdims=True))


def sample_latent_views(
    n: int,
    D: int,
    kappa_view: float,
    kappa_latent: float = 0.0,
    views: int = 2,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """(n, views, D) views z_v ~ vMF(c, kappa_view) of latents c ~ vMF(e_1, kappa_latent)."""
    generator = np.random.default_rng(rng)
    mu = np.eye(_check_dim(D))[0]
    latent = sample_vmf(mu, kappa_latent, n=n, rng=generator)
    return np.stack([sample_vmf(latent, kappa_view, rng=generator) for _ in range(views)], axis=1)


def _log_c(norms: np.ndarray, D: int) -> np.ndarray:
    return np.asarray(vmf_log_normalizer(np.asarray(norms), D))


def latent_views(
    D: int,
    kappa_view: float,
    kappa_latent: float = 0.0,
    samples: int = 200_000,
    rng: np.random.Generator | int | None = 0,
) -> KnownAnswer:
    """Known answer for two views of a latent (module docstring), by Monte Carlo of exact log densities."""
    D = _check_dim(D)
    generator = np.random.default_rng(rng)
    mu = np.eye(D)[0]
    pairs = sample_latent_views(samples, D, kappa_view, kappa_latent, 2, generator)
    z1, z2 = pairs[:, 0], pairs[:, 1]
    prior = kappa_latent * mu
    c0 = float(vmf_log_normalizer(kappa_latent, D))
    c = float(vmf_log_normalizer(kappa_view, D))
    log_p1 = c0 + c - _log_c(np.linalg.norm(prior + kappa_view * z1, axis=1), D)
    log_p2 = c0 + c - _log_c(np.linalg.norm(prior + kappa_view * z2, axis=1), D)
    log_joint = c0 + 2 * c - _log_c(np.linalg.norm(prior + kappa_view * (z1 + z2), axis=1), D)
    pointwise = log_joint - log_p1 - log_p2
    # Z1 and Z2 have the same marginal: both halves estimate the deficit (exactly 0 when uniform).
    deficit = 0.0
    if kappa_latent > 0.0:
        deficit = log_sphere_area(D) + float(np.mean(np.concatenate([log_p1, log_p2])))
    R = float(bessel_ratio(D, kappa_view)) ** 2
    return KnownAnswer(
        mi=float(np.mean(pointwise)),
        deficit=deficit,
        mean_resultant_length=R,
        bound=population_gain(R, D) - deficit,
        standard_error=float(np.std(pointwise) / math.sqrt(samples)),
    )
