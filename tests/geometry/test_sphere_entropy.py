"""Entropy on the sphere: the kNN estimate and the reference-corrected deficit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmcr.geometry.mi_known_answers import latent_views, sample_latent_views
from mmcr.geometry.sphere_entropy import (
    ProjectedNormal,
    entropy_deficit,
    fit_projected_normal,
    log_radial_integral,
    sphere_entropy_knn,
)
from mmcr.geometry.von_mises_fisher import (
    bessel_ratio,
    log_sphere_area,
    sample_vmf,
    vmf_entropy,
    vmf_log_normalizer,
)


def _uniform(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, dim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [3, 8])
def test_entropy_of_uniform_distribution(dim: int) -> None:
    rng = np.random.default_rng(dim)
    estimate = sphere_entropy_knn(_uniform(2000, dim, rng))
    # Exact in expectation for the uniform law; the spread at N = 2000 is about 0.03 nats.
    assert estimate == pytest.approx(log_sphere_area(dim), abs=0.12)
    estimate_k4 = sphere_entropy_knn(_uniform(2000, dim, rng), k=4)
    assert estimate_k4 == pytest.approx(log_sphere_area(dim), abs=0.08)


def test_entropy_of_a_von_mises_fisher_distribution() -> None:
    rng = np.random.default_rng(5)
    kappa, dim = 5.0, 3
    samples = sample_vmf(np.array([0.0, 0.0, 1.0]), kappa, n=3000, rng=rng)
    exact = -(float(vmf_log_normalizer(kappa, dim)) + kappa * float(bessel_ratio(dim, kappa)))
    assert sphere_entropy_knn(samples) == pytest.approx(exact, abs=0.1)


def test_radial_integral_closed_forms() -> None:
    # J_1(a) = sqrt(2 pi) e^(a^2/2) Phi(a); J_2 = 1 + a J_1; J_3 = a + (1 + a^2) J_1.
    from scipy import special

    a = np.array([-6.0, -1.0, 0.0, 0.7, 4.0, 30.0])
    log_j1 = 0.5 * np.log(2 * np.pi) + 0.5 * a * a + special.log_ndtr(a)
    j1 = np.exp(log_j1)
    np.testing.assert_allclose(log_radial_integral(a, 1), log_j1, rtol=1e-11)
    np.testing.assert_allclose(log_radial_integral(a, 2), np.log(1 + a * j1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_radial_integral(a, 3), np.log(a + (1 + a * a) * j1), rtol=1e-9, atol=1e-12)
    # Large orders: J_n(0) = 2^(n/2 - 1) Gamma(n/2).
    for n in (128, 1024):
        expected = (0.5 * n - 1) * math.log(2) + math.lgamma(0.5 * n)
        assert float(log_radial_integral(np.array(0.0), n)) == pytest.approx(expected, rel=1e-12)


def test_projected_normal_density() -> None:
    rng = np.random.default_rng(1)
    dim = 6
    # m = 0, Sigma = I is uniform; m = 0 is the angular central Gaussian in closed form.
    z = _uniform(50, dim, rng)
    uniform = ProjectedNormal(np.zeros(dim), np.eye(dim))
    np.testing.assert_allclose(uniform.log_density(z), -log_sphere_area(dim), rtol=1e-12)
    scales = np.array([3.0, 1.0, 1.0, 0.5, 0.2, 0.2])
    acg = ProjectedNormal(np.zeros(dim), np.diag(scales))
    quad = np.sum(z * z / scales, axis=1)
    expected = -log_sphere_area(dim) - 0.5 * np.sum(np.log(scales)) - 0.5 * dim * np.log(quad)
    np.testing.assert_allclose(acg.log_density(z), expected, rtol=1e-10)
    # With a mean: the density integrates to 1 (importance sampling from the uniform law).
    shifted = ProjectedNormal(np.r_[1.5, np.zeros(dim - 1)], np.diag(scales))
    u = _uniform(200_000, dim, rng)
    mass = float(np.mean(np.exp(shifted.log_density(u) + log_sphere_area(dim))))
    assert mass == pytest.approx(1.0, abs=0.02)


def test_projected_normal_fit_recovers_its_parameters() -> None:
    dim = 5
    truth = ProjectedNormal(np.array([1.0, 0.5, 0.0, 0.0, 0.0]), np.diag([2.0, 1.0, 1.0, 0.5, 0.5]))
    sample = truth.sample(20_000, rng=2)
    fitted = fit_projected_normal(sample, shrinkage=0.0)
    # The law fixes (m, Sigma) only up to a common scale; the fit has trace(Sigma) = D.
    scale = math.sqrt(dim / np.trace(truth.cov))
    np.testing.assert_allclose(fitted.mean, truth.mean * scale, atol=0.05)
    np.testing.assert_allclose(fitted.cov, truth.cov * scale**2, atol=0.06)
    # The fitted log-likelihood is at least that of the truth.
    assert np.mean(fitted.log_density(sample)) >= np.mean(truth.log_density(sample)) - 1e-9
    with pytest.raises(ValueError):
        fit_projected_normal(sample, shrinkage=1.5)


@pytest.mark.parametrize("dim", [8, 32])
def test_deficit_is_about_zero_for_uniform_points(dim: int) -> None:
    n = 2000
    out = entropy_deficit(_uniform(n, dim, np.random.default_rng(dim)))
    assert out["deficit"] >= 0.0
    # The reference, fitted on the same points, over-fits by about its parameter count
    # over 2N nats (Wilks): the deficit errs upwards, the bound downwards, by that much.
    assert out["fit_optimism"] == pytest.approx((dim * (dim + 3) / 2 - 1) / (2 * n))
    assert abs(out["deficit"] - out["fit_optimism"]) < 0.05
    assert abs(out["deficit_knn"]) < 0.12
    assert out["max_entropy"] == log_sphere_area(dim)


@pytest.mark.parametrize("dim", [32, 128])
def test_reference_corrected_deficit_beats_plain_knn_in_high_dimension(dim: int) -> None:
    # A clustered latent: the deficit is known (Monte Carlo of the exact marginal).
    known = latent_views(dim, 4.0 * dim, 1.0 * dim, samples=20_000, rng=0)
    views = sample_latent_views(2048, dim, 4.0 * dim, 1.0 * dim, views=1, rng=1)
    out = entropy_deficit(views[:, 0])
    assert abs(out["deficit"] - known.deficit) < 0.12 * known.deficit
    assert abs(out["deficit"] - known.deficit) < abs(out["deficit_knn"] - known.deficit)
    # A single vMF cluster: closed form.
    kappa = 2.0 * dim
    cluster = sample_vmf(np.eye(dim)[0], kappa, n=2048, rng=np.random.default_rng(3))
    exact = log_sphere_area(dim) - vmf_entropy(kappa, dim)
    estimate = entropy_deficit(cluster)
    assert abs(estimate["deficit"] - exact) < 0.08 * exact
    assert estimate["deficit_knn"] < estimate["deficit"]


def test_deficit_is_reproducible_and_checks_input() -> None:
    z = sample_vmf(np.eye(8)[0], 5.0, n=300, rng=np.random.default_rng(4))
    assert entropy_deficit(z)["deficit"] == entropy_deficit(z)["deficit"]
    with pytest.raises(ValueError):
        entropy_deficit(np.vstack([z, z[:1]]))
    with pytest.raises(ValueError):
        entropy_deficit(z[:, :1])
    with pytest.raises(ValueError):
        entropy_deficit(z, k=0)
