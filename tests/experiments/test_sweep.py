"""Sweeps end to end on scikit-learn's digits: double descent, scaling, fit, report, resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import tomllib

from mmcr.cli import main
from mmcr.experiments import runner
from mmcr.experiments.spec import parse_sweep, plan_runs, run_config
from mmcr.experiments.sweep import run_sweep

from .sweep_files import DOUBLE_DESCENT, SCALING, write


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_double_descent_sweep_end_to_end_resumes_and_reports(
    tmp_path: Path, train_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, "dd.toml", DOUBLE_DESCENT)
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
    spec = parse_sweep(tomllib.loads(one_cell), kind="double-descent")
    run = plan_runs(spec)[0]
    cfg = run_config(spec, run, out)
    # the run stopped after its first step, with a checkpoint (max_steps may change on resume)
    runner.pretrain(dataclasses.replace(cfg, max_steps=1))
    run_sweep(spec, out, dry_run=True)
    assert "partial (resumes)" in capsys.readouterr().out
    run_sweep(spec, out, log=lambda _: None)
    assert "resuming from" in (out / "runs" / run.name / "train.log").read_text()
    steps = [r["step"] for r in _lines(out / "runs" / run.name / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == [1, 2]
    assert _lines(out / "results.jsonl")[0]["steps"] == 2
    assert len(train_calls) == 2  # the interrupted start and the resumed run

    # The sweep was killed after the run's done-marker but before its result line: the run
    # is not trained again, and its line is restored from the marker.
    (out / "results.jsonl").write_text("")
    run_sweep(spec, out, log=lambda _: None)
    assert len(train_calls) == 2
    assert [r["name"] for r in _lines(out / "results.jsonl")] == [run.name]

    # A finished run planned again with another configuration is refused, not silently reused.
    spec.base["lr"] = 0.01
    with pytest.raises(ValueError, match="lr"):
        run_sweep(spec, out, log=lambda _: None)
    assert len(train_calls) == 2


@pytest.mark.slow
def test_scaling_sweep_and_fit_end_to_end(tmp_path: Path, train_calls: list[str]) -> None:
    config = write(tmp_path, "scaling.toml", SCALING)
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


def test_shards_split_the_plan_between_processes(tmp_path: Path) -> None:
    spec = parse_sweep(tomllib.loads(SCALING), kind="scaling")
    names = [r.name for r in plan_runs(spec)]
    listed: list[set[str]] = []
    for k in range(3):
        lines: list[str] = []
        run_sweep(spec, tmp_path / "sh", dry_run=True, shard=(k, 3), log=lines.append)
        listed.append({name for name in names if any(f" {name} " in line for line in lines)})
    assert set().union(*listed) == set(names)
    assert sum(len(s) for s in listed) == len(names)  # each run in exactly one shard
    with pytest.raises(ValueError, match="shard"):
        run_sweep(spec, tmp_path / "sh", dry_run=True, shard=(3, 3))
    with pytest.raises(SystemExit) as exc:  # argparse's usage error
        main(["sweep", "scaling", "--config", str(write(tmp_path, "s.toml", SCALING)), "--shard", "2/2"])
    assert exc.value.code == 2


def test_a_run_another_process_trains_is_left_to_it(tmp_path: Path) -> None:
    import fcntl
    import os

    spec = parse_sweep(tomllib.loads(SCALING), kind="scaling")
    out = tmp_path / "busy"
    first = plan_runs(spec)[0]
    folder = out / "runs" / first.name
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as pretrain holds a run it trains
    try:
        lines: list[str] = []
        run_sweep(spec, out, max_runs=1, log=lines.append)
        assert any(first.name in line and "another process" in line for line in lines)
        results = _lines(out / "results.jsonl")
        assert [r["name"] for r in results] == [plan_runs(spec)[1].name]  # it took the next free run
    finally:
        os.close(fd)
