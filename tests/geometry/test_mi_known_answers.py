"""The true mutual informations the MI bound is validated against, checked independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from mmcr.geometry.mi_known_answers import (
    gaussian_channel,
    gaussian_channel_log_density,
    latent_views,
    population_gain,
    sample_gaussian_channel,
    sample_latent_views,
    sample_uniform,
    vmf_channel,
)
from mmcr.geometry.von_mises_fisher import log_sphere_area, vmf_log_normalizer


def test_vmf_channel_closed_form_on_the_two_sphere() -> None:
    # On S^2 the vMF entropy is log(4 pi sinh(k) / k) - k coth(k) + 1.
    for kappa in [0.5, 3.0, 40.0]:
        entropy = math.log(4 * math.pi * math.sinh(kappa) / kappa) - kappa / math.tanh(kappa) + 1.0
        known = vmf_channel(kappa, 3)
        assert known.mi == pytest.approx(math.log(4 * math.pi) - entropy, rel=1e-10)
        assert known.bound == known.mi and known.deficit == 0.0


@pytest.mark.parametrize("dim", [8, 32])
@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_gaussian_channel_density_integrates_to_one(dim: int, sigma: float) -> None:
    # int over the sphere = |S^{D-2}| int_{-1}^{1} (1 - t^2)^((D-3)/2) p(t) dt.
    log_ring = log_sphere_area(dim - 1)

    def integrand(t: float) -> float:
        log_p = float(gaussian_channel_log_density(np.array(t), sigma, dim))
        return math.exp(log_ring + 0.5 * (dim - 3) * math.log1p(-t * t) + log_p)

    total, _ = integrate.quad(integrand, -1.0, 1.0, limit=200, epsabs=1e-12)
    assert total == pytest.approx(1.0, abs=1e-7)


def test_gaussian_channel_in_two_dimensions_has_a_closed_form() -> None:
    # D = 2: J_2(a) = 1 + a sqrt(2 pi) e^(a^2/2) Phi(a).
    sigma = 0.7
    t = np.array([-0.9, -0.2, 0.0, 0.5, 1.0])
    a = t / sigma
    j2 = 1.0 + a * math.sqrt(2 * math.pi) * np.exp(0.5 * a * a) * special.ndtr(a)
    expected = -math.log(2 * math.pi) - 0.5 / sigma**2 + np.log(j2)
    np.testing.assert_allclose(gaussian_channel_log_density(t, sigma, 2), expected, rtol=1e-11)


@pytest.mark.parametrize("dim", [8, 32, 128])
def test_gaussian_channel_quadrature_matches_monte_carlo(dim: int) -> None:
    sigma = 0.4
    known = gaussian_channel(sigma, dim)
    z1, z2 = sample_gaussian_channel(40_000, sigma, dim, rng=dim)
    t = np.sum(z1 * z2, axis=1)
    log_p = gaussian_channel_log_density(t, sigma, dim)
    error = float(np.std(log_p)) / math.sqrt(t.size)
    assert log_sphere_area(dim) + float(np.mean(log_p)) == pytest.approx(known.mi, abs=5 * error)
    assert float(np.mean(t)) == pytest.approx(known.mean_resultant_length, abs=0.003)
    # The vMF q is not the projected normal's conditional, so the population bound is below I.
    assert 0.0 < known.bound < known.mi


def test_gaussian_channel_limits() -> None:
    dim = 8
    # Small noise: the tangent displacement is Gaussian, I ~ log|S| - h(N(0, sigma^2 I_(D-1))).
    sigma = 0.005
    tangent = log_sphere_area(dim) - 0.5 * (dim - 1) * math.log(2 * math.pi * math.e * sigma**2)
    assert gaussian_channel(sigma, dim).mi == pytest.approx(tangent, abs=0.01)
    values = [gaussian_channel(s, dim).mi for s in (0.1, 0.3, 1.0, 3.0, 30.0)]
    assert np.all(np.diff(values) < 0)
    assert 0.0 < values[-1] < 1e-3


def test_latent_views_marginal_is_a_density() -> None:
    # E_uniform[p(z1) / u(z1)] = 1 for the closed-form marginal of the clustered latent.
    dim, kappa_view, kappa_latent = 8, 20.0, 6.0
    u = sample_uniform(400_000, dim, rng=1)
    c0 = float(vmf_log_normalizer(kappa_latent, dim))
    c = float(vmf_log_normalizer(kappa_view, dim))
    v = kappa_latent * np.eye(dim)[0] + kappa_view * u
    log_p = c0 + c - vmf_log_normalizer(np.linalg.norm(v, axis=1), dim)
    assert float(np.mean(np.exp(log_p + log_sphere_area(dim)))) == pytest.approx(1.0, abs=0.01)


def test_latent_views_obey_data_processing_and_the_bound() -> None:
    dim, kappa = 8, 30.0
    uniform = latent_views(dim, kappa, 0.0, samples=100_000, rng=2)
    again = latent_views(dim, kappa, 0.0, samples=100_000, rng=3)
    assert uniform.mi == pytest.approx(
        again.mi, abs=5 * math.hypot(uniform.standard_error, again.standard_error)
    )
    # I(Z1; Z2) <= I(Z1; C) = the vMF channel's; the population bound is <= I.
    assert uniform.mi < vmf_channel(kappa, dim).mi
    assert uniform.bound <= uniform.mi + 4 * uniform.standard_error
    assert uniform.deficit == 0.0
    clustered = latent_views(dim, kappa, 10.0, samples=100_000, rng=2)
    assert clustered.deficit > 0.5
    assert clustered.mi < uniform.mi
    assert clustered.bound < clustered.mi
    assert clustered.mean_resultant_length == pytest.approx(uniform.mean_resultant_length)
    views = sample_latent_views(50_000, dim, kappa, 10.0, views=2, rng=4)
    assert float(np.mean(np.sum(views[:, 0] * views[:, 1], axis=1))) == pytest.approx(
        clustered.mean_resultant_length, abs=0.005
    )


def test_population_gain_is_zero_for_independent_views() -> None:
    assert population_gain(0.0, 32) == 0.0
    assert population_gain(-0.1, 32) == 0.0
    assert population_gain(1.0, 32) == math.inf
    assert population_gain(0.5, 32) > 0.0
    with pytest.raises(ValueError):
        gaussian_channel_log_density(np.array([0.1]), 0.0, 8)
