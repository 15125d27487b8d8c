"""webdataset tar shards: writing them from a tree or a TSV, and reading them split over ranks.

A shard is a tar file of samples, each a group of members sharing a key: ``<key>.jpg``
(or ``.png``, ``.webp``: the original file's bytes), ``<key>.cls`` (the class index, as
text) for an image folder, ``<key>.txt`` (the image's captions, one per line) for a TSV.
:func:`pack_shards` writes them (each to a temporary name, then renamed) with
``classes.json`` beside them.

:class:`ShardStream` reads them with the ``webdataset`` library (the optional extra
``mmcr[webdataset]``). An epoch's shard order is a permutation seeded by ``(seed,
epoch)``; rank r of W takes shards r, r + W, ... of it and worker w of a rank's V
DataLoader workers takes every V-th of those, so over all ranks and workers every sample
is read exactly once per epoch. Within a worker a shuffle buffer (seeded by seed, epoch,
rank and worker) mixes the samples of consecutive shards. Given the shards' index
(:func:`~mmcr.data.stream.shard_index.shard_index`) a stream reads on only the samples a
mask keeps, and can pass over the first samples of each worker without decoding them:
how :mod:`~mmcr.data.stream.shard_loader` resumes an epoch at its step.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data.stream.index import FileIndex, write_atomic
from mmcr.data.stream.shard_index import IMAGE_MEMBERS, sample_key
from mmcr.records import write_text

__all__ = [
    "IMAGE_MEMBERS",
    "ShardStream",
    "assigned_shards",
    "caption_samples",
    "folder_samples",
    "pack_shards",
    "raw_sample",
    "shard_files",
    "shard_starts",
    "tsv_rows",
]


def shard_files(source: str | Path) -> list[Path]:
    """The shards of ``source``: a ``.tar`` file, or the sorted ``*.tar`` files of a folder."""
    path = Path(source)
    if path.is_file():
        return [path]
    shards = sorted(path.glob("*.tar")) if path.is_dir() else []
    if not shards:
        raise FileNotFoundError(f"no webdataset shards (*.tar) at {path}; write them with mmcr data pack")
    return shards


def assigned_shards(
    shards: list[Path], seed: int, epoch: int, rank: int, world: int, worker: int, workers: int
) -> list[Path]:
    """The shards worker ``worker`` of rank ``rank`` reads in ``epoch``, in reading order."""
    order = np.random.default_rng([seed, epoch]).permutation(len(shards))
    return [shards[i] for i in order[rank::world][worker::workers]]


class ShardStream(torch.utils.data.IterableDataset):
    """The samples of this rank's share of the shards, for one epoch (see the module docstring).

    Each sample is ``decode(sample)`` for the raw webdataset sample (a dict of member
    suffix -> bytes, with ``"__key__"`` and ``"__url__"``); the default gives ``(image
    bytes, label, caption)`` with label -1 and caption ``""`` where the members are absent.

    Args:
        shards: the shard files, in a fixed order (sorted names).
        seed, epoch: seed the shard order and the shuffle buffer.
        rank, world: this process's rank and the number of processes.
        shuffle_buffer: samples the buffer holds (1: read in shard order).
        decode: turns a raw sample into what the stream yields.
        index: the shards' index; with it each raw sample also carries ``"__index__"``, its
            entry in the index (checked against the sample's key).
        keep: bool ``(len(index),)``: only these samples enter the buffer (with ``index``).
        skip: per DataLoader worker, how many of its first samples (after the buffer) are
            passed over without being decoded.
        tag_workers: yield ``(worker, item)`` pairs instead of items.
    """

    def __init__(
        self,
        shards: list[Path],
        *,
        seed: int,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 1000,
        decode: Callable[[dict[str, Any]], Any] | None = None,
        index: FileIndex | None = None,
        keep: np.ndarray | None = None,
        skip: Sequence[int] = (),
        tag_workers: bool = False,
    ) -> None:
        super().__init__()
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1 (1: no shuffling), got {shuffle_buffer}")
        if keep is not None and index is None:
            raise ValueError("keep names entries of the shards' index: pass index too")
        self.shards, self.seed, self.epoch = list(shards), seed, epoch
        self.rank, self.world, self.shuffle_buffer = rank, world, shuffle_buffer
        self.decode = decode or raw_sample
        self.index, self.keep, self.skip, self.tag_workers = index, keep, tuple(skip), tag_workers
        self.starts = {} if index is None else shard_starts(index)

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch``'s shard order next (call before each epoch's DataLoader iteration)."""
        self.epoch = epoch

    def _samples(self, shards: list[Path]) -> Iterator[dict[str, Any]]:
        try:
            import webdataset as wds
        except ImportError:
            raise ImportError(
                "reading webdataset shards needs the webdataset package: pip install 'mmcr[webdataset]'"
            ) from None
        for shard in shards:
            # this class splits the shards over ranks and workers itself: the library only reads
            pipeline = wds.WebDataset(
                [str(shard)], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
            )
            if self.index is None:
                yield from pipeline
                continue
            yield from self._indexed(shard, pipeline)

    def _indexed(self, shard: Path, pipeline: Any) -> Iterator[dict[str, Any]]:
        """The kept samples of one shard, each with its ``"__index__"``, checked against the index."""
        assert self.index is not None
        first, end = self.starts[str(shard.relative_to(self.index.root))]
        position = first
        for sample in pipeline:
            if position >= end or _index_key(self.index, position) != sample["__key__"]:
                raise ValueError(_changed(shard, sample["__key__"]))
            if self.keep is None or self.keep[position]:
                sample["__index__"] = position
                yield sample
            position += 1
        if position != end:
            raise ValueError(_changed(shard, "its end"))

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        mine = assigned_shards(self.shards, self.seed, self.epoch, self.rank, self.world, worker, workers)
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}")
        skip = self.skip[worker] if worker < len(self.skip) else 0
        buffer: list[dict[str, Any]] = []

        def emitted() -> Iterator[dict[str, Any]]:
            for sample in self._samples(mine):
                buffer.append(sample)
                if len(buffer) >= self.shuffle_buffer:
                    j = rng.randrange(len(buffer))
                    buffer[j], buffer[-1] = buffer[-1], buffer[j]
                    yield buffer.pop()
            rng.shuffle(buffer)
            yield from buffer

        for count, sample in enumerate(emitted()):
            if count < skip:
                continue  # read, not decoded: a resumed epoch passes over what it already trained on
            item = self.decode(sample)
            yield (worker, item) if self.tag_workers else item


