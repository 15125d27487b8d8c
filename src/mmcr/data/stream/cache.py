"""The decoded uint8 cache: splits decoded once into memory-mapped files that every run shares.

A cache entry is one directory ``<cache_dir>/decoded-<key>/`` holding one ``<part>.npy``
per part (uint8 ``(N, C, H, W)`` images, raw ``.npy`` so they can be memory-mapped), one
``<part>.labels.npy`` each and ``meta.json``. It is built in a temporary directory beside
it and renamed into place in one step: an interrupted build leaves only a ``.tmp``
directory, which no reader opens (and the next build ignores). Readers map the files
read-only, so every rank and every run on a machine reads the same pages from the page
cache instead of holding its own copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.stream.index import default_cache_dir

__all__ = ["cache_entry", "decoded_cache", "read_entry"]

_CACHE_VERSION = 1


def cache_entry(key: Mapping[str, Any], cache_dir: str | Path | None = None) -> Path:
    """The directory of the cache entry that ``key`` (plain JSON values) names."""
    text = json.dumps({"version": _CACHE_VERSION, **key}, sort_keys=True)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
    return default_cache_dir(cache_dir) / f"decoded-{digest}"


def _memmap_tensor(path: Path) -> torch.Tensor:
    array = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        # read-only pages: nothing writes to training images, and a write would fault
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def read_entry(entry: Path) -> tuple[dict[str, ImageDataset], dict[str, Any]] | None:
    """The parts and notes of a complete cache entry, memory-mapped; ``None`` if absent or damaged."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("version") != _CACHE_VERSION:
            return None
        parts = {}
        for name, info in meta["parts"].items():
            images = _memmap_tensor(entry / f"{name}.npy")
            labels = torch.from_numpy(np.load(entry / f"{name}.labels.npy"))
            if tuple(images.shape) != tuple(info["shape"]) or labels.shape[0] != images.shape[0]:
                return None
            parts[name] = ImageDataset(
                images, labels, int(meta["num_classes"]), meta["name"], meta["classes"],
                sources=(str(entry),),
            )
        return parts, dict(meta.get("notes", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(entry: Path, parts: Mapping[str, ImageDataset], notes: Mapping[str, Any]) -> None:
    """Write ``parts`` to a temporary directory and rename it to ``entry`` (first writer wins)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        first = next(iter(parts.values()))
        meta = {
            "version": _CACHE_VERSION,
            "name": first.name,
            "num_classes": first.num_classes,
            "classes": first.classes,
            "parts": {name: {"shape": list(part.images.shape)} for name, part in parts.items()},
            "notes": dict(notes),
        }
        for name, part in parts.items():
            out = np.lib.format.open_memmap(
                tmp / f"{name}.npy", mode="w+", dtype=np.uint8, shape=tuple(part.images.shape)
            )
            for start in range(0, len(part), 4096):
                out[start : start + 4096] = part.images[start : start + 4096].numpy()
            out.flush()
            del out
            np.save(tmp / f"{name}.labels.npy", part.labels.numpy())
        (tmp / "meta.json").write_text(json.dumps(meta))
        for path in tmp.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").exists():
                raise
            # another process finished the same entry first: keep its copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decoded_cache(
    key: Mapping[str, Any],
    build: Callable[[], tuple[Mapping[str, ImageDataset], Mapping[str, Any]]],
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, ImageDataset], dict[str, Any]]:
    """The parts and notes ``build()`` returns, from the cache entry of ``key`` (built on first use).

    Returns ``({part: ImageDataset}, notes)``; the images are read-only memory-mapped tensors
    and ``notes`` the plain JSON values ``build`` returned beside them.
    """
    entry = cache_entry(key, cache_dir)
    found = read_entry(entry)
    if found is None:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)  # damaged: rebuilt below
        _write(entry, *build())
        found = read_entry(entry)
        if found is None:
            raise OSError(f"the decoded cache {entry} could not be read back after it was written")
    return found
