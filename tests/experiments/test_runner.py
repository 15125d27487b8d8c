"""The runner's run folder: done marker, fingerprint check, resume and train.log."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mmcr.config import PretrainConfig, build_config
from mmcr.experiments import runner
from mmcr.experiments.runner import Run, run_dir
from mmcr.records import CHECKPOINT_NAME, CONFIG_NAME


def _run(tmp_path: Path, **overrides: object) -> Run:
    cfg = build_config(None, {"dataset": "digits", "out": str(run_dir(tmp_path, "a")), **overrides})
    return Run("a", cfg)


def test_the_done_marker_is_the_result_written_last(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.dir == tmp_path / "runs" / "a" and run.result() is None
    run.finish({"ppe": np.float32(0.5), "val_ppe": float("nan")})
    assert run.marker_path == run.dir / "result.json"
    assert run.result() == {"ppe": 0.5, "val_ppe": None}


def test_the_fingerprint_ignores_run_local_fields_only(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.changes() == []  # nothing stored yet: nothing to compare
    run.dir.mkdir(parents=True)
    run.cfg.save(run.dir / CONFIG_NAME)
    assert run.changes() == []
    moved = _run(tmp_path / "elsewhere", threads=1, progress=False, device="cpu", data_dir="/nowhere")
    assert moved.changes(run.cfg.to_dict()) == []
    changed = _run(tmp_path, lr=0.01)
    assert changed.changes() == ["lr (0.001 -> 0.01)"]
    # a field added to the configuration since the run counts as its default
    older = {k: v for k, v in run.cfg.to_dict().items() if k != "lr"}
    assert changed.changes(older) == ["lr (0.001 -> 0.01)"] and run.changes(older) == []


def test_train_resumes_from_a_checkpoint_and_logs_to_train_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[bool] = []

    def fake_pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
        calls.append(resume)
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return Path(cfg.out) / CHECKPOINT_NAME

    monkeypatch.setattr(runner, "pretrain", fake_pretrain)
    run = _run(tmp_path, progress=False)
    assert run.train() == run.dir / CHECKPOINT_NAME
    (run.dir / CHECKPOINT_NAME).write_bytes(b"")
    run.train()
    assert calls == [False, True]
    assert (run.dir / "train.log").read_text() == "to stdout\nto stderr\n" * 2
    assert capsys.readouterr() == ("", "")

    shown = _run(tmp_path, progress=True)
    shown.train()  # the progress bar (stderr) stays on the terminal
    assert capsys.readouterr().err == "to stderr\n"
    shown.train(verbose=True)
    assert capsys.readouterr() == ("to stdout\n", "to stderr\n")
    assert (run.dir / "train.log").read_text().count("to stdout") == 3
