"""Manifold capacity: analytic cases, the direct simulation, invariances and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from mmcr.geometry.anchors import anchor_points
from mmcr.geometry.capacity import (
    ball_capacity,
    capacity_vs_samples,
    gardner_capacity,
    manifold_capacity,
    simulated_capacity,
)
from mmcr.geometry.centers import shared_center_structure
from mmcr.geometry.separability import is_separable, max_margin


def orthogonal_balls(points: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` copies of a point set ``(M, D)`` (centred at 0), each around its own centre.

    Centres ``a e_mu`` and axes ``e_{P + mu D + i}`` are all orthogonal; ``a`` is chosen so that
    after global centring every centre has norm 1, so the radius of ``points`` is the radius
    in units of the centre norm.
    """
    m, d = points.shape
    n = count + count * d
    a = 1.0 / math.sqrt(1.0 - 1.0 / count)
    out = []
    for mu in range(count):
        x = np.zeros((m, n))
        x[:, mu] = a
        x[:, count + mu * d : count + (mu + 1) * d] = points
        out.append(x)
    return out


def random_manifolds(p: int, m: int, d: int, n: int, radius: float, seed: int) -> list[np.ndarray]:
    """P Gaussian clouds of M samples in random D-dimensional subspaces around random centres."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(p):
        center = rng.standard_normal(n) / math.sqrt(n)
        basis = np.linalg.qr(rng.standard_normal((n, d)))[0]
        out.append(center + (rng.standard_normal((m, d)) * radius / math.sqrt(d)) @ basis.T)
    return out


def quiet(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- closed forms


def test_gardner_closed_form_matches_its_integral() -> None:
    assert gardner_capacity(0.0) == pytest.approx(2.0)
    for kappa in (0.3, 1.0, 2.5):
        value, _ = integrate.quad(lambda t, k=kappa: stats.norm.pdf(t) * (t + k) ** 2, -kappa, np.inf)
        assert gardner_capacity(kappa) == pytest.approx(1.0 / value, rel=1e-8)


def test_ball_capacity_limits() -> None:
    # R -> 0: points; R -> inf: D-dimensional affine subspaces, 1 / alpha = D + 1/2 at kappa = 0
    assert ball_capacity(1e-8, 3) == pytest.approx(2.0, rel=1e-6)
    assert ball_capacity(1e-8, 2, kappa=1.0) == pytest.approx(gardner_capacity(1.0), rel=1e-6)
    for d in (1, 2, 5):
        assert ball_capacity(1e6, d) == pytest.approx(1.0 / (d + 0.5), rel=1e-4)
    # capacity falls with radius and dimension and margin
    assert ball_capacity(0.5, 2) > ball_capacity(1.0, 2) > ball_capacity(2.0, 2)
    assert ball_capacity(1.0, 2) > ball_capacity(1.0, 4) > ball_capacity(1.0, 4, kappa=0.5)
    with pytest.raises(ValueError, match="dimension"):
        ball_capacity(1.0, 0)


# ---------------------------------------------------------------- the KKT solver


@pytest.mark.parametrize(("m", "d"), [(12, 16), (40, 5)])  # the active-set and the interior-point paths
def test_anchor_points_solve_the_min_distance_problem(m: int, d: int) -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(3, m, d, generator=gen, dtype=torch.float64)
    points[..., 0] = 1.0
    t = torch.randn(3, 30, d, generator=gen, dtype=torch.float64)
    for kappa in (0.0, 0.7):
        sol = anchor_points(points, t, kappa)
        assert sol.unconverged == 0
        for p in range(3):
            for i in range(0, 30, 7):
                s, target = points[p].numpy(), t[p, i].numpy()
                res = optimize.minimize(
                    lambda v, tt=target: 0.5 * np.sum((v - tt) ** 2),
                    target,
                    jac=lambda v, tt=target: v - tt,
                    constraints=[
                        {"type": "ineq", "fun": lambda v, s=s, k=kappa: s @ v - k, "jac": lambda v, s=s: s}
                    ],
                    method="SLSQP",
                    options={"ftol": 1e-14, "maxiter": 500},
                )
                expected = float(np.sum((res.x - target) ** 2))
                assert float(sol.field[p, i]) == pytest.approx(expected, rel=1e-5, abs=1e-9)
                # the anchor is a convex combination of the points
                alpha = sol.multipliers[p, i]
                assert bool((alpha >= 0).all())


# ---------------------------------------------------------------- analytic cases


def test_points_capacity_is_two_at_zero_margin_and_follows_gardner() -> None:
    rng = np.random.default_rng(0)
    points = [rng.standard_normal((1, 300)) for _ in range(50)]
    result = manifold_capacity(points, n_t=800)
    assert result.capacity == pytest.approx(2.0, rel=0.03)
    assert result.radius == 0.0 and result.dimension == 0.0
    for kappa in (0.5, 1.0, 2.0):
        assert manifold_capacity(points, kappa, n_t=800).capacity == pytest.approx(
            gardner_capacity(kappa), rel=0.03
        )


def test_points_simulated_capacity_tends_to_two() -> None:
    rng = np.random.default_rng(1)
    points = [rng.standard_normal((1, 120)) for _ in range(40)]
    sim = simulated_capacity(points, dichotomies=41, seed=0)
    assert sim.bounded
    assert sim.capacity == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.0])
def test_line_segments_match_the_closed_form(radius: float) -> None:
    segment = np.array([[radius], [-radius]])  # a segment is the hull of its two end points
    result = manifold_capacity(orthogonal_balls(segment, 30), n_t=400, center_components=0)
    np.testing.assert_allclose(result.center_norms, 1.0, rtol=1e-12)
    assert result.capacity == pytest.approx(ball_capacity(radius, 1), rel=0.04)
    assert result.dimension == pytest.approx(1.0, rel=0.05)  # (t . s^)^2 = t_1^2
    assert result.radius <= radius + 1e-9
    with_margin = manifold_capacity(orthogonal_balls(segment, 30), 0.5, n_t=400, center_components=0)
    assert with_margin.capacity == pytest.approx(ball_capacity(radius, 1, kappa=0.5), rel=0.04)


def _ball_anchor_radius(radius: float, dim: int, kappa: float, samples: int = 400_000) -> float:
    """Monte Carlo of R_M for an L2 ball: R where the anchor is on the sphere, ||t||/(kappa - t0) inside."""
    rng = np.random.default_rng(5)
    x = np.sqrt(rng.chisquare(dim, samples))
    t0 = rng.standard_normal(samples)
    inside = t0 < kappa - x / radius
    r2 = np.where(inside, (x / np.where(inside, kappa - t0, 1.0)) ** 2, radius**2)
    return float(np.sqrt(r2.mean()))


@pytest.mark.parametrize(("dim", "radius"), [(2, 1.0), (2, 0.5), (3, 1.5)])
def test_l2_balls_match_the_closed_form(dim: int, radius: float) -> None:
    if dim == 2:
        angles = np.linspace(0, 2 * np.pi, 120, endpoint=False)
        sphere = np.stack([np.cos(angles), np.sin(angles)], 1)
    else:  # a Fibonacci sphere
        k = np.arange(400) + 0.5
        polar, azimuth = np.arccos(1 - 2 * k / 400), np.pi * (1 + 5**0.5) * k
        sphere = np.stack(
            [np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], 1
        )
    clouds = orthogonal_balls(radius * sphere, 8)
    result = manifold_capacity(clouds, n_t=3000, center_components=0)
    # 24,000 Gaussian vectors: the Monte Carlo error of the capacity is about 1.5 %
    assert result.capacity == pytest.approx(ball_capacity(radius, dim), rel=0.05)
    assert result.dimension == pytest.approx(dim, rel=0.03)
    assert result.radius == pytest.approx(_ball_anchor_radius(radius, dim, 0.0), rel=0.03)


# ---------------------------------------------------------------- mean field against the simulation


@pytest.mark.slow
@pytest.mark.parametrize(
    ("p", "m", "d", "n", "radius"),
    [(40, 8, 3, 300, 1.0), (30, 5, 4, 200, 2.0), (50, 4, 2, 400, 0.6)],
)
def test_mean_field_agrees_with_simulation(p: int, m: int, d: int, n: int, radius: float) -> None:
    clouds = random_manifolds(p, m, d, n, radius, seed=p + m)
    theory = quiet(manifold_capacity, clouds, n_t=300)
    direct = simulated_capacity(clouds, dichotomies=31, seed=1)
    assert direct.bounded
    assert direct.capacity == pytest.approx(theory.capacity, rel=0.10)


# ---------------------------------------------------------------- invariances, biases, few manifolds


@pytest.mark.parametrize(
    ("kappa", "components"),
    [
        pytest.param(0.0, None, marks=pytest.mark.slow),  # the search over K: about 10 s
        pytest.param(0.5, None, marks=pytest.mark.slow),
        (0.0, 2),
        (0.5, 0),
    ],
)
def test_invariant_to_a_global_rotation_and_scale(kappa: float, components: int | None) -> None:
    clouds = random_manifolds(12, 8, 4, 30, 1.2, seed=3)
    shared = np.random.default_rng(10).standard_normal(30)
    clouds = [x + 2 * (i % 3) * shared for i, x in enumerate(clouds)]  # centres share one direction
    rotation = np.linalg.qr(np.random.default_rng(4).standard_normal((30, 30)))[0]
    base = quiet(manifold_capacity, clouds, kappa, n_t=100, center_components=components)
    moved = quiet(
        manifold_capacity, [3.7 * x @ rotation for x in clouds], kappa, n_t=100, center_components=components
    )
    assert moved.center_components == base.center_components
    # equal up to the convergence of the shared-centre optimisation (exactly without it)
    tolerance = 1e-10 if components == 0 else 1e-4
    for name in ("capacity", "radius", "dimension", "center_correlation"):
        assert getattr(moved, name) == pytest.approx(getattr(base, name), rel=tolerance), name


def test_shared_centre_structure_is_found_and_removed() -> None:
    rng = np.random.default_rng(2)
    shared = rng.standard_normal(60)
    centers = torch.from_numpy(rng.standard_normal((20, 60)) + 4 * rng.standard_normal((20, 1)) * shared)
    structure = shared_center_structure(centers, seed=0)
    assert structure.components >= 1
    assert structure.center_correlation > 0.5 > structure.residual_correlation
    basis = structure.basis.numpy()  # orthonormal columns
    assert np.linalg.norm(basis.T @ shared) / np.linalg.norm(shared) > 0.9


def test_few_manifolds_work() -> None:
    rng = np.random.default_rng(6)
    two = [rng.standard_normal((6, 10)) + 3 * rng.standard_normal(10) for _ in range(2)]
    result = quiet(manifold_capacity, two, n_t=50)
    assert result.center_components == 0 and math.isfinite(result.capacity) and result.capacity > 0
    three = quiet(manifold_capacity, [*two, rng.standard_normal((6, 10))], n_t=50)
    assert three.center_components <= 1 and len(three.capacities) == 3


def test_dimension_is_reduced_to_the_rank_not_to_m() -> None:
    rng = np.random.default_rng(7)
    clouds = []
    for _ in range(10):
        basis = np.linalg.qr(rng.standard_normal((40, 3)))[0]
        clouds.append(3 * rng.standard_normal(40) + rng.standard_normal((30, 3)) @ basis.T)
    result = manifold_capacity(clouds, n_t=100)
    assert (result.ranks == 3).all() and result.saturated == 0
    assert result.dimension <= 3.0 + 1e-9


def test_too_few_samples_warn_and_the_trend_over_m_falls() -> None:
    clouds = random_manifolds(10, 16, 30, 80, 1.0, seed=8)  # 16 samples of 30-dimensional clouds
    with pytest.warns(UserWarning, match="do not resolve"):
        result = manifold_capacity(clouds, n_t=60)
    assert result.saturated == 10
    trend = capacity_vs_samples(clouds, n_t=60)
    assert [row["samples"] for row in trend] == [4, 8, 16]
    capacities = [row["capacity"] for row in trend]
    assert capacities[0] > capacities[1] > capacities[2]


def test_result_is_json_ready() -> None:
    result = quiet(manifold_capacity, random_manifolds(5, 4, 2, 12, 1.0, seed=9), n_t=20)
    out = result.to_dict(per_manifold=True)
    assert out["manifolds"] == 5 and len(out["capacities"]) == 5
    assert set(out) >= {"capacity", "radius", "dimension", "center_correlation", "center_components"}


# ---------------------------------------------------------------- separability helpers


def test_separability_and_margin_of_a_simple_dichotomy() -> None:
    points = np.array([[1.0, 0.2], [2.0, -0.5], [-1.0, 0.1], [-3.0, 0.0]])
    labels = np.array([1.0, 1.0, -1.0, -1.0])
    assert is_separable(points, labels)
    # a point and its mirror image with the same label: no hyperplane through the origin
    assert not is_separable(np.array([[1.0, 0.5], [-1.0, -0.5], [0.0, 1.0]]), np.array([1.0, 1.0, -1.0]))
    symmetric = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert max_margin(symmetric, np.array([1.0, -1.0])) == pytest.approx(1.0, rel=1e-6)


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_manifold() -> None:
    good = [np.ones((3, 4)) * i + np.eye(3, 4) for i in range(1, 4)]
    with pytest.raises(ValueError, match="manifold 1 is empty"):
        manifold_capacity([good[0], np.zeros((0, 4)), good[2]])
    with pytest.raises(ValueError, match="manifold 2 has 5 features but manifold 0 has 4"):
        manifold_capacity([good[0], good[1], np.ones((3, 5))])
    bad = good[1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="manifold 1 has 1 non-finite"):
        manifold_capacity([good[0], bad, good[2]])
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="manifold 1 has 1 non-finite"):
        simulated_capacity([good[0], bad, good[2]])
    with pytest.raises(ValueError, match="at least 2 manifolds"):
        manifold_capacity([good[0]])
    with pytest.raises(ValueError, match="manifold 0 must be a 2-D"):
        manifold_capacity([np.ones(4), good[1]])
    with pytest.raises(ValueError, match="kappa"):
        manifold_capacity(good, kappa=-1.0)
    with pytest.raises(ValueError, match="n_t"):
        manifold_capacity(good, n_t=0)
    with pytest.raises(ValueError, match="components"):
        manifold_capacity(good, center_components=5)
