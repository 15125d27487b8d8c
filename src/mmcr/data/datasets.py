"""Dataset readers: each loads a whole split into memory as a uint8 image tensor.

One reader per on-disk format, all behind :func:`load_dataset`:

========================  ====================================================================
name                      format
========================  ====================================================================
``"fashion-mnist"``       idx files (gzipped or not), e.g. from Debian's ``dataset-fashion-mnist``
``"digits"``              scikit-learn's ``load_digits`` (always present; the data for fast tests)
``"cifar10"``             the python pickle folder ``cifar-10-batches-py``
``"cifar100"``            the python pickle folder ``cifar-100-python`` (fine labels)
``"stl10"``               the binary folder ``stl10_binary``
``"imagefolder"``         a tree ``root/<split>/<class>/*.png`` (or ``root/<class>/*``)
``"synthetic"``           random class-structured images for smoke tests
========================  ====================================================================

Nothing is ever downloaded. Missing or corrupt data raise ``FileNotFoundError`` or
``ValueError`` with a message naming the files looked for, the directories searched, and
how to get the data.

>>> from mmcr.data import load_dataset, train_val_split
>>> train = load_dataset("digits", "train")
>>> train.images.shape, train.images.dtype        # (N, C, H, W) uint8
(torch.Size([1497, 1, 8, 8]), torch.uint8)
>>> train_idx, val_idx = train_val_split(train.labels, val_fraction=0.1, seed=0)
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DatasetInfo",
    "ImageDataset",
    "dataset_info",
    "load_dataset",
    "read_idx",
    "synthetic_dataset",
    "train_val_split",
]

#: Environment variable naming a directory to search for data sets.
DATA_DIR_ENV = "MMCR_DATA_DIR"

_FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)
# Folder names that mark the "root/<split>/<class>" layout of an image folder.
_SPLIT_FOLDER_NAMES = frozenset(
    {"train", "val", "valid", "validation", "test", "unlabeled", "unlabelled"}
)


# --------------------------------------------------------------------------------------
# The data set container and the registry
# --------------------------------------------------------------------------------------


@dataclass
class ImageDataset:
    """A whole split held in memory.

    Attributes:
        images: uint8 tensor of shape ``(N, C, H, W)``, pixel values 0-255.
        labels: int64 tensor of shape ``(N,)``, class indices in ``[0, num_classes)``;
            ``-1`` marks an unlabeled image.
        num_classes: number of classes of the data set (not only those present here).
        name: the data set's name, e.g. ``"cifar10"``.
        classes: class names indexed by label, or ``None`` where unknown.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                "ImageDataset.images must be a uint8 tensor of shape (N, C, H, W), got "
                f"dtype {self.images.dtype} and shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(
                "ImageDataset.labels must be an int64 tensor of shape (N,), got "
                f"dtype {self.labels.dtype} and shape {tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"ImageDataset has {self.images.shape[0]} images but "
                f"{self.labels.shape[0]} labels; they must match"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of colour channels C (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width ``(H, W)`` in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """Return a new data set holding the images at ``indices`` (a 1-D index tensor or list)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1:
            raise ValueError(
                f"subset expects a 1-D tensor of indices, got shape {tuple(index.shape)}"
            )
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            num_classes=self.num_classes,
            name=self.name,
            classes=None if self.classes is None else list(self.classes),
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What other code needs to know about a data set before loading it.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        channels: colour channels C of the loaded images.
        image_size: native side length in pixels (``None`` where it depends on the files,
            e.g. an image folder, which is resized to ``image_size``, default 64).
        num_classes: number of classes (``None`` where it depends on the files).
        splits: split names accepted by :func:`load_dataset`.
        source: where the data comes from, for error messages and docs.
    """

    name: str
    channels: int
    image_size: int | None
    num_classes: int | None
    splits: tuple[str, ...]
    source: str = ""
    folder_names: tuple[str, ...] = field(default=(), repr=False)


_FASHION_MNIST_HOWTO = (
    "Install them with `sudo apt-get install dataset-fashion-mnist` (which puts them in "
    f"{_FASHION_MNIST_SYSTEM_DIR}), or download the four idx files from "
    "https://github.com/zalandoresearch/fashion-mnist and pass their directory with "
    f"--data-dir (data_dir=...) or the {DATA_DIR_ENV} environment variable."
)
_CIFAR_HOWTO = (
    "Download the python version ({archive}) from https://www.cs.toronto.edu/~kriz/cifar.html, "
    "extract it, and pass the directory that holds the extracted folder with --data-dir "
    f"(data_dir=...) or the {DATA_DIR_ENV} environment variable."
)
_STL10_HOWTO = (
    "Download the binary version (stl10_binary.tar.gz) from "
    "https://cs.stanford.edu/~acoates/stl10/, extract it, and pass the directory that holds "
    f"stl10_binary with --data-dir (data_dir=...) or the {DATA_DIR_ENV} environment variable."
)

#: Registry of the data sets :func:`load_dataset` can read.
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        1,
        28,
        10,
        ("train", "test"),
        "idx files (Zalando Research)",
        ("fashion-mnist", "FashionMNIST/raw"),
    ),
    "digits": DatasetInfo(
        "digits", 1, 8, 10, ("train", "test"), "scikit-learn load_digits (1797 8x8 digits)"
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        3,
        32,
        10,
        ("train", "test"),
        "python pickles cifar-10-batches-py",
        ("cifar-10-batches-py",),
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        3,
        32,
        100,
        ("train", "test"),
        "python pickles cifar-100-python",
        ("cifar-100-python",),
    ),
    "stl10": DatasetInfo(
        "stl10",
        3,
        96,
        10,
        ("train", "test", "unlabeled", "train+unlabeled"),
        "binary folder stl10_binary",
        ("stl10_binary",),
    ),
    "imagefolder": DatasetInfo(
        "imagefolder",
        3,
        None,
        None,
        ("train", "val", "test", "<any folder name>"),
        "a tree root/<split>/<class>/*.png|jpg (or root/<class>/*)",
    ),
    "synthetic": DatasetInfo(
        "synthetic", 3, 32, 10, ("train", "test"), "random class-structured uint8 images"
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Return the registry entry (channels, native image size, num_classes, splits) of ``name``."""
    key = _canonical_name(name)
    return DATASETS[key]


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    aliases = {
        "fashionmnist": "fashion-mnist",
        "fmnist": "fashion-mnist",
        "cifar-10": "cifar10",
        "cifar-100": "cifar100",
        "stl-10": "stl10",
        "image-folder": "imagefolder",
    }
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return key


def _check_split(name: str, split: str, allowed: Sequence[str]) -> None:
    if split not in allowed:
        raise ValueError(f"data set {name!r} has splits {list(allowed)}, got split {split!r}")


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    image_size: int | None = None,
) -> ImageDataset:
    """Load a whole split of a data set into memory.

    Args:
        name: one of :data:`DATASETS` (``"fashion-mnist"``, ``"digits"``, ``"cifar10"``,
            ``"cifar100"``, ``"stl10"``, ``"imagefolder"``, ``"synthetic"``).
        split: ``"train"`` or ``"test"``; STL-10 also has ``"unlabeled"`` and
            ``"train+unlabeled"``; an image folder accepts any sub-folder name.
        data_dir: directory to search first. Then the ``MMCR_DATA_DIR`` environment
            variable is searched, and for Fashion-MNIST finally
            ``/usr/share/datasets/fashion-mnist``. Each directory is also searched for the
            data set's standard sub-folder (e.g. ``cifar-10-batches-py``). For
            ``"imagefolder"`` it is the root of the tree and is required.
        image_size: side length in pixels to resize to. Required for ``"imagefolder"``
            (default 64: centre crop of the short side, then resize); for the other
            readers ``None`` keeps the native size and a different value resizes
            (bilinear, antialiased).

    Returns:
        An :class:`ImageDataset`: uint8 images ``(N, C, H, W)``, int64 labels ``(N,)``
        (``-1`` for unlabeled images).

    Raises:
        FileNotFoundError: the files are not in any searched directory (the message lists
            the files, the directories and how to get the data).
        ValueError: unknown name or split, or files that are corrupt.
    """
    key = _canonical_name(name)
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")

    if key == "imagefolder":
        if data_dir is None:
            raise ValueError(
                "the 'imagefolder' reader needs data_dir (--data-dir), the root of a tree "
                "root/<split>/<class>/*.png|jpg"
            )
        return _load_imagefolder(Path(data_dir), split, image_size or 64)

    if key == "fashion-mnist":
        dataset = _load_fashion_mnist(split, data_dir)
    elif key == "digits":
        dataset = _load_digits(split)
    elif key in ("cifar10", "cifar100"):
        dataset = _load_cifar(key, split, data_dir)
    elif key == "stl10":
        dataset = _load_stl10(split, data_dir)
    else:  # synthetic
        _check_split(key, split, DATASETS[key].splits)
        info = DATASETS[key]
        dataset = synthetic_dataset(
            n=2000 if split == "train" else 500,
            channels=info.channels,
            size=image_size or int(info.image_size or 32),
            num_classes=int(info.num_classes or 10),
            seed=0,
            stream=0 if split == "train" else 1,
        )

    if image_size is not None and dataset.image_size != (image_size, image_size):
        dataset.images = _resize_uint8(dataset.images, image_size)
    return dataset


def _search_dirs(data_dir: str | Path | None, info: DatasetInfo) -> list[Path]:
    """Directories to search, in order, each followed by its standard sub-folders."""
    bases: list[Path] = []
    if data_dir is not None:
        bases.append(Path(data_dir).expanduser())
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        bases.append(Path(env).expanduser())
    dirs: list[Path] = []
    for base in bases:
        dirs.append(base)
        dirs.extend(base / sub for sub in info.folder_names)
    if info.name == "fashion-mnist":
        dirs.append(_FASHION_MNIST_SYSTEM_DIR)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _format_dirs(dirs: Sequence[Path]) -> str:
    if not dirs:
        return "(no directory: neither data_dir nor the MMCR_DATA_DIR environment variable is set)"
    return ", ".join(str(d) for d in dirs)


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 ``(N, C, H, W)`` images to ``(N, C, size, size)`` (bilinear, antialiased)."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        resized = F.interpolate(
            block, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------
# idx files (Fashion-MNIST, MNIST)
# --------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise ValueError(
                f"{path} is not a readable gzip file ({err}); it may be truncated"
            ) from err
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (gzipped or plain) into a numpy array.

    The idx format: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
    big-endian uint32 per dimension, then the data in C order.

    Raises:
        ValueError: the header is malformed or the data length does not match the dims.
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4:
        raise ValueError(f"{path} is too short ({len(raw)} bytes) to be an idx file")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an idx file: expected the magic number to start with two zero "
            f"bytes, got {raw[:4].hex()}"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(
            f"{path} has an unknown idx type code 0x{type_code:02x}; expected one of "
            f"{[hex(c) for c in _IDX_DTYPES]}"
        )
    if ndim < 1:
        raise ValueError(f"{path} declares {ndim} dimensions; an idx file needs at least one")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated inside its header ({len(raw)} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} has {len(raw) - header} data bytes but its header declares dims {dims} "
            f"of {dtype} ({expected} bytes); the file is truncated or corrupt"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(split: str, data_dir: str | Path | None) -> ImageDataset:
    info = DATASETS["fashion-mnist"]
    _check_split(info.name, split, info.splits)
    prefix = "train" if split == "train" else "t10k"
    image_stem, label_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    dirs = _search_dirs(data_dir, info)
    for directory in dirs:
        image_path = _find_idx(directory, image_stem)
        label_path = _find_idx(directory, label_stem)
        if image_path is None or label_path is None:
            continue
        images = read_idx(image_path)
        labels = read_idx(label_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"{image_path} should hold uint8 images of shape (N, H, W), got dtype "
                f"{images.dtype} and shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{label_path} should hold uint8 labels of shape (N,), got dtype "
                f"{labels.dtype} and shape {labels.shape}"
            )
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{image_path} holds {images.shape[0]} images but {label_path} holds "
                f"{labels.shape[0]} labels"
            )
        if labels.size and int(labels.max()) >= 10:
            raise ValueError(
                f"{label_path} holds label {int(labels.max())}; Fashion-MNIST labels are 0-9"
            )
        return ImageDataset(
            images=torch.from_numpy(images).unsqueeze(1).contiguous(),
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=10,
            name=info.name,
            classes=list(_FASHION_MNIST_CLASSES),
        )
    raise FileNotFoundError(
        f"Fashion-MNIST {split} split not found: looked for {image_stem}(.gz) and "
        f"{label_stem}(.gz) in {_format_dirs(dirs)}. {_FASHION_MNIST_HOWTO}"
    )


# --------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------

_DIGITS_TEST_SIZE = 300
_DIGITS_SPLIT_SEED = 0


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits

    info = DATASETS["digits"]
    _check_split(info.name, split, info.splits)
    bunch = load_digits()
    # Values are counts 0-16 of set pixels in 4x4 blocks: map 16 -> 255.
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = torch.from_numpy(pixels.astype(np.uint8)).unsqueeze(1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    generator = torch.Generator().manual_seed(_DIGITS_SPLIT_SEED)
    train_idx, test_idx = _stratified_split(labels, _DIGITS_TEST_SIZE, generator)
    index = train_idx if split == "train" else test_idx
    return ImageDataset(
        images=images[index],
        labels=labels[index],
        num_classes=10,
        name=info.name,
        classes=[str(d) for d in range(10)],
    )


# --------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 python pickles
# --------------------------------------------------------------------------------------


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


def _load_pickle(path: Path) -> dict[Any, Any]:
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


def _load_cifar(key: str, split: str, data_dir: str | Path | None) -> ImageDataset:
    info = DATASETS[key]
    _check_split(key, split, info.splits)
    if key == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_name, names_key, labels_key = "batches.meta", "label_names", "labels"
        archive = "cifar-10-python.tar.gz"
    else:
        files = [split]
        meta_name, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
        archive = "cifar-100-python.tar.gz"
    dirs = _search_dirs(data_dir, info)
    for directory in dirs:
        if not all((directory / f).is_file() for f in files):
            continue
        images, labels = [], []
        for f in files:
            path = directory / f
            batch = _load_pickle(path)
            data = np.asarray(_get(batch, "data", path))
            batch_labels = np.asarray(_get(batch, labels_key, path), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"{path}: 'data' should be a uint8 array of shape (N, 3072), got dtype "
                    f"{data.dtype} and shape {data.shape}"
                )
            if batch_labels.shape != (data.shape[0],):
                raise ValueError(
                    f"{path}: {data.shape[0]} images but labels of shape {batch_labels.shape}"
                )
            if batch_labels.size and (
                batch_labels.min() < 0 or batch_labels.max() >= int(info.num_classes or 0)
            ):
                raise ValueError(
                    f"{path}: labels must lie in [0, {info.num_classes}), got "
                    f"[{batch_labels.min()}, {batch_labels.max()}]"
                )
            # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major.
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        classes: list[str] | None = None
        meta_path = directory / meta_name
        if meta_path.is_file():
            classes = _decode_names(_get(_load_pickle(meta_path), names_key, meta_path))
        return ImageDataset(
            images=torch.from_numpy(np.concatenate(images)),
            labels=torch.from_numpy(np.concatenate(labels)),
            num_classes=int(info.num_classes or 0),
            name=key,
            classes=classes,
        )
    raise FileNotFoundError(
        f"{key} {split} split not found: looked for {', '.join(files)} in "
        f"{_format_dirs(dirs)}. {_CIFAR_HOWTO.format(archive=archive)}"
    )


# --------------------------------------------------------------------------------------
# STL-10 binaries
# --------------------------------------------------------------------------------------

_STL10_SIZE = 96


def _read_stl10_images(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    per_image = 3 * _STL10_SIZE * _STL10_SIZE
    if raw.size % per_image != 0:
        raise ValueError(
            f"{path} has {raw.size} bytes, not a multiple of 3*96*96 = {per_image}; "
            "the file is truncated or not an STL-10 image file"
        )
    # Each image is stored channel by channel, each channel column-major.
    return np.ascontiguousarray(raw.reshape(-1, 3, _STL10_SIZE, _STL10_SIZE).transpose(0, 1, 3, 2))


def _load_stl10(split: str, data_dir: str | Path | None) -> ImageDataset:
    info = DATASETS["stl10"]
    _check_split(info.name, split, info.splits)
    parts = split.split("+")
    needed: list[str] = []
    for part in parts:
        needed.append(f"{part}_X.bin")
        if part != "unlabeled":
            needed.append(f"{part}_y.bin")
    dirs = _search_dirs(data_dir, info)
    for directory in dirs:
        if not all((directory / f).is_file() for f in needed):
            continue
        images, labels = [], []
        for part in parts:
            x = _read_stl10_images(directory / f"{part}_X.bin")
            if part == "unlabeled":
                y = np.full(x.shape[0], -1, dtype=np.int64)
            else:
                label_path = directory / f"{part}_y.bin"
                y = np.fromfile(label_path, dtype=np.uint8).astype(np.int64)
                if y.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"{label_path} holds {y.shape[0]} labels but {part}_X.bin holds "
                        f"{x.shape[0]} images"
                    )
                if y.size and (y.min() < 1 or y.max() > 10):
                    raise ValueError(
                        f"{label_path}: STL-10 labels are 1-10, got [{y.min()}, {y.max()}]"
                    )
                y = y - 1
            images.append(x)
            labels.append(y)
        classes: list[str] | None = None
        names_path = directory / "class_names.txt"
        if names_path.is_file():
            classes = [ln.strip() for ln in names_path.read_text().splitlines() if ln.strip()]
        return ImageDataset(
            images=torch.from_numpy(np.concatenate(images)),
            labels=torch.from_numpy(np.concatenate(labels)),
            num_classes=10,
            name=info.name,
            classes=classes,
        )
    raise FileNotFoundError(
        f"STL-10 {split} split not found: looked for {', '.join(needed)} in "
        f"{_format_dirs(dirs)}. {_STL10_HOWTO}"
    )


# --------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _IMAGE_EXTENSIONS


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)


def _load_imagefolder(root: Path, split: str, image_size: int) -> ImageDataset:
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder root {root} does not exist; expected a tree "
            "root/<split>/<class>/*.png|jpg (or root/<class>/*), passed with --data-dir"
        )
    split_dir = root / split
    subdirs = _subdirs(root)
    if split_dir.is_dir():
        class_root = split_dir
        # Class indices come from the union over all split folders, so that a class
        # missing from one split does not shift the labels of the others.
        split_dirs = [d for d in subdirs if _subdirs(d)]
        class_names = sorted({c.name for d in split_dirs for c in _subdirs(d)})
    else:
        split_like = [d.name for d in subdirs if d.name.lower() in _SPLIT_FOLDER_NAMES]
        if split_like:
            raise ValueError(
                f"image folder {root} has split folders {split_like} but no {split!r} folder; "
                f"expected {root / split}/<class>/*. Pick one of the existing splits"
            )
        if any(_is_image(p) for p in root.iterdir()):
            raise ValueError(
                f"image folder {root} holds images directly; expected class sub-folders "
                f"root/<split>/<class>/* or root/<class>/*"
            )
        class_root = root
        class_names = [d.name for d in subdirs]
    if not class_names:
        raise FileNotFoundError(
            f"no class folders in {class_root}; expected {class_root}/<class>/*.png|jpg"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, class_name in enumerate(class_names):
        class_dir = class_root / class_name
        if not class_dir.is_dir():
            continue
        nested = _subdirs(class_dir)
        class_files = sorted(p for p in class_dir.rglob("*") if _is_image(p))
        if nested and class_root == root and not any(_is_image(p) for p in class_dir.iterdir()):
            raise ValueError(
                f"image folder {root} is ambiguous: {class_dir} holds only sub-folders "
                f"({[d.name for d in nested][:5]}), so it looks like a split folder, but "
                f"split {split!r} is not among them. Pass the split that exists or point "
                "--data-dir at the right level"
            )
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(_IMAGE_EXTENSIONS))}) under {class_root}/<class>/"
        )
    images = np.stack([_load_image(p, image_size) for p in files])
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.tensor(labels, dtype=torch.int64),
        num_classes=len(class_names),
        name="imagefolder",
        classes=class_names,
    )


# --------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------


def synthetic_dataset(
    n: int = 1000,
    channels: int = 3,
    size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
    *,
    stream: int = 0,
) -> ImageDataset:
    """Random uint8 images with class structure, for smoke tests.

    Each class has a smooth random prototype (a 4x4 pattern upsampled to ``size``); an
    image is its class prototype plus per-pixel noise, so a model can learn something.

    Args:
        n: number of images.
        channels: colour channels C.
        size: side length in pixels.
        num_classes: number of classes; labels are balanced (``i % num_classes``), shuffled.
        seed: seeds the class prototypes (shared by all streams of the same seed).
        stream: selects an independent sample of images from the same prototypes (the
            ``"train"`` split uses 0, ``"test"`` 1).

    Returns:
        An :class:`ImageDataset` of ``n`` images of shape ``(channels, size, size)``.
    """
    if n < 0 or channels < 1 or size < 1 or num_classes < 1:
        raise ValueError(
            "synthetic_dataset expects n >= 0 and channels, size, num_classes >= 1, got "
            f"n={n}, channels={channels}, size={size}, num_classes={num_classes}"
        )
    proto_gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand((num_classes, channels, 4, 4), generator=proto_gen)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    sample_gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * (stream + 1))
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    labels = labels[torch.randperm(n, generator=sample_gen)]
    noise = 0.15 * torch.randn((n, channels, size, size), generator=sample_gen)
    images = (prototypes[labels] + noise).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=num_classes,
        name="synthetic",
        classes=[f"class_{c}" for c in range(num_classes)],
    )


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------


def _stratified_split(
    labels: torch.Tensor, n_holdout: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so that ``n_holdout`` are held out, each class in proportion.

    Per-class hold-out counts use largest remainders, so they sum to exactly ``n_holdout``
    and each is within one of ``n_holdout * n_class / N``. Returns sorted index tensors.
    """
    labels = labels.detach().to("cpu", torch.int64)
    n = labels.shape[0]
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = counts.double() * n_holdout / max(n, 1)
    base = quotas.floor().long()
    remainder = n_holdout - int(base.sum())
    if remainder > 0:
        # Largest fractional parts first; ties go to the earlier class (stable sort).
        order = torch.sort(quotas - base.double(), descending=True, stable=True).indices
        base[order[:remainder]] += 1
    keep, holdout = [], []
    for cls, k in zip(classes.tolist(), base.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        shuffled = members[torch.randperm(members.numel(), generator=generator)]
        holdout.append(shuffled[:k])
        keep.append(shuffled[k:])
    empty = torch.empty(0, dtype=torch.int64)
    keep_idx = torch.sort(torch.cat(keep) if keep else empty).values
    holdout_idx = torch.sort(torch.cat(holdout) if holdout else empty).values
    return keep_idx, holdout_idx


def train_val_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out a stratified validation set from a training split, for model selection.

    The test split is for final numbers only; choose checkpoints and hyper-parameters on
    the validation indices returned here.

    Args:
        labels: int tensor of shape ``(N,)`` (``-1`` = unlabeled, treated as one stratum).
        val_fraction: fraction in ``[0, 1)`` to hold out; ``round(val_fraction * N)``
            indices are held out, each class in proportion (largest remainders).
        seed: seeds the shuffle; the same labels and seed give the same split.

    Returns:
        ``(train_indices, val_indices)``: sorted int64 tensors, disjoint, together
        ``arange(N)``.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of shape (N,), got {shape}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    n_val = round(float(val_fraction) * labels.shape[0])
    generator = torch.Generator().manual_seed(int(seed))
    return _stratified_split(labels, n_val, generator)
