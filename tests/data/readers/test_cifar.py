"""CIFAR-10 / CIFAR-100 python pickles written by hand into tmp_path, and the safe unpickler."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcr.data import load_dataset


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def dump(path: Path, obj: object) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        images = cifar_images(per_batch, i)
        labels = rng.integers(0, 10, per_batch).tolist()
        dump(
            folder / name,
            {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": images.reshape(per_batch, 3072),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
        written[name] = images
        written[name + "_labels"] = np.array(labels)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return written


def test_cifar10_reader(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    train = load_dataset("cifar10", "train", tmp_path)
    test = load_dataset("cifar10", "test", tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(train.images[:3].numpy(), written["data_batch_1"])
    np.testing.assert_array_equal(train.images[12:].numpy(), written["data_batch_5"])
    np.testing.assert_array_equal(test.labels.numpy(), written["test_batch_labels"])
    assert train.classes is not None and train.classes[0] == "airplane"
    assert train.num_classes == 10
    batches = tmp_path / "cifar-10-batches-py"
    assert train.sources == tuple(str(batches / f"data_batch_{i}") for i in range(1, 6))


def test_cifar10_channel_layout(tmp_path: Path) -> None:
    """A row is 1024 red values, then green, then blue, each plane row-major."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    row = np.zeros(3072, dtype=np.uint8)
    row[:1024] = 200  # red plane
    row[1024 + 5] = 7  # green, row 0, column 5
    row[2048 + 32 * 2 + 1] = 9  # blue, row 2, column 1
    dump(folder / "test_batch", {b"data": row[None], b"labels": [4]})
    image = load_dataset("cifar10", "test", folder).images[0]
    assert bool((image[0] == 200).all())
    assert int(image[1, 0, 5]) == 7 and int(image[2, 2, 1]) == 9
    assert int(image[1].sum()) == 7 and int(image[2].sum()) == 9


def test_cifar100_reader(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = cifar_images(4, 3)
    dump(
        folder / "train",
        {
            b"data": images.reshape(4, -1),
            b"fine_labels": [0, 99, 5, 42],
            b"coarse_labels": [0, 19, 1, 2],
        },
    )
    dump(
        folder / "meta",
        {
            b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [b"x"] * 20,
        },
    )
    data = load_dataset("cifar100", "train", tmp_path)
    assert data.num_classes == 100 and data.labels.tolist() == [0, 99, 5, 42]
    np.testing.assert_array_equal(data.images.numpy(), images)
    assert data.classes is not None and data.classes[99] == "c99"


def test_cifar_missing_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "data_batch_1" in message and str(tmp_path / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "MMCR_DATA_DIR" in message


def test_cifar_missing_without_any_directory() -> None:
    with pytest.raises(FileNotFoundError, match="neither data_dir nor"):
        load_dataset("cifar100", "test")


def test_cifar_refuses_code_in_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    dump(folder / "test_batch", {b"data": Exploit(), b"labels": [0]})
    with pytest.raises(ValueError, match="refusing to load global"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()


def test_cifar_corrupt_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00(")
    with pytest.raises(ValueError, match="not a valid CIFAR python pickle"):
        load_dataset("cifar10", "test", tmp_path)


def test_cifar_wrong_data_shape(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        load_dataset("cifar10", "test", tmp_path)
