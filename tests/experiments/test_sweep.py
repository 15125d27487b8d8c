"""Sweeps end to end on scikit-learn's digits: double descent, scaling, fit, report, resume."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcr.analysis import sweeps
from mmcr.analysis.sweeps import SweepSpec, load_sweep, parse_sweep, peak_table, plan_runs
from mmcr.cli import main
from mmcr.training import pretrain as pretrain_module

BASE = """
[base]
dataset = "digits"
augment = "digits"
encoder_width = 4
projector_hidden = [16]
log_every = 1
monitor_size = 64
threads = 1  # one thread: many times faster than two on busy shared cores
"""

DOUBLE_DESCENT = (
    """
kind = "double-descent"
ppe_last = 2
"""
    + BASE
    + """
[budget]
max_steps = 2
[grid]
P = [16, 32]
D = [16, 32]
[theory]
trials = 4
"""
)

SCALING = (
    """
kind = "scaling"
ppe_last = 2
"""
    + BASE
    + """
[point]
steps = 2
batch_size = 16
projector_dim = 8
num_views = 2
[axes]
steps = [2, 3]
batch_size = [16, 32]
projector_dim = [8, 16]
"""
)


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """pretrain applies ``threads`` process-wide; give the other tests their setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count pretrain calls (the sweep looks pretrain up at call time)."""
    calls: list[str] = []
    real = pretrain_module.pretrain

    def counting(cfg: Any, resume: bool = False) -> Path:
        calls.append(cfg.out)
        return real(cfg, resume=resume)

    monkeypatch.setattr(pretrain_module, "pretrain", counting)
    return calls


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_double_descent_sweep_end_to_end_resumes_and_reports(
    tmp_path: Path, train_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "dd.toml", DOUBLE_DESCENT)
    out = tmp_path / "dd"

    assert main(["sweep", "double-descent", "--config", str(config), "--out", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "P16_D32_s0" in listed and "to train" in listed
    assert train_calls == [] and not out.exists()

    assert main(["sweep", "double-descent", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert len(train_calls) == 4
    assert "[4/4] P32_D32_s0" in printed and "PPE" in printed
    results = _lines(out / "results.jsonl")
    assert sorted((r["P"], r["D"]) for r in results) == [(16, 16), (16, 32), (32, 16), (32, 32)]
    for r in results:
        assert 0 < r["ppe"] < 1 and 0 < r["val_ppe"] < 1 and 0 < r["init_ppe"] < 1
        assert r["steps"] == 2 and r["flops"] > 0 and r["sample_views"] == r["P"] * 2 * 2
        assert (out / "runs" / r["name"] / "metrics.jsonl").exists()
        assert (out / "runs" / r["name"] / "result.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [row["D"] for row in summary["peaks_by_D"]] == [16, 32]
    assert all(
        row["peak_P"] in (16, 32) and row["theory_peak_P"] == row["D"] for row in summary["peaks_by_D"]
    )
    assert summary["statement"] in printed
    assert "not comparable" in (out / "summary.md").read_text()
    assert len(summary["control_init"]["peaks_by_D"]) == 2  # the untrained-network control
    figures = [
        "ppe_heatmap.png",
        "ppe_heatmap_val.png",
        "ppe_heatmap_init.png",
        "ppe_vs_P.png",
        "ppe_vs_D.png",
    ]
    assert all((out / name).stat().st_size > 0 for name in figures)

    # Re-running trains nothing (every run has its result line) and redraws nothing.
    assert main(["sweep", "double-descent", "--config", str(config), "--out", str(out)]) == 0
    assert len(train_calls) == 4
    printed = capsys.readouterr().out
    assert printed.count("done earlier  ") == 4 and "nothing new" in printed
    assert len(_lines(out / "results.jsonl")) == 4

    # report redraws every figure from the stored results, without training.
    for name in figures:
        (out / name).unlink()
    (out / "summary.json").unlink()
    assert main(["report", str(out)]) == 0
    assert len(train_calls) == 4
    assert all((out / name).exists() for name in figures)
    assert json.loads((out / "summary.json").read_text())["peaks_by_D"] == summary["peaks_by_D"]


@pytest.mark.slow
def test_an_interrupted_run_resumes_and_a_changed_run_is_refused(
    tmp_path: Path, train_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dd"
    one_cell = DOUBLE_DESCENT.replace("P = [16, 32]", "P = [16]").replace("D = [16, 32]", "D = [16]")
    spec = parse_sweep(sweeps.tomllib.loads(one_cell), kind="double-descent")
    run = plan_runs(spec)[0]
    cfg = sweeps.run_config(spec, run, out)
    # the run stopped after its first step, with a checkpoint (max_steps may change on resume)
    pretrain_module.pretrain(dataclasses.replace(cfg, max_steps=1))
    sweeps.run_sweep(spec, out, dry_run=True)
    assert "partial (resumes)" in capsys.readouterr().out
    sweeps.run_sweep(spec, out, log=lambda _: None)
    assert "resuming from" in (out / "runs" / run.name / "train.log").read_text()
    steps = [r["step"] for r in _lines(out / "runs" / run.name / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == [1, 2]
    assert _lines(out / "results.jsonl")[0]["steps"] == 2
    assert len(train_calls) == 2  # the interrupted start and the resumed run

    # The sweep was killed after the run's done-marker but before its result line: the run
    # is not trained again, and its line is restored from the marker.
    (out / "results.jsonl").write_text("")
    sweeps.run_sweep(spec, out, log=lambda _: None)
    assert len(train_calls) == 2
    assert [r["name"] for r in _lines(out / "results.jsonl")] == [run.name]

    # A finished run planned again with another configuration is refused, not silently reused.
    spec.base["lr"] = 0.01
    with pytest.raises(ValueError, match="lr"):
        sweeps.run_sweep(spec, out, log=lambda _: None)
    assert len(train_calls) == 2


@pytest.mark.slow
def test_scaling_sweep_and_fit_end_to_end(tmp_path: Path, train_calls: list[str]) -> None:
    config = _write(tmp_path, "scaling.toml", SCALING)
    out = tmp_path / "scaling"
    assert main(["sweep", "scaling", "--config", str(config), "--out", str(out), "--max-runs", "2"]) == 0
    assert len(train_calls) == 2
    assert main(["sweep", "scaling", "--config", str(config), "--out", str(out)]) == 0
    assert len(train_calls) == 4  # base point + one new value on each of three axes
    results = _lines(out / "results.jsonl")
    for r in results:
        expected = 3 * r["forward_flops_per_view"] * r["batch_size"] * r["num_views"] * r["steps"]
        assert r["flops"] == pytest.approx(expected)
        assert r["sample_views"] == r["batch_size"] * r["num_views"] * r["steps"]
    assert (out / "scaling_axes.png").exists() and (out / "ppe_vs_compute.png").exists()
    assert "3 x F x B x K x S" in (out / "summary.md").read_text()

    assert main(["fit", str(out), "--bootstrap", "4", "--holdout-frac", "0.25"]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["target"] == "ppe" and fit["compute"] == "flops"
    assert fit["compute_fit"]["alpha"] > 0 and len(fit["compute_fit"]["ci"]["alpha"]) == 2
    assert sum(fit["holdout"]["mask"]) == 1 and "mean_abs_relative_error" in fit["holdout"]
    assert "skipped" in fit["joint_fit"]  # 4 runs cannot fix 1 + 2 x 3 parameters
    assert (out / "fit_flops.png").exists() and (out / "holdout_flops.png").exists()

    (out / "fit_flops.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "fit_flops.png").exists() and "Fits" in (out / "summary.md").read_text()
    assert len(train_calls) == 4


def _synthetic_scaling_dir(tmp_path: Path) -> Path:
    """A scaling sweep directory whose results follow a known joint law (no training)."""
    spec = parse_sweep(
        sweeps.tomllib.loads(
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
        sweeps.fit_sweep(out, target="loss")


def test_fit_and_report_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"sweep\.json"):
        sweeps.report_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"kind": "double-descent", "spec": {}}))
    with pytest.raises(ValueError, match="scaling sweep"):
        sweeps.fit_sweep(tmp_path)
    with pytest.raises(ValueError, match="no finished runs"):
        sweeps.report_sweep(tmp_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (DOUBLE_DESCENT + "grdi = 1\n", "grdi"),
        (DOUBLE_DESCENT.replace("P = [16, 32]", 'P = ["16", 32]'), "grid.P"),
        (DOUBLE_DESCENT.replace("P = [16, 32]", "P = [1, 32]"), "grid.P"),
        (DOUBLE_DESCENT.replace("D = [16, 32]", "D = []"), "grid.D"),
        (DOUBLE_DESCENT.replace("D = [16, 32]", "Dims = [16]"), "grid.Dims"),
        (DOUBLE_DESCENT.replace("max_steps = 2", "max_step = 2"), "budget.max_step"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nbatchsize = 3"), "batchsize"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nbatch_size = 3"), "base.batch_size"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nlr = -1.0"), "lr"),
        (DOUBLE_DESCENT.replace("ppe_last = 2", "ppe_last = 0"), "ppe_last"),
        (DOUBLE_DESCENT.replace("[grid]\nP = [16, 32]\nD = [16, 32]", ""), "grid"),
        (DOUBLE_DESCENT.replace('kind = "double-descent"', 'kind = "scaling"'), "kind"),
        (SCALING.replace("num_views = 2", "views = 2"), "point.views"),
        (SCALING.replace("num_views = 2\n", ""), "point.num_views"),
        (SCALING.replace("projector_dim = [8, 16]", "projector_dim = 8"), "axes.projector_dim"),
        (SCALING + "[budget]\nmax_steps = 3\n", "budget"),
    ],
)
def test_bad_sweep_files_name_the_bad_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(ValueError, match=key):
        load_sweep(path, kind="double-descent" if "double-descent" in text else "scaling")


def test_invalid_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid TOML"):
        load_sweep(_write(tmp_path, "x.toml", "kind = [\n"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "absent.toml")
    assert main(["sweep", "double-descent", "--config", str(tmp_path / "absent.toml")]) == 2


def test_plans_are_deduplicated_and_cover_axes_and_joint_grid() -> None:
    spec = parse_sweep(sweeps.tomllib.loads(SCALING + "[joint]\nsteps = [2, 3]\nbatch_size = [16, 32]\n"))
    names = [run.name for run in plan_runs(spec)]
    assert len(names) == len(set(names))
    # point, S3, B32, D16 (axes) + S3_B32 (the only new joint cell)
    assert len(names) == 5 and "S3_B32_D8_K2_s0" in names
    point = plan_runs(spec)[0]
    assert {"point", "axis:steps", "axis:batch_size", "joint"} <= set(point.groups)


def test_peak_table_finds_the_ridge() -> None:
    Ps = Ds = [16, 32, 64, 128]
    ratio = np.array([[min(p, d) / max(p, d) for d in Ds] for p in Ps])
    theory = 0.15 * ratio
    rows = peak_table(Ps, Ds, theory + 0.2, theory)
    assert [r["peak_P"] for r in rows] == Ds and all(r["verdict"] == "at P = D" for r in rows)
    measured = np.full((4, 4), 0.3)
    measured[:, 0] = [0.1, 0.2, 0.3, 0.4]  # D = 16: rising in P, peak at the largest P
    measured[1, 1] = np.nan
    rows = peak_table(Ps, Ds, measured, theory)
    assert rows[0]["peak_P"] == 128 and rows[0]["verdict"] == "away from P = D" and rows[0]["at_edge"]
    assert rows[1]["n_finished"] == 3
    swapped = peak_table(Ds, Ps, measured.T, theory.T, names=("D", "P"))
    assert swapped[3]["verdict"].endswith("D = P") or "D = P" in swapped[3]["verdict"]


def test_spec_round_trips_through_json() -> None:
    spec = parse_sweep(sweeps.tomllib.loads(DOUBLE_DESCENT))
    again = SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert [r.name for r in plan_runs(again)] == ["P16_D16_s0", "P32_D16_s0", "P16_D32_s0", "P32_D32_s0"]


def test_ridge_contrast_compares_one_octave_off_the_ridge() -> None:
    Ps = Ds = [16, 32, 64]
    values = np.array([[0.15, 0.06, 0.03], [0.06, 0.15, 0.06], [0.03, 0.06, 0.15]])
    contrast = sweeps.ridge_contrast(Ps, Ds, values)
    assert contrast["beyond"] == pytest.approx(0.4) and contrast["n_beyond"] == 2
    assert contrast["before"] == pytest.approx(0.4) and contrast["n_before"] == 2
    assert sweeps.ridge_contrast([16], [64], np.array([[0.1]]))["beyond"] is None
