"""The file index of an image folder split: paths and labels, built once and cached on disk.

Listing a tree of a million files takes a while, so :func:`folder_index` lists it once and
keeps the result in ``<cache_dir>/index-<key>.npz`` (written to a temporary name and
renamed, so a reader never sees half a file). The cache is trusted only while every
directory it listed keeps its modification time: adding, removing or renaming a file or a
class folder changes its directory's time and the index is rebuilt. Rewriting a file in
place does not; delete the cache file after doing that.

Paths are held as one fixed-width byte array (not a list of Python strings), so DataLoader
workers forked from the main process share its pages instead of copying them. An index
may also name byte ranges inside files (the members of webdataset shards,
:mod:`~mmcr.data.stream.shard_index`): then ``offsets`` and ``sizes`` are set, and
:meth:`FileIndex.source` reads the entry's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcr.data.readers.imagefolder import class_folders, image_files
from mmcr.records import write_atomic

__all__ = [
    "CACHE_DIR_ENV",
    "FileIndex",
    "concat_indices",
    "default_cache_dir",
    "folder_index",
    "write_atomic",
]

#: Environment variable naming the cache directory when the configuration names none.
CACHE_DIR_ENV = "MMCR_CACHE_DIR"

_INDEX_VERSION = 1


@dataclass(frozen=True)
class FileIndex:
    """The images of one split of an image folder, in the in-memory reader's order.

    Attributes:
        root: the tree's root directory.
        paths: fixed-width bytes ``(N,)``: each file's path relative to ``root`` (UTF-8).
        labels: int64 ``(N,)`` class indices.
        classes: class names indexed by label.
        empty: paths (relative) of zero-byte files left out, when asked to skip them.
        offsets: int64 ``(N,)`` byte offsets of the images inside their files, or ``None``
            where each entry is a whole file.
        sizes: int64 ``(N,)`` byte counts of those images (with ``offsets``).
        members: fixed-width bytes ``(N,)``: the images' member names inside their files
            (with ``offsets``), for messages.
    """

    root: Path
    paths: np.ndarray
    labels: np.ndarray
    classes: list[str]
    empty: tuple[str, ...] = ()
    offsets: np.ndarray | None = None
    sizes: np.ndarray | None = None
    members: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.paths.shape[0])

    def path(self, i: int) -> Path:
        """The absolute path of the file holding image ``i``."""
        return self.root / bytes(self.paths[i]).decode("utf-8")

    def source(self, i: int) -> Path | bytes:
        """Image ``i``: its file's path, or (for a byte range inside a file) its bytes."""
        if self.offsets is None or self.sizes is None:
            return self.path(i)
        with open(self.path(i), "rb") as handle:
            handle.seek(int(self.offsets[i]))
            return handle.read(int(self.sizes[i]))

    def name(self, i: int) -> str:
        """Image ``i`` as messages name it: its path, or ``shard.tar:member`` inside a file."""
        if self.members is None:
            return str(self.path(i))
        return f"{self.path(i)}:{bytes(self.members[i]).decode('utf-8')}"


def concat_indices(indices: list[FileIndex]) -> FileIndex:
    """One index of the files of several splits of one tree, in the order given."""
    if len(indices) == 1:
        return indices[0]
    first = indices[0]
    if any(ix.root != first.root or ix.classes != first.classes for ix in indices):
        raise ValueError("cannot join the indices of different trees or class lists")
    ranged = {ix.offsets is not None for ix in indices}
    if len(ranged) > 1:
        raise ValueError("cannot join an index of whole files with one of byte ranges")

    def joined(name: str) -> np.ndarray | None:
        parts = [getattr(ix, name) for ix in indices]
        return None if parts[0] is None else np.concatenate(parts)

    return FileIndex(
        root=first.root,
        paths=np.concatenate([ix.paths for ix in indices]),
        labels=np.concatenate([ix.labels for ix in indices]),
        classes=first.classes,
        empty=tuple(e for ix in indices for e in ix.empty),
        offsets=joined("offsets"),
        sizes=joined("sizes"),
        members=joined("members"),
    )


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$MMCR_CACHE_DIR``, else ``~/.cache/mmcr``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mmcr"


