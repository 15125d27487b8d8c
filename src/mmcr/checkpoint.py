"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (model and
optimiser state, step, configuration, last metrics) saved with ``torch.save`` to a
temporary file in the same directory and renamed over the target, so an interruption
never leaves a half-written checkpoint. Loading uses ``torch.load(weights_only=True)``,
which refuses anything but plain data.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from mmcr.records import write_atomic


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename); returns the path."""
    return write_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text advises weights_only=False, which would run the file's code
        raise ValueError(
            f"cannot read checkpoint {path}: it is not a file of tensors and plain data "
            "(corrupt, or it holds other objects, which are refused because loading them could run code)"
        ) from exc
    except Exception as exc:  # torch raises several types for corrupt files
        raise ValueError(f"cannot read checkpoint {path}: {type(exc).__name__} {exc}".rstrip()) from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not an mmcr checkpoint (no 'model' and 'config' entries)")
    return state
