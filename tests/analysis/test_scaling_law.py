"""The scaling laws of mmcr.analysis.scaling_law: recovery of known laws, intervals, inversion, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmcr.analysis.scaling_law import FORMS, LawFit, fit_law, ideal_floor, relative_errors, steps_to_reach


def _grid(rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    rows = []
    cells = [
        (64, 8, 2),
        (128, 16, 2),
        (64, 16, 4),
        (128, 8, 4),
        (16, 128, 2),
        (32, 256, 4),
        (16, 64, 2),
        (32, 128, 2),
    ]
    for B, D, K in cells:
        for S in (10, 20, 40, 80, 160):
            rows.append((S, B, D, K))
    a = np.array(rows, dtype=np.float64)
    out = {"steps": a[:, 0], "batch_size": a[:, 1], "projector_dim": a[:, 2], "num_views": a[:, 3]}
    out["sample_views"] = out["batch_size"] * out["num_views"] * out["steps"]
    out["flops"] = 3e5 * out["sample_views"]
    return out


def _truth(v: dict[str, np.ndarray], floor: np.ndarray) -> np.ndarray:
    return (
        floor
        + 2.0
        * v["steps"] ** -0.4
        * v["batch_size"] ** -0.2
        * v["projector_dim"] ** 0.1
        * v["num_views"] ** -0.3
    )


def test_excess_law_recovers_known_exponents_exactly() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    law = fit_law("excess_steps", v, _truth(v, floor), floor, bootstrap=0)
    exps = law.exponents()
    assert exps["S"]["value"] == pytest.approx(0.4, abs=1e-9)
    assert exps["B"]["value"] == pytest.approx(0.2, abs=1e-9)
    assert exps["D"]["value"] == pytest.approx(-0.1, abs=1e-9)
    assert exps["K"]["value"] == pytest.approx(0.3, abs=1e-9)
    assert math.exp(exps["log A"]["value"]) == pytest.approx(2.0, rel=1e-9)
    np.testing.assert_allclose(law.predict(v, floor), _truth(v, floor), rtol=1e-10)


def test_fitted_floor_recovers_a_constant_floor() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.05)
    law = fit_law("fitted_floor", v, _truth(v, floor), bootstrap=0)
    assert law.exponents()["E"]["value"] == pytest.approx(0.05, rel=1e-3)
    assert law.exponents()["S"]["value"] == pytest.approx(0.4, rel=1e-3)


def test_bootstrap_interval_covers_and_one_run_interval_is_wider() -> None:
    rng = np.random.default_rng(0)
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    noisy = floor + (_truth(v, floor) - floor) * rng.lognormal(0.0, 0.03, len(floor))
    law = fit_law("excess_steps", v, noisy, floor, bootstrap=200, seed=1)
    assert 0.3 < law.exponents()["S"]["ci_low"] < 0.4 < law.exponents()["S"]["ci_high"] < 0.5
    lo_m, hi_m = law.interval(v, floor, one_run=False)
    lo_r, hi_r = law.interval(v, floor, one_run=True)
    truth = _truth(v, floor)
    assert np.mean((lo_m <= truth) & (truth <= hi_m)) > 0.8
    assert np.all(lo_r < lo_m) and np.all(hi_r > hi_m)
    again = LawFit.from_dict(law.to_dict())
    np.testing.assert_allclose(again.predict(v, floor), law.predict(v, floor))
    np.testing.assert_allclose(again.interval(v, floor)[0], lo_r)


def test_steps_to_reach_inverts_the_law() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    law = fit_law("excess_steps", v, _truth(v, floor), floor, bootstrap=0)
    point = {"batch_size": 64, "projector_dim": 16, "num_views": 2}
    s = steps_to_reach(law, 0.1, point, 0.02, flops_per_step=1.0)
    assert s is not None
    at = {"steps": np.array([s]), **{k: np.array([float(x)]) for k, x in point.items()}}
    assert _truth(at, np.array([0.02]))[0] == pytest.approx(0.1, rel=1e-6)
    assert steps_to_reach(law, 0.02, point, 0.02, flops_per_step=1.0) is None  # at the floor: never


def test_every_form_fits_and_relative_errors() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    y = _truth(v, floor)
    for name in FORMS:
        law = fit_law(name, v, y, floor, bootstrap=0)
        assert np.all(np.isfinite(law.predict(v, floor)))
    np.testing.assert_allclose(relative_errors(np.array([1.1]), np.array([1.0])), [0.1])
    np.testing.assert_allclose(relative_errors(np.array([1.1]), np.array([1.0]), np.array([0.5])), [0.2])


def test_bad_input_is_refused_with_a_reason() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    y = _truth(v, floor)
    with pytest.raises(ValueError, match="at or below the ideal floor"):
        fit_law("excess_steps", v, np.full_like(y, 0.01), floor, bootstrap=0)
    same_k = {**v, "num_views": np.full_like(v["num_views"], 2.0)}
    with pytest.raises(ValueError, match="vary more"):
        fit_law("excess_steps", same_k, y, floor, bootstrap=0)
    with pytest.raises(ValueError, match="needs the ideal floor"):
        fit_law("excess_steps", v, y, None, bootstrap=0)
    with pytest.raises(ValueError, match="finite and positive"):
        fit_law("excess_steps", {**v, "steps": -v["steps"]}, y, floor, bootstrap=0)
    with pytest.raises(ValueError, match="B, D >= 1"):
        ideal_floor(0, 8)


def test_ideal_floor_is_the_monte_carlo_ppe_of_uniform_centroids() -> None:
    # far from the ridge the floor is small; on it, near 1 - 8 / (3 pi) = 0.151
    assert ideal_floor(128, 16, trials=16) < 0.02
    assert ideal_floor(64, 64, trials=16) == pytest.approx(0.151, abs=0.02)


def test_a_law_per_side_reports_the_exponents_below_the_ridge() -> None:
    v = _grid()
    floor = np.full(len(v["steps"]), 0.02)
    below = v["batch_size"] < v["projector_dim"]
    alpha = np.where(below, 0.2, 0.5)
    y = floor + 2.0 * v["steps"] ** -alpha * v["num_views"] ** -0.3
    exps = fit_law("excess_per_side", v, y, floor, bootstrap=20).exponents()
    assert exps["S"]["value"] == pytest.approx(0.5, abs=1e-8)
    assert exps["S_below"]["value"] == pytest.approx(0.2, abs=1e-8)
    assert exps["S"]["label"].endswith("where B > D") and exps["S_below"]["label"].endswith("where B < D")
    assert exps["S_below"]["ci_low"] == pytest.approx(0.2, abs=1e-6)
