"""Nothing lost: run folders are claimed, checks come before the work, interruptions save.

Each test is one class of fault: a folder that holds a run, two runs into one folder, an
output path that is a file, settings that used to fail after the last step, SIGTERM, a
failure in the monitor, non-finite weights, and a re-spanned schedule on resume.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcr.build import Checkpoint
from mmcr.config import build_config
from mmcr.data import load_dataset
from mmcr.training import loop as loop_module
from mmcr.training import pretrain
from mmcr.training import step as step_module

TINY: dict[str, Any] = {
    "dataset": "digits",
    "encoder_width": 4,
    "projector_hidden": [16],
    "projector_dim": 8,
    "batch_size": 64,
    "epochs": 2,
    "eval_every": 0,
    "log_every": 1,
    "monitor_size": 64,
    "progress": False,
    "threads": 1,
}


def config(out: Path, **overrides: Any) -> Any:
    return build_config(None, {**TINY, "out": str(out), **overrides})


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pretrain(config(out, max_steps=2))
    first = (out / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match=r"already holds a run .*--resume.*--overwrite"):
        pretrain(config(out, max_steps=3))
    assert (out / "metrics.jsonl").read_text() == first  # nothing was touched
    pretrain(config(out, max_steps=3), overwrite=True)
    assert Checkpoint.load(out / "last.pt").step == 3
    pretrain(config(out, max_steps=4), resume=True)
    assert Checkpoint.load(out / "last.pt").step == 4


def test_a_second_writer_is_refused_while_the_folder_is_locked(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    held = os.open(out, os.O_RDONLY)  # another process's run, as the kernel sees it
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another process is writing a run"):
            pretrain(config(out, max_steps=1))
    finally:
        os.close(held)
    assert not (out / "config.json").exists()
    pretrain(config(out, max_steps=1))  # the lock went with its holder


def test_bad_output_paths_are_sentences(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        pretrain(config(a_file, max_steps=1))
    with pytest.raises(ValueError, match="out must name"):
        config(Path(" "))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"knn_temperature": 0}, "knn_temperature must be a finite number > 0"),
        ({"knn_k": 0}, "knn_k must be >= 1"),
        ({"monitor_size": 0}, "monitor_size must be >= 2"),
        ({"momentum": 3}, r"momentum must be in \[0, 1\)"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"checkpoint_every_steps": -1}, "checkpoint_every_steps must be >= 0"),
    ],
)
def test_settings_that_would_fail_after_training_are_refused_before(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def _signal_after(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop_module.train_step

    def stepping(state: Any, images: torch.Tensor, phases: Any = None) -> Any:
        out = real(state, images, phases)
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop_module, "train_step", stepping)


def test_sigterm_saves_a_resumable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    _signal_after(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config(out))
    checkpoint = Checkpoint.load(out / "last.pt")
    assert checkpoint.step == 3 and checkpoint.reason == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back
    monkeypatch.undo()
    pretrain(config(out), resume=True)
    assert Checkpoint.load(out / "last.pt").reason == "end"


def _epoch_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]


def test_an_interrupt_at_the_last_step_is_finished_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM after the last step, before the run's end: the checkpoint is the last step's,
    # without the final monitor; resuming runs that monitor and writes the run's end
    out = tmp_path / "run"
    _signal_after(4, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config(out, max_steps=4))
    interrupted = Checkpoint.load(out / "last.pt")
    assert interrupted.step == 4 and interrupted.reason == "interrupted" and interrupted.metrics == {}
    assert _epoch_records(out) == []
    monkeypatch.undo()
    pretrain(config(out, max_steps=4), resume=True)
    finished = Checkpoint.load(out / "last.pt")
    assert finished.step == 4 and finished.reason == "end" and "val_ppe" in finished.metrics
    assert [r["step"] for r in _epoch_records(out)] == [4]
    # a finished run resumed again has nothing left to do: no second final monitor
    pretrain(config(out, max_steps=4), resume=True)
    assert [r["step"] for r in _epoch_records(out)] == [4]
    assert Checkpoint.load(out / "last.pt").metrics == finished.metrics


def test_checkpoint_every_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    real = loop_module._save
    monkeypatch.setattr(loop_module, "_save", lambda c, p: (saved.append(c.step), real(c, p)))
    pretrain(config(tmp_path / "run", checkpoint_every_steps=5, max_steps=12, checkpoint_every=0))
    assert saved == [5, 10, 12]


def test_a_monitor_failure_keeps_the_training_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, network: Any, device: Any) -> dict[str, float]:
        raise RuntimeError("monitor failed")

    monkeypatch.setattr(loop_module.ValidationMonitor, "__call__", broken)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="monitor failed"):
        pretrain(config(out, max_steps=3))
    assert Checkpoint.load(out / "last.pt").step == 3
    monkeypatch.undo()
    pretrain(config(out, max_steps=3), resume=True)  # the final monitor, which failed, runs now
    finished = Checkpoint.load(out / "last.pt")
    assert finished.step == 3 and finished.reason == "end" and "val_ppe" in finished.metrics


def test_non_finite_weights_are_never_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    pretrain(config(out, max_steps=2))
    good = Checkpoint.load(out / "last.pt")
    real = step_module.build_network

    def poisoned(cfg: Any, in_channels: int) -> Any:
        network = real(cfg, in_channels)
        next(iter(network.encoder.modules())).register_buffer("broken", torch.tensor(float("nan")))
        return network

    monkeypatch.setattr(step_module, "build_network", poisoned)
    pretrain(config(out, max_steps=3), overwrite=True)
    assert not (out / "last.pt").exists()  # overwrite removed the old run; the NaN state was not saved
    assert good.step == 2


def test_a_resumed_run_with_a_longer_schedule_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    pretrain(config(out, max_steps=3))
    pretrain(config(out, max_steps=6), resume=True)
    assert "learning-rate schedule is re-spanned" in capsys.readouterr().err


def test_outputs_have_the_ordinary_file_mode(tmp_path: Path) -> None:
    out = tmp_path / "run"
    pretrain(config(out, max_steps=1))
    mask = os.umask(0)
    os.umask(mask)
    for name in ("last.pt", "config.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~mask
    assert not list(out.glob(".*.tmp"))


def test_a_named_data_dir_is_used_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the environment's copy must not stand in for an empty folder the user named
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MMCR_DATA_DIR", "/usr/share/datasets/fashion-mnist")
    with pytest.raises(FileNotFoundError, match=str(empty)):
        load_dataset("fashion-mnist", "train", empty)


def test_the_run_says_which_files_it_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
        from image_trees import make_tree
    except ImportError:  # pragma: no cover - layout with tests/__init__.py
        from tests.image_trees import make_tree  # type: ignore[no-redef]

    tree = make_tree(tmp_path / "tree", per_class=8)
    cfg = config(
        tmp_path / "run",
        dataset="imagefolder",
        augment="imagenet",
        data_dir=str(tree),
        image_size=16,
        crop_size=16,
        batch_size=8,
        monitor_size=8,
        max_steps=1,
        loader="memory",
    )
    pretrain(cfg)
    assert f"data read from: {tree / 'train'} (24 image files)" in capsys.readouterr().err
