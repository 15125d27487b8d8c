"""STL-10 from its binary folder ``stl10_binary``: uint8 images of 3 x 96 x 96 pixels.

Splits: ``"train"`` (5,000 labelled), ``"test"`` (8,000), ``"unlabeled"`` (100,000, label
-1) and ``"train+unlabeled"``; 10 classes, stored 1-10 and loaded as 0-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.readers.search import DATA_DIR_ENV, format_dirs, search_dirs
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["STL10", "load_stl10"]

_STL10_SIZE = 96

_STL10_HOWTO = (
    "Download the binary version (stl10_binary.tar.gz) from "
    "https://cs.stanford.edu/~acoates/stl10/, extract it, and pass the directory that holds "
    f"stl10_binary with --data-dir (data_dir=...) or the {DATA_DIR_ENV} environment variable."
)


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


def _read_stl10_labels(directory: Path, part: str, num_images: int) -> np.ndarray:
    """Labels 0-9 (int64) of ``part``; ``-1`` for every image of the unlabelled part."""
    if part == "unlabeled":
        return np.full(num_images, -1, dtype=np.int64)
    label_path = directory / f"{part}_y.bin"
    y = np.fromfile(label_path, dtype=np.uint8).astype(np.int64)
    if y.shape[0] != num_images:
        raise ValueError(
            f"{label_path} holds {y.shape[0]} labels but {part}_X.bin holds "
            f"{num_images} images"
        )
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{label_path}: STL-10 labels are 1-10, got [{y.min()}, {y.max()}]")
    return y - 1


def load_stl10(request: DatasetRequest) -> ImageDataset:
    """STL-10 ``split`` (parts joined by ``+``): uint8 ``(N, 3, 96, 96)``, labels 0-9 or -1."""
    parts = request.split.split("+")
    needed: list[str] = []
    for part in parts:
        needed.append(f"{part}_X.bin")
        if part != "unlabeled":
            needed.append(f"{part}_y.bin")
    dirs = search_dirs(request.data_dir, request.info)
    for directory in dirs:
        if not all((directory / f).is_file() for f in needed):
            continue
        images, labels = [], []
        for part in parts:
            x = _read_stl10_images(directory / f"{part}_X.bin")
            images.append(x)
            labels.append(_read_stl10_labels(directory, part, x.shape[0]))
        classes: list[str] | None = None
        names_path = directory / "class_names.txt"
        if names_path.is_file():
            classes = [ln.strip() for ln in names_path.read_text().splitlines() if ln.strip()]
        return ImageDataset(
            images=torch.from_numpy(np.concatenate(images)),
            labels=torch.from_numpy(np.concatenate(labels)),
            num_classes=10,
            name=request.info.name,
            classes=classes,
            sources=tuple(str(directory / f) for f in needed),
        )
    raise FileNotFoundError(
        f"STL-10 {request.split} split not found: looked for {', '.join(needed)} in "
        f"{format_dirs(dirs)}. {_STL10_HOWTO}"
    )


STL10 = DatasetInfo(
    "stl10",
    3,
    96,
    10,
    ("train", "test", "unlabeled", "train+unlabeled"),
    "binary folder stl10_binary",
    ("stl10_binary",),
    aliases=("stl-10",),
    augment="stl10",
    loader=load_stl10,
)
