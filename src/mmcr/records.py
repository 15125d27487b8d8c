"""The files of a run folder, and the one way to write and read them.

A pretraining run writes ``config.json`` (the resolved recipe), ``metrics.jsonl`` (one
JSON record a line: ``kind = "step"`` every ``log_every`` steps, ``kind = "epoch"`` after
each monitored epoch) and ``last.pt`` (the checkpoint). Everything that reads or writes
these files (training, evaluation reports, the experiment runner) goes through here, so
the layout and the tolerance for a line cut by an interruption are defined once.

Every write is atomic: a temporary file in the same folder, flushed and renamed over the
target, so a reader never sees half a file and an interruption never corrupts one.

With ``tensorboard = true`` the same records also go to TensorBoard event files under
``OUT/tensorboard`` (:class:`TensorBoardSink`; the optional extra ``mmcr[tensorboard]``).
"""

from __future__ import annotations

import fcntl
import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
TENSORBOARD_NAME = "tensorboard"


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode an ordinary write would
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically."""
    return write_atomic(path, lambda handle: handle.write(text.encode()))


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically (numpy values converted, non-finite floats null)."""
    return write_text(path, json.dumps(jsonable(data), indent=2, sort_keys=sort_keys) + "\n")


def output_folder(out: str | Path, flag: str = "--out") -> Path:
    """Create and return the folder ``out`` a command writes into, refusing what cannot be one.

    An empty name (which would mean the current folder) and the name of an existing file
    are ValueErrors that say so; a folder that cannot be created is an OSError naming it.
    """
    if str(out).strip() == "":
        raise ValueError(f"{flag} is empty: name a folder for the results")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {folder} is a file, not a folder: name a folder for the results")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``; a file that is not JSON is a ValueError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); it is corrupt or was cut short: "
            "restore it, or delete it and rerun the command that writes it"
        ) from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; blank lines and a line cut by an interruption are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as a line (starting a new line if the last one was cut), under a file lock."""
    path = Path(path)
    with path.open("a+") as handle:
        # an exclusive lock: two sweep shards may append to one results file at once
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(handle.tell() - 1)
            if handle.read(1) != "\n":
                handle.write("\n")
        handle.write(json.dumps(jsonable(record)) + "\n")


def last_records(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last ``kind = "step"`` and the last ``kind = "epoch"`` record of a metrics file."""
    last_step: dict[str, Any] = {}
    last_epoch: dict[str, Any] = {}
    for record in read_jsonl(path):
        if record.get("kind") == "step":
            last_step = record
        elif record.get("kind") == "epoch":
            last_epoch = record
    return last_step, last_epoch


class MetricsSink(Protocol):
    """Somewhere else a :class:`MetricsLog` sends each record it writes."""

    def write(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class MetricsLog:
    """A run's ``metrics.jsonl``, written by rank 0 only; on resume truncated to the resumed step.

    Each record also goes to every sink in ``sinks`` (e.g. a :class:`TensorBoardSink`).
    """

    def __init__(
        self, path: Path, enabled: bool, resume_step: int | None, sinks: Sequence[MetricsSink] = ()
    ) -> None:
        self.path = path
        self.enabled = enabled
        self.sinks = list(sinks) if enabled else []
        if not enabled:
            return
        kept = []
        if resume_step is not None:
            kept = [r for r in read_jsonl(path) if r.get("step", 0) <= resume_step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            append_jsonl(self.path, record)
            for sink in self.sinks:
                sink.write(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class ScalarWriter(Protocol):
    """What :class:`TensorBoardSink` needs of ``torch.utils.tensorboard.SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> object: ...

    def flush(self) -> object: ...

    def close(self) -> object: ...


def require_tensorboard() -> None:
    """Raise ``ValueError`` with the fix if TensorBoard logging cannot work here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"tensorboard = true needs the tensorboard package ({exc}): pip install 'mmcr[tensorboard]' "
            "(or pip install tensorboard), or set tensorboard = false"
        ) from None


class TensorBoardSink:
    """The records of ``metrics.jsonl`` as TensorBoard scalars, against their ``step``.

    Every numeric field of a record becomes the scalar ``<kind>/<field>`` (``step/loss``,
    ``step/ppe``, ``epoch/knn_val_acc``, ...); ``kind`` and ``step`` themselves and
    non-numeric or null values are left out. As ``metrics.jsonl`` is rewritten, so are the
    events: a fresh run removes the event files a run before it left in ``logdir``, and a
    run resumed from step S sets ``purge_step = S + 1``, which hides the events an
    interrupted run wrote after S. ``writer`` replaces the ``SummaryWriter`` (for tests).
    """

    def __init__(
        self, logdir: str | Path, resume_step: int | None = None, writer: ScalarWriter | None = None
    ) -> None:
        if writer is None:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            if resume_step is None:
                for stale in Path(logdir).glob("events.out.tfevents.*"):
                    stale.unlink(missing_ok=True)
            purge = None if resume_step is None else resume_step + 1
            writer = SummaryWriter(log_dir=str(logdir), purge_step=purge)
        self.writer = writer

    def write(self, record: Mapping[str, Any]) -> None:
        kind, step = record.get("kind", "metrics"), int(record.get("step", 0))
        for key, value in record.items():
            if key in ("kind", "step") or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(float(value)):
                self.writer.add_scalar(f"{kind}/{key}", float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
