"""The experiment runner: one folder per pretraining run, trained once, then marked done.

Every study (double descent, scaling, the objective comparison) drives its runs through
:class:`Run`, so a run folder means the same thing everywhere::

    <runs>/<name>/config.json     the resolved configuration   (written by pretrain;
    <runs>/<name>/metrics.jsonl   step and epoch records        see mmcr.records)
    <runs>/<name>/last.pt         the checkpoint
    <runs>/<name>/train.log       pretrain's printed output (unless verbose)
    <runs>/<name>/<marker>        the done marker: the run's result, written atomically last

A sweep's runs lie in ``OUT/runs`` (:func:`run_dir`) with the marker ``result.json``; the
objective comparison's lie in its work directory with the marker ``summary.json``, and train
verbosely inside a job whose whole output (training and evaluation) goes to its ``log.txt``.

A run whose marker exists is finished and is not trained again; before it is reused, its
fingerprint (the configuration it was trained with) is compared with the planned one, and
only :data:`~mmcr.config.RUN_LOCAL_FIELDS` may differ. A run with a checkpoint and no marker
was interrupted: training resumes from the checkpoint (``pretrain(cfg, resume=True)``); a
run killed before its first checkpoint starts again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcr.config import PretrainConfig, config_differences
from mmcr.records import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    METRICS_NAME,
    last_records,
    read_json,
    read_jsonl,
    write_json,
)
from mmcr.training import pretrain

__all__ = ["DONE_NAME", "RUNS_DIR", "TRAIN_LOG", "Run", "check_fingerprints", "run_dir", "run_worker"]

#: The folder of a sweep directory that holds its runs.
RUNS_DIR = "runs"
#: The done marker of a sweep's run (its result line).
DONE_NAME = "result.json"
#: Where pretrain's printed output goes unless a run is verbose.
TRAIN_LOG = "train.log"


def run_dir(out: str | Path, name: str) -> Path:
    """The folder of run ``name`` of the sweep in ``out``: ``out/runs/<name>``."""
    return Path(out) / RUNS_DIR / name


@dataclass
class Run:
    """A planned run: its name and resolved configuration; ``cfg.out`` is its folder.

    Attributes:
        name: the run's name (its folder's name, in the studies' layouts).
        cfg: the configuration it is (or was) trained with.
        marker: the file name of its done marker.
    """

    name: str
    cfg: PretrainConfig
    marker: str = DONE_NAME

    @property
    def dir(self) -> Path:
        return Path(self.cfg.out)

    @property
    def marker_path(self) -> Path:
        return self.dir / self.marker

    def result(self) -> dict[str, Any] | None:
        """The record of the done marker, or None while the run is not finished."""
        if not self.marker_path.exists():
            return None
        record: dict[str, Any] = read_json(self.marker_path)
        return record

    def finish(self, record: Mapping[str, Any]) -> Path:
        """Write the done marker (atomically; numpy values converted, non-finite floats null)."""
        return write_json(self.marker_path, record)

    def in_use(self) -> bool:
        """Whether another process holds the run's folder now (training it: the folder's flock)."""
        try:
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError:
            return False  # no folder yet: nobody trains it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's own lock
        return False

    def has_checkpoint(self) -> bool:
        """Whether training left a checkpoint (an interrupted run resumes from it)."""
        return (self.dir / CHECKPOINT_NAME).exists()

    def trained_config(self) -> dict[str, Any] | None:
        """The configuration pretrain saved in the run's folder, or None if it has none."""
        path = self.dir / CONFIG_NAME
        if not path.exists():
            return None
        stored: dict[str, Any] = read_json(path)
        return stored

    def changes(self, trained: Mapping[str, Any] | None = None) -> list[str]:
        """The fingerprint check: how the configuration a run was trained with differs from ``cfg``.

        Args:
            trained: the stored configuration (e.g. the one recorded in a result line); by
                default the run's ``config.json``. Nothing stored: nothing differs.

        Returns:
            ``"name (old -> new)"`` for every field outside
            :data:`~mmcr.config.RUN_LOCAL_FIELDS` that differs; empty when the run can be reused.
        """
        stored = self.trained_config() if trained is None else dict(trained)
        if stored is None:
            return []
        return config_differences(stored, self.cfg.to_dict())

    def train(self, *, verbose: bool = False) -> Path:
        """Pretrain the run, resuming from its checkpoint if it has one; the checkpoint's path.

        The run owns its folder: without a checkpoint (a run killed before its first one)
        it starts again over whatever the folder holds. Unless ``verbose``, pretrain's printed
        output is appended to the run's ``train.log`` (its stderr too, when the configuration
        shows no progress bar).
        """
        resume = self.has_checkpoint()
        if verbose:
            return pretrain(self.cfg, resume=resume, overwrite=not resume)
        log_path = self.dir / TRAIN_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(log_path.open("a"))
            stack.enter_context(contextlib.redirect_stdout(handle))
            if not self.cfg.progress:  # keep pretrain's bar on the terminal when it is asked for
                stack.enter_context(contextlib.redirect_stderr(handle))
            return pretrain(self.cfg, resume=resume, overwrite=not resume)

    def metrics(self) -> list[dict[str, Any]]:
        """The records of the run's ``metrics.jsonl`` (a line cut by an interruption skipped)."""
        return read_jsonl(self.dir / METRICS_NAME)

    def last_metrics(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The last step record and the last epoch (validation monitor) record."""
        return last_records(self.dir / METRICS_NAME)


def run_worker(module: str, spec_file: Path, log_path: Path, threads: int) -> int:
    """Run ``python -m MODULE --worker SPEC`` with ``threads`` torch threads; its exit status.

    The studies that train several runs at once (the objective and image-text comparisons)
    start each job so; its whole output is appended to ``log_path``.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with log_path.open("a") as log:
        proc = subprocess.run(
            [sys.executable, "-m", module, "--worker", str(spec_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    return proc.returncode


def check_fingerprints(runs: Iterable[Run]) -> None:
    """Refuse finished runs whose saved configuration differs from the planned one (``SystemExit``)."""
    stale = [
        f"{run.dir} ({', '.join(c)})" for run in runs if run.result() is not None and (c := run.changes())
    ]
    if stale:
        raise SystemExit(
            "these runs were made with a different configuration (the recipe changed?); delete them or "
            "use another --work-dir:\n  " + "\n  ".join(stale)
        )
