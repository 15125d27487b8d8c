"""Image folders: a tree ``root/<split>/<class>/*.png|jpg`` (or ``root/<class>/*``), via Pillow.

Every image is converted to RGB, centre-cropped to a square and resized (bilinear) to
``image_size`` pixels (default 64); classes are the sorted folder names, taken from the
union over all split folders so that a class missing from one split keeps its label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = [
    "DEFAULT_SIZE",
    "IMAGEFOLDER",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDER_NAMES",
    "class_folders",
    "image_files",
    "load_imagefolder",
    "read_image",
]

DEFAULT_SIZE = 64

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)
# Folder names that mark the "root/<split>/<class>" layout of an image folder.
SPLIT_FOLDER_NAMES = frozenset(
    {"train", "val", "valid", "validation", "test", "unlabeled", "unlabelled"}
)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image(path: Path, size: int, channels: int = 3) -> np.ndarray:
    """uint8 ``(channels, size, size)``: the file's centre square, resized (bilinear);
    ``channels`` 3 reads RGB, 1 grayscale."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            converted = img.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    width, height = converted.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = converted.crop((left, top, left + side, top + side))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    pixels = np.asarray(square, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def class_folders(root: Path, split: str) -> tuple[Path, list[str]]:
    """The folder holding the class folders of ``split``, and the class names in label order."""
    split_dir = root / split
    subdirs = _subdirs(root)
    if split_dir.is_dir():
        # Class indices come from the union over all split folders, so that a class
        # missing from one split does not shift the labels of the others.
        split_dirs = [d for d in subdirs if _subdirs(d)]
        return split_dir, sorted({c.name for d in split_dirs for c in _subdirs(d)})
    split_like = [d.name for d in subdirs if d.name.lower() in SPLIT_FOLDER_NAMES]
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
    return root, [d.name for d in subdirs]


def image_files(
    root: Path, class_root: Path, class_names: list[str], split: str
) -> tuple[list[Path], list[int]]:
    """Image files under ``class_root/<class>/`` (sorted, recursively) and their labels."""
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
    return files, labels


def load_imagefolder(request: DatasetRequest) -> ImageDataset:
    """The images of ``data_dir/<split>/<class>/`` (or ``data_dir/<class>/``) of ``request``:
    uint8 ``(N, 3, image_size, image_size)``, labels in the sorted order of the class folders."""
    if request.data_dir is None:
        raise ValueError(
            "the 'imagefolder' reader needs data_dir (--data-dir), the root of a tree "
            "root/<split>/<class>/*.png|jpg"
        )
    root, split = Path(request.data_dir), request.split
    side = request.image_size or DEFAULT_SIZE
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder root {root} does not exist; expected a tree "
            "root/<split>/<class>/*.png|jpg (or root/<class>/*), passed with --data-dir"
        )
    class_root, class_names = class_folders(root, split)
    if not class_names:
        raise FileNotFoundError(
            f"no class folders in {class_root}; expected {class_root}/<class>/*.png|jpg"
        )
    files, labels = image_files(root, class_root, class_names, split)
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {class_root}/<class>/"
        )
    images = np.stack([read_image(p, side) for p in files])
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.tensor(labels, dtype=torch.int64),
        num_classes=len(class_names),
        name=request.info.name,
        classes=class_names,
        sources=(f"{class_root} ({len(files)} image files)",),
    )


IMAGEFOLDER = DatasetInfo(
    "imagefolder",
    3,
    None,
    None,
    ("train", "val", "test", "<any folder name>"),
    "a tree root/<split>/<class>/*.png|jpg (or root/<class>/*)",
    aliases=("image-folder",),
    augment="imagenet",
    loader=load_imagefolder,
)
