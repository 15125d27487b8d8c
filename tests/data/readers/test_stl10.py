"""STL-10 binaries written by hand into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmcr.data import load_dataset


def write_stl_images(path: Path, images: np.ndarray) -> None:
    # The binary format stores each channel column-major.
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def write_stl10(root: Path) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 3), ("test", 2), ("unlabeled", 4)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        write_stl_images(folder / f"{split}_X.bin", images)
        out[split] = images
        if split != "unlabeled":
            labels = rng.integers(1, 11, n).astype(np.uint8)
            (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
            out[split + "_labels"] = labels
    (folder / "class_names.txt").write_text(
        "\n".join(
            ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
        )
        + "\n"
    )
    return out


def test_stl10_reader(tmp_path: Path) -> None:
    written = write_stl10(tmp_path)
    train = load_dataset("stl10", "train", tmp_path)
    assert train.images.shape == (3, 3, 96, 96) and train.images.dtype == torch.uint8
    np.testing.assert_array_equal(train.images.numpy(), written["train"])
    np.testing.assert_array_equal(train.labels.numpy(), written["train_labels"].astype(int) - 1)
    assert train.classes is not None and train.classes[7] == "monkey"
    unlabeled = load_dataset("stl10", "unlabeled", tmp_path)
    assert unlabeled.labels.tolist() == [-1] * 4
    both = load_dataset("stl10", "train+unlabeled", tmp_path)
    assert len(both) == 7 and both.labels[3:].tolist() == [-1] * 4
    assert both.sources == tuple(
        str(tmp_path / "stl10_binary" / f) for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")
    )
    np.testing.assert_array_equal(both.images[3:].numpy(), written["unlabeled"])
    resized = load_dataset("stl10", "test", tmp_path, image_size=64)
    assert resized.images.shape == (2, 3, 64, 64)


def test_stl10_column_major_orientation(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    image = np.zeros((1, 3, 96, 96), dtype=np.uint8)
    image[0, 0, 0, :] = 255  # top row red
    write_stl_images(folder / "test_X.bin", image)
    (folder / "test_y.bin").write_bytes(bytes([3]))
    data = load_dataset("stl10", "test", folder)
    assert bool((data.images[0, 0, 0] == 255).all()) and int(data.images[0, 0, 1:].sum()) == 0
    assert data.labels.tolist() == [2]


def test_stl10_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "test_X.bin").write_bytes(b"\x00" * 1000)
    (folder / "test_y.bin").write_bytes(b"\x01")
    with pytest.raises(ValueError, match="not a multiple"):
        load_dataset("stl10", "test", tmp_path)


def test_stl10_bad_labels(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    write_stl_images(folder / "test_X.bin", np.zeros((1, 3, 96, 96), np.uint8))
    (folder / "test_y.bin").write_bytes(bytes([0]))
    with pytest.raises(ValueError, match="labels are 1-10"):
        load_dataset("stl10", "test", tmp_path)


def test_stl10_missing_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("stl10", "train+unlabeled", tmp_path)
    message = str(info.value)
    for name in ("train_X.bin", "train_y.bin", "unlabeled_X.bin"):
        assert name in message
    assert "https://cs.stanford.edu/~acoates/stl10/" in message
