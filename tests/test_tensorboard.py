"""Optional TensorBoard scalars: the records of metrics.jsonl, through a sink of MetricsLog."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from mmcr.config import RESUMABLE_FIELDS, RUN_LOCAL_FIELDS, PretrainConfig, build_config
from mmcr.records import MetricsLog, TensorBoardSink, require_tensorboard
from mmcr.training import pretrain

TINY = {
    "dataset": "digits",
    "encoder_width": 4,
    "projector_hidden": [16],
    "projector_dim": 8,
    "batch_size": 128,
    "epochs": 2,
    "max_steps": 4,
    "log_every": 1,
    "progress": False,
    "monitor_size": 64,
    "threads": 2,
}


class FakeWriter:
    """Records what a SummaryWriter would be asked to write."""

    instances: ClassVar[list[FakeWriter]] = []

    def __init__(self, log_dir: str = "", purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: list[tuple[str, float, int]] = []
        self.flushes = 0
        self.closed = False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None:
        self.scalars.append((tag, scalar_value, global_step))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def fake_tensorboard(monkeypatch: pytest.MonkeyPatch) -> type[FakeWriter]:
    """``torch.utils.tensorboard`` replaced by a module whose SummaryWriter is :class:`FakeWriter`."""
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    FakeWriter.instances = []
    return FakeWriter


def test_sink_writes_every_numeric_field_against_the_step() -> None:
    writer = FakeWriter()
    sink = TensorBoardSink("unused", writer=writer)
    sink.write({"kind": "step", "step": 20, "epoch": 0.5, "loss": -3.25, "ppe": None, "lr": 1e-3})
    sink.write({"kind": "epoch", "step": 40, "knn_val_acc": 0.9, "val_ppe": float("nan"), "note": "x"})
    assert writer.scalars == [
        ("step/epoch", 0.5, 20),
        ("step/loss", -3.25, 20),
        ("step/lr", 1e-3, 20),
        ("epoch/knn_val_acc", 0.9, 40),
    ]
    assert writer.flushes == 2
    sink.close()
    assert writer.closed


def test_metrics_log_sends_its_records_to_the_sinks(tmp_path: Path) -> None:
    writer = FakeWriter()
    log = MetricsLog(
        tmp_path / "metrics.jsonl", enabled=True, resume_step=None, sinks=[TensorBoardSink("", writer=writer)]
    )
    log.write({"kind": "step", "step": 1, "loss": 2.0})
    log.close()
    assert writer.scalars == [("step/loss", 2.0, 1)] and writer.closed
    other = FakeWriter()
    quiet = MetricsLog(
        tmp_path / "other.jsonl", enabled=False, resume_step=None, sinks=[TensorBoardSink("", writer=other)]
    )
    quiet.write({"kind": "step", "step": 1, "loss": 2.0})
    quiet.close()
    assert other.scalars == [] and not other.closed  # a rank other than 0 writes nothing


def test_pretrain_logs_the_metrics_records_to_tensorboard(
    tmp_path: Path, fake_tensorboard: type[FakeWriter]
) -> None:
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    stale = out / "tensorboard" / "events.out.tfevents.1.old"
    stale.write_bytes(b"an earlier run's events")
    pretrain(build_config(None, {**TINY, "out": str(out), "tensorboard": True}))
    assert not stale.exists()  # a fresh run starts a fresh event log, as metrics.jsonl
    (writer,) = fake_tensorboard.instances
    assert writer.log_dir == str(out / "tensorboard") and writer.purge_step is None and writer.closed
    expected = []
    for record in (json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()):
        for key, value in record.items():
            if (
                key not in ("kind", "step")
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                expected.append((f"{record['kind']}/{key}", float(value), record["step"]))
    assert writer.scalars == expected
    tags = {tag for tag, _, _ in writer.scalars}
    assert {"step/loss", "step/ppe", "step/lr", "epoch/knn_val_acc"} <= tags

    # resumed from the end (step 4) for 2 more steps: TensorBoard hides what came after step 4,
    # as metrics.jsonl is cut there
    longer = {**TINY, "out": str(out), "tensorboard": True, "max_steps": 6}
    checkpoint_step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    pretrain(build_config(None, longer), resume=True)
    resumed = fake_tensorboard.instances[-1]
    assert resumed.purge_step == checkpoint_step + 1
    assert [step for tag, _, step in resumed.scalars if tag == "step/loss"] == [5, 6]


def test_tensorboard_asked_for_and_missing_is_refused_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ValueError, match=r"pip install 'mmcr\[tensorboard\]'"):
        require_tensorboard()
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="tensorboard = true needs the tensorboard package"):
        pretrain(build_config(None, {**TINY, "out": str(out), "tensorboard": True}))
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()


def test_tensorboard_is_off_by_default_and_changes_no_numbers() -> None:
    assert PretrainConfig().tensorboard is False
    assert "tensorboard" in RUN_LOCAL_FIELDS and "tensorboard" in RESUMABLE_FIELDS
    assert build_config(None, {"tensorboard": "true"}).tensorboard is True
