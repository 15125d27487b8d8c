"""The output folder of a pretraining run: claimed before any work, never shared, never overwritten silently.

Before the first step, rank 0 makes sure the folder can hold the run:

- it is a folder (not a file) and writable;
- no other process writes to it: an exclusive ``fcntl.flock`` on the folder itself, which
  the kernel drops when the process dies (a run killed with ``kill -9`` leaves no stale
  lock, and no lock file);
- it does not hold another run, unless the caller resumes that run or asks to overwrite it
  (then the old run's files are removed first, so a failure of the new run never leaves the
  old weights beside the new configuration);
- temporary files that an interrupted atomic write left behind are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mmcr.records import CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME

RUN_FILES = (CONFIG_NAME, METRICS_NAME, CHECKPOINT_NAME)


@contextlib.contextmanager
def claimed(out: Path, *, resume: bool, overwrite: bool) -> Iterator[Path]:
    """Hold ``out`` for one run while the block runs; ``ValueError`` with the way out otherwise."""
    if not str(out).strip():
        raise ValueError("out is empty: name the run's output folder, e.g. --out runs/fmnist")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: name a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        fd = os.open(out, os.O_RDONLY)
    except OSError as exc:
        raise ValueError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"another process is writing a run to {out}; wait for it, or choose another --out"
            ) from None
        _check_previous_run(out, resume=resume, overwrite=overwrite)
        for leftover in out.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        yield out
    finally:
        os.close(fd)


def _check_previous_run(out: Path, *, resume: bool, overwrite: bool) -> None:
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present or resume:
        return
    if not overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(present)}); continue it with --resume, "
            "replace it with --overwrite, or choose another --out"
        )
    for name in present:
        os.unlink(out / name)
