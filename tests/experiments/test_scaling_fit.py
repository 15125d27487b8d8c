"""Scaling-law fits of a scaling sweep's results (mmcr fit), and what fit and report refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib

from mmcr.cli import main
from mmcr.experiments.scaling_fit import fit_sweep
from mmcr.experiments.spec import parse_sweep, plan_runs
from mmcr.experiments.sweep import report_sweep

from .sweep_files import SCALING


def _synthetic_scaling_dir(tmp_path: Path) -> Path:
    """A scaling sweep directory whose results follow a known joint law (no training)."""
    spec = parse_sweep(
        tomllib.loads(
            SCALING.replace("projector_dim = [8, 16]", "projector_dim = [8, 16, 32]\nnum_views = [2, 4, 8]")
            .replace("steps = [2, 3]", "steps = [2, 4, 8, 16]")
            .replace("batch_size = [16, 32]", "batch_size = [16, 32, 64]")
            + "[joint]\nsteps = [4, 16]\nbatch_size = [32, 64]\n"
        ),
        kind="scaling",
    )
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"kind": "scaling", "spec": spec.to_dict()}))
    rng = np.random.default_rng(0)
    lines = []
    for run in plan_runs(spec):
        c = run.coords
        S, B, D, K = c["steps"], c["batch_size"], c["projector_dim"], c["num_views"]
        ppe = (0.05 + 0.5 * S**-0.5 + 0.3 * B**-0.3 + 0.2 * D**-0.4 + 0.1 * K**-0.6) * rng.lognormal(0, 0.005)
        lines.append(
            {
                "name": run.name,
                "groups": run.groups,
                **{k: c[k] for k in ("steps", "batch_size", "projector_dim", "num_views", "seed")},
                "ppe": ppe,
                "val_ppe": ppe * 1.1,
                "loss": -1.0,
                "flops": 3 * 1e5 * B * K * S,
                "sample_views": B * K * S,
            }
        )
    (out / "results.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_fit_on_synthetic_results_reports_exponents(tmp_path: Path) -> None:
    out = _synthetic_scaling_dir(tmp_path)
    assert main(["fit", str(out), "--bootstrap", "3", "--compute", "sample_views"]) == 0
    fit = json.loads((out / "fit.json").read_text())
    joint = fit["joint_fit"]
    assert joint["variables"] == ["steps", "batch_size", "projector_dim", "num_views"]
    assert joint["alpha_steps"] == pytest.approx(0.5, rel=0.3)
    assert "holdout_mean_abs_relative_error" in joint
    assert fit["axis_fits"]["steps"]["alpha"] > 0 and fit["compute_fit"]["alpha"] > 0
    assert (out / "joint_parity.png").exists() and (out / "fit_axis_steps.png").exists()
    assert (out / "fit_sample_views.png").exists()
    with pytest.raises(ValueError, match="negative"):
        fit_sweep(out, target="loss")


def test_fit_and_report_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"sweep\.json"):
        report_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"kind": "double-descent", "spec": {}}))
    with pytest.raises(ValueError, match="scaling sweep"):
        fit_sweep(tmp_path)
    with pytest.raises(ValueError, match="no finished runs"):
        report_sweep(tmp_path)
