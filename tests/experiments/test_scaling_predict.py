"""The predictive scaling study (mmcr fit on a designed sweep) and mmcr fit --predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib

from mmcr.analysis.scaling_law import ideal_floor
from mmcr.cli import main
from mmcr.experiments.scaling_predict import parse_point, predict_point, predictive_study
from mmcr.experiments.spec import cell_name, parse_sweep, plan_runs

from .sweep_files import BASE

DESIGN = (
    """
kind = "scaling"
seeds = [0, 1]
ppe_last = 2
"""
    + BASE
    + """
[design]
steps = [4, 8, 16, 32, 64, 128]
cells = [
    { batch_size = 64, projector_dim = 8, num_views = 2 },
    { batch_size = 128, projector_dim = 16, num_views = 2 },
    { batch_size = 64, projector_dim = 16, num_views = 4 },
    { batch_size = 128, projector_dim = 8, num_views = 4 },
    { batch_size = 16, projector_dim = 128, num_views = 2 },
    { batch_size = 32, projector_dim = 256, num_views = 4 },
    { batch_size = 16, projector_dim = 64, num_views = 4 },
    { batch_size = 32, projector_dim = 128, num_views = 2 },
]
"""
)
TRIALS = 8


def _law(S: float, B: float, D: float, K: float) -> float:
    """The excess of the synthetic sweep: 2 S^-0.4 B^-0.2 D^0.1 K^-0.3."""
    return float(2.0 * S**-0.4 * B**-0.2 * D**0.1 * K**-0.3)


def _designed_dir(tmp_path: Path, noise: float = 0.01) -> Path:
    """A designed sweep directory whose results follow floor + a known excess (no training)."""
    spec = parse_sweep(tomllib.loads(DESIGN), kind="scaling")
    out = tmp_path / "designed"
    out.mkdir()
    runs = plan_runs(spec)
    (out / "sweep.json").write_text(
        json.dumps({"kind": "scaling", "spec": spec.to_dict(), "runs": [r.name for r in runs]})
    )
    rng = np.random.default_rng(0)
    lines = []
    for run in runs:
        c = run.coords
        S, B, D, K = c["steps"], c["batch_size"], c["projector_dim"], c["num_views"]
        floor = ideal_floor(B, D, trials=TRIALS)
        ppe = floor + _law(S, B, D, K) * rng.lognormal(0.0, noise)
        lines.append(
            {
                "name": run.name,
                "groups": run.groups,
                **{k: c[k] for k in ("steps", "batch_size", "projector_dim", "num_views", "seed")},
                "ppe": ppe,
                "val_ppe": ppe,
                "flops": 3 * 1e5 * B * K * S,
                "sample_views": B * K * S,
                "forward_flops_per_view": 1e5,
            }
        )
    (out / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_design_plans_every_cell_at_every_step_count() -> None:
    spec = parse_sweep(tomllib.loads(DESIGN), kind="scaling")
    runs = plan_runs(spec)
    assert len(runs) == 8 * 6 * 2
    assert {r.coords["steps"] for r in runs} == {4, 8, 16, 32, 64, 128}
    assert all(r.groups == [f"cell:{cell_name(r.coords)}"] for r in runs)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("cells = [\n", "cells = [\n    { batch_size = 64, projector_dim = 8 },\n"),
        ("steps = [4, 8", "steps = [4, 4, 8"),
        (
            "num_views = 2 },\n    { batch_size = 128, projector_dim = 16",
            "num_views = 2, lr = 1 },\n    { batch_size = 128, projector_dim = 16",
        ),
    ],
)
def test_bad_design_is_refused(edit: str, message: str) -> None:
    with pytest.raises(ValueError, match="design"):
        parse_sweep(tomllib.loads(DESIGN.replace(edit, message, 1)), kind="scaling")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One synthetic designed sweep and its study, shared by the tests that only read them."""
    out = _designed_dir(tmp_path_factory.mktemp("study"))
    return out, predictive_study(out, bootstrap=30, floor_trials=TRIALS, log=lambda _: None)


def test_study_picks_a_floor_law_and_predicts_held_out_runs(study: tuple[Path, dict[str, Any]]) -> None:
    out, result = study
    assert result["fit_max_steps"] == 16  # 128 / 8
    assert len(result["holdout_cells"]) == 2  # one per side of B = D
    assert FORMS_WITH_FLOOR & {result["best_form"]}
    headline = result["forms"][result["best_form"]]["scores"]["headline"]
    assert headline["median"] < 0.02  # noise 1 %: the right law predicts within it
    assert headline["median_ci"][0] <= headline["median"] <= headline["median_ci"][1] + 1e-12
    # a pure power law without a floor cannot extrapolate as well as the law that made the data
    assert result["forms"]["power_no_floor"]["scores"]["headline"]["median"] > headline["median"]
    exps = result["law"]["exponents"]
    if result["best_form"] == "excess_steps":
        assert exps["S"]["value"] == pytest.approx(0.4, abs=0.03)
    sets = {p["set"] for p in result["points"]}
    assert sets == {"fit", "compute_2x", "compute_4_8x", "unseen_cells"}
    for name in ("prediction.json", "prediction.md", "predict_parity.png", "predict_curves.png"):
        assert (out / name).is_file(), name
    assert "target median < 5 %: reached" in (out / "prediction.md").read_text()


FORMS_WITH_FLOOR = {"excess_steps", "excess_steps_sided", "fitted_floor"}


def test_predict_point_gives_ppe_interval_and_compute_to_reach(study: tuple[Path, dict[str, Any]]) -> None:
    out, _ = study
    lines: list[str] = []
    answer = predict_point(
        out, parse_point("steps=256,batch_size=64,projector_dim=8,num_views=2"), log=lines.append
    )
    truth = ideal_floor(64, 8, trials=TRIALS) + _law(256, 64, 8, 2)
    assert answer["ppe"] == pytest.approx(truth, rel=0.03)
    lo, hi = answer["one_run_interval"]
    assert lo < truth < hi
    assert answer["extrapolated"] == ["steps = 256 (fitted 4-128)"]
    plan = answer["reach"][0]  # halve the excess over the floor
    assert plan["steps"] > 256 and plan["sample_views"] == pytest.approx(plan["steps"] * 128)
    assert any("needs about" in line for line in lines)
    assert answer["loss"] < 0


def test_cli_fit_and_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _designed_dir(tmp_path)
    assert main(["fit", str(out), "--bootstrap", "5"]) == 0
    assert (out / "prediction.json").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "fit",
                str(out),
                "--predict",
                "steps=64,batch_size=16,projector_dim=128,num_views=2",
                "--reach",
                "0.2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "predicted PPE" in text and "PPE 0.2000 needs about" in text
    assert main(["fit", str(out), "--predict", "steps=64,batch_size=16"]) == 2
    assert "lacks projector_dim, num_views" in capsys.readouterr().err
    assert main(["fit", str(out), "--holdout-cells", "B1_D1_K1"]) == 2
    assert "not cells of the sweep" in capsys.readouterr().err
    assert main(["fit", str(out), "--fit-factor", "1"]) == 2
    assert "fit_factor must be >= 2" in capsys.readouterr().err
    assert main(["fit", str(out), "--reach", "0.1"]) == 2
    assert "--reach needs --predict" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text", ["steps=1,batch_size=1,projector_dim=2,num_views=2", "steps=x", "foo=1", "steps=4,batch_size=8"]
)
def test_parse_point_refuses_bad_points(text: str) -> None:
    with pytest.raises(ValueError, match="--predict"):
        parse_point(text)
