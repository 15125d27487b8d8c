"""idx files (the MNIST family's format) and the Fashion-MNIST reader.

Fashion-MNIST: 60,000 train and 10,000 test uint8 images of 1 x 28 x 28 pixels, 10
classes, as four idx files (gzipped or not), e.g. from Debian's ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.readers.search import DATA_DIR_ENV, format_dirs, search_dirs
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["FASHION_MNIST", "load_fashion_mnist", "read_idx"]

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

_FASHION_MNIST_HOWTO = (
    "Install them with `sudo apt-get install dataset-fashion-mnist` (which puts them in "
    f"{_FASHION_MNIST_SYSTEM_DIR}), or download the four idx files from "
    "https://github.com/zalandoresearch/fashion-mnist and pass their directory with "
    f"--data-dir (data_dir=...) or the {DATA_DIR_ENV} environment variable."
)

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


def _check_fashion_arrays(
    images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
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


def load_fashion_mnist(request: DatasetRequest) -> ImageDataset:
    """Fashion-MNIST ``"train"`` or ``"test"``: uint8 ``(N, 1, 28, 28)``, labels 0-9."""
    prefix = "train" if request.split == "train" else "t10k"
    image_stem, label_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    dirs = search_dirs(request.data_dir, request.info, (_FASHION_MNIST_SYSTEM_DIR,))
    for directory in dirs:
        image_path = _find_idx(directory, image_stem)
        label_path = _find_idx(directory, label_stem)
        if image_path is None or label_path is None:
            continue
        images = read_idx(image_path)
        labels = read_idx(label_path)
        _check_fashion_arrays(images, labels, image_path, label_path)
        return ImageDataset(
            images=torch.from_numpy(images).unsqueeze(1).contiguous(),
            labels=torch.from_numpy(labels.astype(np.int64)),
            num_classes=10,
            name=request.info.name,
            classes=list(_FASHION_MNIST_CLASSES),
            sources=(str(image_path), str(label_path)),
        )
    raise FileNotFoundError(
        f"Fashion-MNIST {request.split} split not found: looked for {image_stem}(.gz) and "
        f"{label_stem}(.gz) in {format_dirs(dirs)}. {_FASHION_MNIST_HOWTO}"
    )


FASHION_MNIST = DatasetInfo(
    "fashion-mnist",
    1,
    28,
    10,
    ("train", "test"),
    "idx files (Zalando Research)",
    ("fashion-mnist", "FashionMNIST/raw"),
    aliases=("fashionmnist", "fmnist"),
    augment="fashion-mnist",
    loader=load_fashion_mnist,
    class_names=tuple(_FASHION_MNIST_CLASSES),
)