def _dirs_under(class_root: Path, classes: list[str]) -> list[Path]:
    """Every directory whose listing the index depends on."""
    dirs = [class_root.parent, class_root] if class_root.parent != class_root else [class_root]
    for name in classes:
        top = class_root / name
        if top.is_dir():
            dirs.extend(Path(d) for d, _, _ in os.walk(top))
    return list(dict.fromkeys(dirs))


def _mtimes(dirs: list[str], root: Path) -> list[int]:
    out = []
    for d in dirs:
        try:
            out.append(os.stat(root / d).st_mtime_ns)
        except OSError:
            out.append(-1)
    return out


def _build(root: Path, split: str, skip_bad: bool) -> tuple[FileIndex, list[str], list[int]]:
    class_root, classes = class_folders(root, split)
    if not classes:
        raise FileNotFoundError(f"no class folders in {class_root}; expected {class_root}/<class>/*.jpg")
    # the directories' times are read before their listings, so a change made while listing shows
    dirs = [str(d.relative_to(root)) for d in _dirs_under(class_root, classes)]
    mtimes = _mtimes(dirs, root)
    files, labels = image_files(root, class_root, classes, split)
    if not files:
        raise FileNotFoundError(f"no images under {class_root}/<class>/")
    keep, empty = [], []
    for i, f in enumerate(files):
        if f.stat().st_size == 0:
            if not skip_bad:
                raise ValueError(
                    f"image file {f} is empty (0 bytes); delete or replace it, or set "
                    "skip_bad_images = true to leave such files out"
                )
            empty.append(str(f.relative_to(root)))
        else:
            keep.append(i)
    rel = [str(files[i].relative_to(root)).encode("utf-8") for i in keep]
    index = FileIndex(
        root=root,
        paths=np.array(rel, dtype=bytes),
        labels=np.array([labels[i] for i in keep], dtype=np.int64),
        classes=classes,
        empty=tuple(empty),
    )
    return index, dirs, mtimes


def _cache_path(root: Path, split: str, skip_bad: bool, cache_dir: Path) -> Path:
    key = json.dumps([_INDEX_VERSION, str(root.resolve()), split, skip_bad])
    return cache_dir / f"index-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path, root: Path) -> FileIndex | None:
    """The cached index at ``path`` if it exists, is readable and its tree is unchanged."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(bytes(stored["meta"]).decode("utf-8"))
            if meta.get("version") != _INDEX_VERSION:
                return None
            if _mtimes(meta["dirs"], root) != meta["mtimes"]:
                return None
            return FileIndex(
                root=root,
                paths=stored["paths"].copy(),
                labels=stored["labels"].copy(),
                classes=list(meta["classes"]),
                empty=tuple(meta["empty"]),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def folder_index(
    root: str | Path, split: str, *, cache_dir: str | Path | None = None, skip_bad: bool = False
) -> FileIndex:
    """The :class:`FileIndex` of ``root/<split>/<class>/*`` (or ``root/<class>/*``), cached.

    Args:
        root: the tree's root.
        split: the split folder (ignored by the flat layout, as by the in-memory reader).
        cache_dir: where the index is kept (see :func:`default_cache_dir`).
        skip_bad: leave zero-byte files out (listed in :attr:`FileIndex.empty`) instead of
            raising ``ValueError`` naming the first one.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder root {root} does not exist; expected a tree root/<split>/<class>/*.jpg "
            "(or root/<class>/*), passed with --data-dir"
        )
    path = _cache_path(root, split, skip_bad, default_cache_dir(cache_dir))
    cached = _read_cache(path, root)
    if cached is not None:
        return cached
    index, dirs, mtimes = _build(root, split, skip_bad)
    meta = {
        "version": _INDEX_VERSION,
        "dirs": dirs,
        "mtimes": mtimes,
        "classes": index.classes,
        "empty": list(index.empty),
    }
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    def write(handle: object) -> None:
        np.savez(handle, paths=index.paths, labels=index.labels, meta=blob)  # type: ignore[arg-type]

    try:
        write_atomic(path, write)
    except OSError:
        pass  # a read-only cache directory costs a rebuild next time, nothing more
    return index
