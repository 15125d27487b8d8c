"""Image-folder trees written into tmp_path: layouts, centre crop, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from mmcr.data import load_dataset


def save_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int], mode: str = "RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)


def test_imagefolder_split_layout(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "cat" / "a.png", (40, 20), (255, 0, 0))
    save_png(tmp_path / "train" / "cat" / "b.jpg", (20, 20), (0, 255, 0))
    save_png(tmp_path / "train" / "dog" / "c.png", (10, 30), (0, 0, 255), mode="L")
    save_png(tmp_path / "test" / "dog" / "d.png", (16, 16), (9, 9, 9))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    train = load_dataset("imagefolder", "train", tmp_path, image_size=8)
    assert train.images.shape == (3, 3, 8, 8) and train.images.dtype == torch.uint8
    assert train.classes == ["cat", "dog"] and train.labels.tolist() == [0, 0, 1]
    assert train.images[0, :, 4, 4].tolist() == [255, 0, 0]
    # A grayscale file is converted to RGB.
    assert train.images[2, :, 4, 4].tolist() == [0, 0, 0]
    # Labels come from the union of the split folders: "dog" is 1 in test too.
    test = load_dataset("imagefolder", "test", tmp_path, image_size=8)
    assert test.classes == ["cat", "dog"] and test.labels.tolist() == [1]


def test_imagefolder_centre_crop(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (10, 0, 20, 10))  # white centre square of a wide image
    (tmp_path / "only").mkdir()
    image.save(tmp_path / "only" / "wide.png")
    data = load_dataset("imagefolder", "train", tmp_path, image_size=10)
    assert data.classes == ["only"]
    assert bool((data.images[0] == 255).all())


def test_imagefolder_default_size_and_flat_layout(tmp_path: Path) -> None:
    save_png(tmp_path / "a" / "1.png", (70, 70), (1, 2, 3))
    save_png(tmp_path / "b" / "2.png", (64, 64), (4, 5, 6))
    data = load_dataset("imagefolder", "train", tmp_path)
    assert data.images.shape == (2, 3, 64, 64) and data.labels.tolist() == [0, 1]


def test_imagefolder_missing_split_is_an_error(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "cat" / "a.png", (8, 8), (0, 0, 0))
    with pytest.raises(ValueError, match="no 'test' folder"):
        load_dataset("imagefolder", "test", tmp_path, image_size=8)


def test_imagefolder_ambiguous_layout(tmp_path: Path) -> None:
    save_png(tmp_path / "training" / "cat" / "a.png", (8, 8), (0, 0, 0))
    with pytest.raises(ValueError, match="ambiguous"):
        load_dataset("imagefolder", "test", tmp_path, image_size=8)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("imagefolder", "train", tmp_path / "nothing")
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("imagefolder", "train")
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        load_dataset("imagefolder", "train", tmp_path / "empty")
    bad = tmp_path / "bad" / "train" / "cat" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_dataset("imagefolder", "train", tmp_path / "bad")
