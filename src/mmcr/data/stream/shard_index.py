"""The index of a split of webdataset shards: each sample's image as a byte range, and its class.

A split's shards are ``root/<split>/*.tar``; the train split may also be the ``*.tar``
files of ``root`` itself (what ``mmcr data pack SRC DEST`` writes into DEST). The class
names are ``classes.json`` beside the shards (or in ``root``); without it the classes are
the label numbers. :func:`shard_index` reads every shard's tar headers once (not the
images: only the tiny ``.cls`` members) and gives a :class:`~mmcr.data.stream.FileIndex`
whose entries are byte ranges inside the shards, in shard order. Samples are grouped as
the ``webdataset`` library groups them (consecutive members sharing the name up to the
first dot of the file name), so the index and a sequential read agree sample by sample.

The index is cached in ``<cache_dir>/shards-<key>.npz`` (written atomically) and trusted
while every shard keeps its size and modification time and no shard is added or removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from mmcr.data.stream.index import FileIndex, default_cache_dir
from mmcr.records import write_atomic

__all__ = ["IMAGE_MEMBERS", "sample_key", "scan_shard", "shard_index", "split_shards"]

#: Member suffixes read as the sample's image, in order of preference.
IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")

_INDEX_VERSION = 1
# the webdataset library's rules: a member's key is its name up to the first dot of the
# file name, and names like __meta__ are not samples
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_META = re.compile(r"__[^/]*__($|/)")


def sample_key(name: str) -> tuple[str, str] | None:
    """``(key, suffix)`` of a tar member name (suffix lower case), or ``None`` if it is no sample's."""
    if _META.match(name) or ("/" not in name and name.startswith("__") and name.endswith("__")):
        return None
    match = _KEY.match(name)
    return None if match is None else (match.group(1), match.group(2).lower())


def split_shards(root: str | Path, split: str) -> tuple[Path, list[Path]]:
    """The folder and the sorted ``*.tar`` shards of ``split`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"shard folder {root} does not exist; expected root/<split>/*.tar (or root/*.tar for the "
            "train split), written by mmcr data pack, passed with --data-dir"
        )
    folder = root / split
    shards = sorted(folder.glob("*.tar")) if folder.is_dir() else []
    if not shards and split == "train":
        folder, shards = root, sorted(root.glob("*.tar"))
    if not shards:
        raise FileNotFoundError(
            f"no webdataset shards for split {split!r}: expected {root / split}/*.tar"
            + (f" or {root}/*.tar" if split == "train" else "")
            + "; write them with mmcr data pack SRC DEST"
        )
    return folder, shards


def scan_shard(path: Path) -> list[tuple[str, str, int, int, int]]:
    """``(key, image member, byte offset, byte size, label)`` of each sample of a shard, in order.

    The label is the ``.cls`` member's integer, -1 where there is none. A sample without an
    image member (``.jpg``, ``.jpeg``, ``.png``, ``.webp``) is an error naming it.
    """
    samples: list[tuple[str, str, int, int, int]] = []
    key: str | None = None
    image: tuple[str, int, int] | None = None
    rank = len(IMAGE_MEMBERS)  # the preference of the image member found so far
    label = -1

    def close() -> None:
        if key is None:
            return
        if image is None:
            raise ValueError(
                f"sample {key!r} of shard {path} has no image member ({', '.join(IMAGE_MEMBERS)}); "
                "every sample of an image shard needs one"
            )
        samples.append((key, image[0], image[1], image[2], label))

    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                parts = sample_key(info.name) if info.isreg() else None
                if parts is None:
                    continue
                if parts[0] != key:
                    close()
                    key, image, rank, label = parts[0], None, len(IMAGE_MEMBERS), -1
                suffix = parts[1]
                if suffix == "cls":
                    handle = tar.extractfile(info)
                    text = handle.read().decode("utf-8").strip() if handle is not None else ""
                    try:
                        label = int(text)
                    except ValueError:
                        raise ValueError(
                            f"member {info.name} of shard {path} holds {text[:40]!r}, not a class index"
                        ) from None
                elif suffix in IMAGE_MEMBERS and IMAGE_MEMBERS.index(suffix) < rank:
                    image, rank = (info.name, info.offset_data, info.size), IMAGE_MEMBERS.index(suffix)
            close()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"cannot read shard {path}: {err}; re-write it with mmcr data pack") from None
    return samples


def _stamp(shards: list[Path], root: Path) -> list[list[object]]:
    """What the cached index depends on: each shard's name, size and modification time."""
    out: list[list[object]] = []
    for shard in shards:
        stat = shard.stat()
        out.append([str(shard.relative_to(root)), stat.st_size, stat.st_mtime_ns])
    return out