def shard_starts(index: FileIndex) -> dict[str, tuple[int, int]]:
    """Each shard's (relative name) first index entry and the entry after its last."""
    paths = index.paths
    bounds = np.flatnonzero(paths[1:] != paths[:-1]) + 1 if len(paths) > 1 else np.empty(0, np.int64)
    edges = [0, *bounds.tolist(), len(paths)]
    return {bytes(paths[a]).decode("utf-8"): (a, b) for a, b in itertools.pairwise(edges)}


def _index_key(index: FileIndex, position: int) -> str | None:
    assert index.members is not None
    parts = sample_key(bytes(index.members[position]).decode("utf-8"))
    return None if parts is None else parts[0]


def _changed(shard: Path, where: str) -> str:
    return (
        f"shard {shard} does not match its index at {where}: it changed since it was indexed; "
        "run again (the index is rebuilt when a shard's size or time changes) or delete the "
        "shards-*.npz index in the cache directory"
    )


def raw_sample(sample: dict[str, Any]) -> tuple[bytes, int, str]:
    """``(image bytes, label, caption)`` of a webdataset sample (label -1, caption "" if absent)."""
    image = next((sample[k] for k in IMAGE_MEMBERS if k in sample), None)
    if image is None:
        key = sample.get("__key__")
        raise ValueError(f"shard sample {key!r} has no image member ({', '.join(IMAGE_MEMBERS)})")
    label = int(sample["cls"]) if "cls" in sample else -1
    caption = sample["txt"].decode("utf-8") if "txt" in sample else ""
    return image, label, caption


def tsv_rows(
    path: Path, image_column: str = "filepath", caption_column: str = "title"
) -> list[tuple[Path, str]]:
    """``(image path, caption)`` of each row of a tab-separated file with a header line."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in (image_column, caption_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} has no column {' or '.join(missing)}; its header is {reader.fieldnames} "
                f"(expected tab-separated columns {image_column} and {caption_column})"
            )
        rows = [(Path(r[image_column]), r[caption_column]) for r in reader]
    base = path.parent
    return [(p if p.is_absolute() else base / p, caption) for p, caption in rows]


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def pack_shards(
    samples: list[tuple[Path, dict[str, bytes]]],
    dest: Path,
    *,
    shard_size: int,
    classes: list[str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Path]:
    """Write ``samples`` (image file, extra members) as shards of ``shard_size`` samples.

    Shards are ``dest/shard-000000.tar``, ...; each is written to a temporary name and
    renamed, so a shard that exists is complete. Keys are the sample's position
    (``000000042``). ``classes`` (the class names, if any) go to ``dest/classes.json``.
    Returns the shard paths.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for number, start in enumerate(range(0, len(samples), shard_size)):
        path = dest / f"shard-{number:06d}.tar"
        chunk = samples[start : start + shard_size]

        def write(handle: Any, chunk: list[Any] = chunk, start: int = start) -> None:
            with tarfile.open(fileobj=handle, mode="w") as tar:
                for offset, (image, extra) in enumerate(chunk):
                    key = f"{start + offset:09d}"
                    suffix = image.suffix.lower().lstrip(".") or "jpg"
                    _member(tar, f"{key}.{'jpg' if suffix == 'jpeg' else suffix}", image.read_bytes())
                    for name, data in extra.items():
                        _member(tar, f"{key}.{name}", data)

        write_atomic(path, write)
        written.append(path)
        if progress is not None:
            progress(len(chunk))
    if classes is not None:
        write_text(dest / "classes.json", json.dumps(classes))
    return written


def folder_samples(index: FileIndex) -> list[tuple[Path, dict[str, bytes]]]:
    """The samples of an image folder index: each file with its ``.cls`` member."""
    return [(index.path(i), {"cls": str(int(index.labels[i])).encode()}) for i in range(len(index))]


def caption_samples(rows: list[tuple[Path, str]]) -> list[tuple[Path, dict[str, bytes]]]:
    """The samples of TSV rows: each image once, with its caption(s) in ``.txt``, one per line.

    Rows naming the same image make one sample whose captions are in row order (a
    COCO-style table); a line break inside a caption becomes a space, so that each line of
    the ``.txt`` is one caption, as the paired shard reader reads it.
    """
    grouped: dict[Path, list[str]] = {}
    for path, caption in rows:
        if path not in grouped and not os.path.isfile(path):
            raise FileNotFoundError(f"image {path} named in the TSV does not exist")
        text = " ".join(caption.splitlines()).strip()
        if not text:
            raise ValueError(f"the TSV gives image {path} an empty caption")
        grouped.setdefault(path, []).append(text)
    return [(path, {"txt": "\n".join(captions).encode("utf-8")}) for path, captions in grouped.items()]
