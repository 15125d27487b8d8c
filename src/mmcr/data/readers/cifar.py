"""CIFAR-10 and CIFAR-100 from their python pickles, read by an unpickler that runs no code.

Both: uint8 images of 3 x 32 x 32 pixels, 50,000 train and 10,000 test; CIFAR-10 in the
folder ``cifar-10-batches-py`` (10 classes), CIFAR-100 in ``cifar-100-python`` (the 100
fine labels).
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.readers.search import DATA_DIR_ENV, format_dirs, search_dirs
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["CIFAR10", "CIFAR100", "load_cifar", "load_pickle"]

_CIFAR_HOWTO = (
    "Download the python version ({archive}) from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it, and pass the directory that holds the extracted folder with --data-dir "
    f"(data_dir=...) or the {DATA_DIR_ENV} environment variable."
)


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python-3 protocol-2 pickles of numpy arrays store raw bytes as latin-1 text.
    if encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(obj, "latin-1", errors)


def _allowed_pickle_globals() -> dict[tuple[str, str], Callable[..., Any] | type]:
    # The functions numpy itself names in its pickles (whatever their module is called).
    reconstruct = cast(tuple[Any, ...], np.zeros(1).__reduce__())[0]
    scalar = cast(tuple[Any, ...], np.float64(0.0).__reduce__())[0]
    frombuffer = cast(tuple[Any, ...], np.zeros(1).__reduce_ex__(5))[0]
    allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays, dtypes and scalars.

    The CIFAR pickles hold dicts of numpy arrays, lists and bytes; any other global (a
    function or class that could run code) is refused.
    """

    _allowed = _allowed_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed"
            ) from None


def load_pickle(path: Path) -> dict[Any, Any]:
    """The dict in a CIFAR python pickle, unpickled without running any code from it."""
    try:
        with path.open("rb") as handle:
            obj = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as err:  # any failure to unpickle means a corrupt or foreign file
        raise ValueError(
            f"{path} is not a valid CIFAR python pickle ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} should hold a dict, got {type(obj).__name__}")
    return obj


def _get(d: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(
        f"{path} has no {key!r} entry (keys: {sorted(str(k) for k in d)}); is it a CIFAR file?"
    )


def _decode_names(names: Sequence[Any]) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_batch(path: Path, labels_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` of one pickle file."""
    batch = load_pickle(path)
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, labels_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' should be a uint8 array of shape (N, 3072), got dtype "
            f"{data.dtype} and shape {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path}: labels must lie in [0, {num_classes}), got "
            f"[{labels.min()}, {labels.max()}]"
        )
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major.
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(request: DatasetRequest) -> ImageDataset:
    """CIFAR-10 or CIFAR-100 (by ``request.info.name``) ``"train"`` or ``"test"``: uint8
    ``(N, 3, 32, 32)``."""
    info, split = request.info, request.split
    if info.name == CIFAR10.name:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_name, names_key, labels_key = "batches.meta", "label_names", "labels"
        archive = "cifar-10-python.tar.gz"
    else:
        files = [split]
        meta_name, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
        archive = "cifar-100-python.tar.gz"
    num_classes = int(info.num_classes or 0)
    dirs = search_dirs(request.data_dir, info)
    for directory in dirs:
        if not all((directory / f).is_file() for f in files):
            continue
        batches = [_read_batch(directory / f, labels_key, num_classes) for f in files]
        classes: list[str] | None = None
        meta_path = directory / meta_name
        if meta_path.is_file():
            classes = _decode_names(_get(load_pickle(meta_path), names_key, meta_path))
        return ImageDataset(
            images=torch.from_numpy(np.concatenate([images for images, _ in batches])),
            labels=torch.from_numpy(np.concatenate([labels for _, labels in batches])),
            num_classes=num_classes,
            name=info.name,
            classes=classes,
            sources=tuple(str(directory / f) for f in files),
        )
    raise FileNotFoundError(
        f"{info.name} {split} split not found: looked for {', '.join(files)} in "
        f"{format_dirs(dirs)}. {_CIFAR_HOWTO.format(archive=archive)}"
    )


CIFAR10 = DatasetInfo(
    "cifar10",
    3,
    32,
    10,
    ("train", "test"),
    "python pickles cifar-10-batches-py",
    ("cifar-10-batches-py",),
    aliases=("cifar-10",),
    augment="cifar10",
    loader=load_cifar,
)

CIFAR100 = DatasetInfo(
    "cifar100",
    3,
    32,
    100,
    ("train", "test"),
    "python pickles cifar-100-python",
    ("cifar-100-python",),
    aliases=("cifar-100",),
    augment="cifar100",
    loader=load_cifar,
)
