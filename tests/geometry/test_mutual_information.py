"""The reconstruction + entropy lower bound on I(Z1; Z2) on the sphere, and its pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmcr.geometry.mi_known_answers import latent_views, sample_latent_views, vmf_channel
from mmcr.geometry.mutual_information import (
    MIN_SAMPLES,
    MIN_SAMPLES_PER_DIM,
    bessel_ratio,
    log_sphere_area,
    mi_lower_bound,
    mi_reliability,
    sample_vmf,
    sphere_entropy_knn,
    vmf_log_normalizer,
)


def _uniform(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, dim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def test_bound_on_vmf_pairs_recovers_kappa_and_the_expected_log_density() -> None:
    rng = np.random.default_rng(7)
    dim, kappa = 8, 20.0
    z2 = _uniform(3000, dim, rng)
    z1 = sample_vmf(z2, kappa, rng=rng)
    out = mi_lower_bound(z1, z2)
    assert out["kappa"] == pytest.approx(kappa, rel=0.05)
    expected = float(vmf_log_normalizer(kappa, dim)) + kappa * float(bessel_ratio(dim, kappa))
    assert out["reconstruction"] == pytest.approx(expected, abs=0.1)
    # z1 is marginally uniform, so its entropy estimate is near the maximum.
    assert out["entropy"] == pytest.approx(log_sphere_area(dim), abs=0.12)
    assert out["bound"] == pytest.approx(out["reconstruction"] + out["entropy"])
    assert out["bound"] > 3.0
    assert out["max_entropy"] == log_sphere_area(dim)


def test_bound_for_independent_views_is_about_zero() -> None:
    rng = np.random.default_rng(8)
    out = mi_lower_bound(_uniform(2000, 8, rng), _uniform(2000, 8, rng))
    assert abs(out["bound"]) < 0.15
    assert out["reconstruction"] == pytest.approx(-log_sphere_area(8), abs=0.01)


def test_views_layout_and_torch_input() -> None:
    rng = np.random.default_rng(9)
    centres = _uniform(1500, 8, rng)
    views = np.stack([sample_vmf(centres, 10.0, rng=rng) for _ in range(3)], axis=1)
    pooled = mi_lower_bound(views)
    assert pooled["n_views"] == 3
    pair_dots = [np.mean(np.sum(views[:, i] * views[:, j], 1)) for i, j in [(0, 1), (0, 2), (1, 2)]]
    assert pooled["mean_resultant_length"] == pytest.approx(float(np.mean(pair_dots)), rel=1e-10)
    pair = mi_lower_bound(views[:, 0], views[:, 1])
    assert pooled["kappa"] == pytest.approx(pair["kappa"], rel=0.1)
    # Unnormalised torch input gives the same answer: the embeddings are L2-normalised.
    scaled = torch.tensor(views * 3.0, dtype=torch.float64)
    assert mi_lower_bound(scaled)["bound"] == pytest.approx(pooled["bound"], rel=1e-9)


def test_bad_inputs_raise() -> None:
    rng = np.random.default_rng(10)
    z = _uniform(50, 4, rng)
    with pytest.raises(ValueError):
        mi_lower_bound(z)  # 2-D without z2
    with pytest.raises(ValueError):
        mi_lower_bound(z, z[:40])
    with pytest.raises(ValueError):
        mi_lower_bound(z * 2.0, z, normalize=False)
    with pytest.raises(ValueError):
        sphere_entropy_knn(np.vstack([z, z[:1]]))  # a duplicate point
    with pytest.raises(ValueError):
        sphere_entropy_knn(np.vstack([z, np.zeros((1, 4))]))
    with pytest.raises(ValueError):
        sphere_entropy_knn(z, k=50)
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        mi_lower_bound(bad, z)


def test_identical_views_give_an_infinite_bound() -> None:
    z = _uniform(100, 4, np.random.default_rng(11))
    out = mi_lower_bound(z, z)
    assert out["kappa"] == math.inf and out["bound"] == math.inf


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# The paper's claim: aligned and uniform embeddings maximise the bound. Start from views
# that are both (a uniform latent, two vMF views of it) and move away in one direction.
_DIM, _N = 16, 1024


def _aligned_uniform_views(seed: int, kappa_per_dim: float = 10.0) -> np.ndarray:
    return sample_latent_views(_N, _DIM, kappa_per_dim * _DIM, 0.0, views=2, rng=seed)


def _bounds(views: list[np.ndarray]) -> np.ndarray:
    return np.array([mi_lower_bound(v)["bound"] for v in views])


def test_bound_falls_as_the_views_lose_alignment() -> None:
    bounds = _bounds([_aligned_uniform_views(0, k) for k in (10.0, 4.0, 2.0, 1.0)])
    assert np.all(np.diff(bounds) < -0.5), bounds


def test_bound_falls_as_the_embeddings_gather_into_a_cluster() -> None:
    # z -> normalise(z + b e1) (b < 1) is a bijection of the sphere: it leaves I(Z1; Z2)
    # unchanged, but the embeddings gather around e1 (the views even get closer).
    base = _aligned_uniform_views(1)
    moved = [_normalise(base + b * np.eye(_DIM)[0]) for b in (0.0, 0.3, 0.6, 0.9)]
    outs = [mi_lower_bound(v) for v in moved]
    bounds = np.array([o["bound"] for o in outs])
    assert np.all(np.diff(bounds) < -0.05), bounds
    assert np.all(np.diff([o["entropy_deficit"] for o in outs]) > 0)
    assert np.all(np.diff([o["mean_resultant_length"] for o in outs]) > 0)


def test_bound_falls_as_the_embeddings_collapse_towards_a_subspace() -> None:
    base = _aligned_uniform_views(2)
    keep = _DIM // 4
    squeezed = [
        _normalise(base * np.r_[np.ones(keep), s * np.ones(_DIM - keep)]) for s in (1.0, 0.5, 0.25, 0.125)
    ]
    bounds = _bounds(squeezed)
    assert np.all(np.diff(bounds) < -0.5), bounds


def test_bound_is_gain_minus_deficit_below_the_uniform_maximum() -> None:
    views = _aligned_uniform_views(3, 4.0)
    out = mi_lower_bound(views)
    assert out["bound"] == pytest.approx(out["reconstruction_gain"] - out["entropy_deficit"])
    assert out["reconstruction_gain"] == pytest.approx(out["reconstruction"] + out["max_entropy"])
    assert out["entropy"] == pytest.approx(out["max_entropy"] - out["entropy_deficit"])
    assert out["bound_knn"] == pytest.approx(out["reconstruction"] + out["entropy_knn"])
    assert out["entropy_deficit"] >= 0.0 and out["bound"] <= out["reconstruction_gain"]
    optimism = (_DIM * (_DIM + 3) / 2 - 1) / (2 * _N)
    assert out["deficit_fit_optimism"] == pytest.approx(optimism)
    assert out["bound_debiased"] == pytest.approx(out["bound"] + optimism)
    # The two views of a uniform latent are uniform: the bound is the vMF channel's MI, less
    # the small loss of two noisy views, and close to the known answer.
    known = latent_views(_DIM, 4.0 * _DIM, 0.0, samples=50_000, rng=0)
    assert out["bound"] == pytest.approx(known.mi, abs=0.35)
    assert known.mi < vmf_channel(4.0 * _DIM, _DIM).mi


def test_high_dimensional_clustered_views_stay_below_the_true_information() -> None:
    # D = 128, a clustered latent: the plain kNN entropy over-states the entropy by so much
    # that its bound exceeds the true mutual information; the corrected one stays below.
    dim = 128
    known = latent_views(dim, 4.0 * dim, 1.0 * dim, samples=20_000, rng=0)
    out = mi_lower_bound(sample_latent_views(2048, dim, 4.0 * dim, 1.0 * dim, rng=5))
    assert out["bound_knn"] > known.mi
    assert out["bound"] < known.mi
    # The reported bound errs low by the fit optimism (2 nats here); the debiased one is close.
    assert out["bound"] < known.bound
    assert out["bound_debiased"] == pytest.approx(known.bound, abs=0.75)


def test_reliability_flag() -> None:
    needed = max(MIN_SAMPLES, MIN_SAMPLES_PER_DIM * 64)
    ok, reason = mi_reliability(needed, 64)
    assert ok and str(needed) in reason
    ok, reason = mi_reliability(needed - 1, 64)
    assert not ok and "too few" in reason and "D = 64" in reason
    assert not mi_reliability(10_000, 8, kappa=math.inf)[0]
    small = mi_lower_bound(_aligned_uniform_views(4)[:200])
    assert small["reliable"] is False and "N = 200" in small["reliability"]
    assert mi_lower_bound(_aligned_uniform_views(4))["reliable"] is True
