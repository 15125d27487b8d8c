"""The von Mises-Fisher pieces: log Bessel functions, normaliser, kappa MLE, Wood's sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from mmcr.geometry.von_mises_fisher import (
    bessel_ratio,
    log_bessel_iv,
    log_sphere_area,
    sample_vmf,
    vmf_entropy,
    vmf_kappa_mle,
    vmf_log_normalizer,
)


def _uniform(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, dim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def test_log_sphere_area_small_dimensions() -> None:
    assert log_sphere_area(2) == pytest.approx(math.log(2 * math.pi))
    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))
    assert log_sphere_area(4) == pytest.approx(math.log(2 * math.pi**2))
    with pytest.raises(ValueError):
        log_sphere_area(1)


@pytest.mark.parametrize("nu", [0.0, 0.5, 1.0, 3.5, 20.0])
def test_log_bessel_matches_scipy_where_representable(nu: float) -> None:
    x = np.array([1e-3, 0.1, 1.0, 10.0, 100.0, 600.0])
    expected = np.log(special.iv(nu, x))
    np.testing.assert_allclose(log_bessel_iv(nu, x), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("x", [1e-200, 1e-3, 5.0, 300.0, 3000.0])
@pytest.mark.parametrize("nu", [1.5, 255.0, 4095.0])
def test_log_bessel_obeys_the_recurrence_where_scipy_underflows(nu: float, x: float) -> None:
    # I_(nu-1)(x) - I_(nu+1)(x) = (2 nu / x) I_nu(x), checked on log values (scipy's iv and
    # ive underflow to 0 for most of these orders and arguments).
    below, centre, above = (float(log_bessel_iv(nu + d, x)) for d in (-1.0, 0.0, 1.0))
    lhs = math.exp(below - centre) - math.exp(above - centre)
    assert lhs == pytest.approx(2.0 * nu / x, rel=1e-7, abs=0)
    assert math.isfinite(centre)


@pytest.mark.parametrize("dim", [2, 3, 8, 512])
@pytest.mark.parametrize("x", [1e10, 1e13])
def test_log_bessel_at_huge_arguments_where_scipy_returns_nan(dim: int, x: float) -> None:
    # Hankel: I_nu(x) ~ e^x / sqrt(2 pi x) (1 - (4 nu^2 - 1) / (8x)), for x >> nu^2; a float
    # near x resolves log I_nu(x) only to about 1e-16 x.
    nu = 0.5 * dim - 1.0
    expected = x - 0.5 * math.log(2 * math.pi * x) - (4 * nu * nu - 1.0) / (8.0 * x)
    assert float(log_bessel_iv(nu, x)) == pytest.approx(expected, rel=0, abs=4e-16 * x)
    # The vMF mean resultant length there: A_D(x) = 1 - (D - 1) / (2x) + O(x^-2); the
    # difference of two logs resolves 1 - A_D only to about 1e-15 absolute.
    gap = 1.0 - float(bessel_ratio(dim, x))
    assert gap == pytest.approx((dim - 1) / (2 * x), rel=0, abs=2e-14)


def test_vmf_normaliser_closed_form_in_three_dimensions() -> None:
    # On S^2: C_3(kappa) = kappa / (4 pi sinh kappa).
    for kappa in [1e-3, 0.5, 5.0, 50.0, 2000.0]:
        expected = math.log(kappa / (4 * math.pi)) - (
            kappa + math.log1p(-math.exp(-2 * kappa)) - math.log(2.0)
        )
        assert float(vmf_log_normalizer(kappa, 3)) == pytest.approx(expected, rel=1e-10)
    assert float(vmf_log_normalizer(0.0, 3)) == pytest.approx(-math.log(4 * math.pi))
    # Continuity at kappa -> 0 in high dimension.
    assert float(vmf_log_normalizer(1e-9, 512)) == pytest.approx(-log_sphere_area(512), abs=1e-9)


@pytest.mark.parametrize("dim", [2, 3, 8, 512, 4096])
@pytest.mark.parametrize("R", [1e-7, 0.01, 0.3, 0.9, 0.999, 1.0 - 1e-9])
def test_kappa_mle_inverts_the_bessel_ratio(dim: int, R: float) -> None:
    kappa = vmf_kappa_mle(R, dim)
    assert kappa > 0
    assert float(bessel_ratio(dim, kappa)) == pytest.approx(R, rel=1e-8, abs=0)


def test_kappa_mle_edge_cases() -> None:
    assert vmf_kappa_mle(0.0, 8) == 0.0
    assert vmf_kappa_mle(-0.2, 8) == 0.0
    assert vmf_kappa_mle(1.0, 8) == math.inf
    with pytest.raises(ValueError):
        vmf_kappa_mle(1.5, 8)
    assert float(bessel_ratio(8, 0.0)) == 0.0
    assert float(bessel_ratio(8, 1e-6)) == pytest.approx(1e-6 / 8, rel=1e-6, abs=0)


def test_wood_sampler_mean_cosine() -> None:
    rng = np.random.default_rng(6)
    dim, kappa = 8, 20.0
    mu = np.eye(dim)[1]
    samples = sample_vmf(mu, kappa, n=20000, rng=rng)
    np.testing.assert_allclose(np.linalg.norm(samples, axis=1), 1.0, atol=1e-12)
    assert float(np.mean(samples @ mu)) == pytest.approx(float(bessel_ratio(dim, kappa)), abs=0.005)
    # One sample per row of a matrix of mean directions; kappa = 0 is uniform.
    centres = _uniform(500, dim, rng)
    assert sample_vmf(centres, kappa, rng=rng).shape == (500, dim)
    assert abs(float(np.mean(np.sum(sample_vmf(centres, 0.0, rng=rng) * centres, 1)))) < 0.05
    with pytest.raises(ValueError):
        sample_vmf(mu, kappa)  # n missing
    with pytest.raises(ValueError):
        sample_vmf(2 * mu, kappa, n=3)


def test_vmf_entropy_is_the_uniform_maximum_at_zero_and_falls() -> None:
    assert vmf_entropy(0.0, 32) == pytest.approx(log_sphere_area(32))
    values = [vmf_entropy(k, 32) for k in (1.0, 10.0, 100.0)]
    assert np.all(np.diff(values) < 0)
    expected = -(float(vmf_log_normalizer(10.0, 32)) + 10.0 * float(bessel_ratio(32, 10.0)))
    assert values[1] == pytest.approx(expected)
    assert math.isfinite(vmf_entropy(1e4, 512))
    with pytest.raises(ValueError):
        vmf_entropy(-1.0, 8)