def _classes(folder: Path, root: Path, labels: np.ndarray) -> list[str]:
    for place in (folder, root):
        listed = place / "classes.json"
        if listed.is_file():
            names = json.loads(listed.read_text())
            if not isinstance(names, list):
                raise ValueError(f"{listed} must hold a JSON list of class names")
            return [str(n) for n in names]
    top = int(labels.max()) if labels.size else -1
    return [str(i) for i in range(top + 1)]


def _read_cache(path: Path, root: Path, stamp: list[list[object]]) -> FileIndex | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(bytes(stored["meta"]).decode("utf-8"))
            if meta.get("version") != _INDEX_VERSION or meta.get("stamp") != stamp:
                return None
            return FileIndex(
                root=root,
                paths=stored["paths"].copy(),
                labels=stored["labels"].copy(),
                classes=list(meta["classes"]),
                offsets=stored["offsets"].copy(),
                sizes=stored["sizes"].copy(),
                members=stored["members"].copy(),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def shard_index(root: str | Path, split: str, *, cache_dir: str | Path | None = None) -> FileIndex:
    """The :class:`~mmcr.data.stream.FileIndex` of the samples of ``split``'s shards, cached.

    Entry ``i`` is the byte range of sample ``i``'s image inside its shard
    (:meth:`~mmcr.data.stream.FileIndex.source` reads it); samples are in shard order
    (sorted shard names), then in their order inside the shard.

    Raises:
        FileNotFoundError: no shards for ``split`` (the message names where it looked).
        ValueError: a shard that cannot be read, a sample without an image, a ``.cls``
            member that is not an integer, or a label outside ``classes.json``.
    """
    root = Path(root)
    folder, shards = split_shards(root, split)
    stamp = _stamp(shards, root)
    key = json.dumps([_INDEX_VERSION, str(root.resolve()), split])
    cache = default_cache_dir(cache_dir) / f"shards-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    cached = _read_cache(cache, root, stamp)
    if cached is not None:
        return cached
    paths, members, offsets, sizes, labels = [], [], [], [], []
    for shard in shards:
        name = str(shard.relative_to(root)).encode("utf-8")
        for _key, member, offset, size, label in scan_shard(shard):
            paths.append(name)
            members.append(member.encode("utf-8"))
            offsets.append(offset)
            sizes.append(size)
            labels.append(label)
    if not paths:
        raise FileNotFoundError(f"the shards of {folder} hold no samples; write them with mmcr data pack")
    label_array = np.array(labels, dtype=np.int64)
    classes = _classes(folder, root, label_array)
    if label_array.size and int(label_array.max()) >= len(classes):
        raise ValueError(
            f"the shards of {folder} hold class index {int(label_array.max())}, but classes.json "
            f"names {len(classes)} classes"
        )
    arrays = {
        "paths": np.array(paths, dtype=bytes),
        "labels": label_array,
        "offsets": np.array(offsets, dtype=np.int64),
        "sizes": np.array(sizes, dtype=np.int64),
        "members": np.array(members, dtype=bytes),
    }
    index = FileIndex(
        root=root,
        paths=arrays["paths"],
        labels=label_array,
        classes=classes,
        offsets=arrays["offsets"],
        sizes=arrays["sizes"],
        members=arrays["members"],
    )
    meta = {"version": _INDEX_VERSION, "stamp": stamp, "classes": classes}
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    def write(handle: object) -> None:
        np.savez(handle, meta=blob, **arrays)  # type: ignore[arg-type]

    try:
        write_atomic(cache, write)
    except OSError:
        pass  # a read-only cache directory costs a rescan next time, nothing more
    return index
