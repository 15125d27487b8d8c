"""Dataset readers: idx parsing, the standard CIFAR / STL-10 / image-folder formats written
by hand into tmp_path, error messages for missing or corrupt data, and the splits."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmcr.data import (
    DATASETS,
    ImageDataset,
    dataset_info,
    load_dataset,
    read_idx,
    synthetic_dataset,
    train_val_split,
)
from mmcr.data import datasets as datasets_module

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_search_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's MMCR_DATA_DIR, nor (unless it asks) the system Fashion-MNIST."""
    monkeypatch.delenv("MMCR_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets_module, "_FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-system-dir")


# --------------------------------------------------------------------------------------
# idx files
# --------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool, type_code: int = 0x08) -> Path:
    data = idx_bytes(array, type_code)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_fashion(directory: Path, n_train: int, n_test: int, *, gz: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_uint8_round_trip(tmp_path: Path, gz: bool) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    array = np.array([1, -2, 70000], dtype=np.int32)
    path = write_idx(tmp_path / "x-idx1-int", array, gz=False, type_code=0x0C)
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="two zero bytes"):
        read_idx(path)


def test_read_idx_rejects_unknown_type_code(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="type code 0x07"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = idx_bytes(np.zeros((4, 5), dtype=np.uint8))[:-3]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)


def test_read_idx_rejects_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((40, 50), dtype=np.uint8)))[:30])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


# --------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_data_dir(tmp_path: Path, gz: bool) -> None:
    arrays = write_fashion(tmp_path / "fm", 7, 5, gz=gz)
    train = load_dataset("fashion-mnist", "train", tmp_path / "fm")
    test = load_dataset("fashion-mnist", "test", tmp_path / "fm")
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (5, 1, 28, 28)
    assert train.labels.dtype == torch.int64
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k"][1])
    assert train.num_classes == 10 and train.classes is not None and len(train.classes) == 10
    assert train.name == "fashion-mnist"


def test_fashion_mnist_from_env_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion(tmp_path / "data" / "fashion-mnist", 3, 2, gz=True)
    monkeypatch.setenv("MMCR_DATA_DIR", str(tmp_path / "data"))
    assert len(load_dataset("fashion-mnist", "test")) == 2


def test_fashion_mnist_data_dir_comes_before_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_fashion(tmp_path / "first", 3, 3, gz=False)
    write_fashion(tmp_path / "second", 4, 4, gz=False)
    monkeypatch.setenv("MMCR_DATA_DIR", str(tmp_path / "second"))
    assert len(load_dataset("fashion-mnist", "train", tmp_path / "first")) == 3
    assert len(load_dataset("fashion-mnist", "train")) == 4


def test_fashion_mnist_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", "train", tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "MMCR_DATA_DIR" in message and "--data-dir" in message


def test_fashion_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8), gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8), gz=False)
    with pytest.raises(ValueError, match="3 images but"):
        load_dataset("fashion-mnist", "test", tmp_path)


def test_fashion_mnist_wrong_rank(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 784), np.uint8), gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        load_dataset("fashion-mnist", "test", tmp_path)


def test_fashion_mnist_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="splits"):
        load_dataset("fashion-mnist", "validation", tmp_path)


@pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
    and not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "_FASHION_MNIST_SYSTEM_DIR", SYSTEM_FASHION_MNIST)
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    assert train.images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-3)


# --------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------


def test_digits_splits() -> None:
    from sklearn.datasets import load_digits

    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert train.images.shape == (1497, 1, 8, 8) and test.images.shape == (300, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert train.num_classes == 10 and train.classes == [str(d) for d in range(10)]
    # Test classes are balanced to within one image of 300 / 10.
    counts = torch.bincount(test.labels, minlength=10)
    assert int(counts.min()) >= 29 and int(counts.max()) <= 31
    # Together the two splits are exactly the 1797 digits (as a multiset of image + label).
    full = load_digits()
    expected = np.rint(full.images * 255 / 16).astype(np.uint8).reshape(1797, 64)
    rows = lambda imgs, labels: sorted(  # noqa: E731
        bytes(i) + bytes([int(t)]) for i, t in zip(imgs, labels, strict=True)
    )
    together = np.concatenate(
        [train.images.reshape(-1, 64).numpy(), test.images.reshape(-1, 64).numpy()]
    )
    labels = np.concatenate([train.labels.numpy(), test.labels.numpy()])
    assert rows(together, labels) == rows(expected, full.target)
    # Deterministic.
    assert torch.equal(load_dataset("digits", "test").images, test.images)


def test_digits_resize() -> None:
    data = load_dataset("digits", "test", image_size=16)
    assert data.images.shape == (300, 1, 16, 16) and data.images.dtype == torch.uint8


# --------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# STL-10
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Synthetic data, registry, container
# --------------------------------------------------------------------------------------


def test_synthetic_dataset() -> None:
    a = synthetic_dataset(50, channels=1, size=12, num_classes=5, seed=3)
    b = synthetic_dataset(50, channels=1, size=12, num_classes=5, seed=3)
    c = synthetic_dataset(50, channels=1, size=12, num_classes=5, seed=3, stream=1)
    assert a.images.shape == (50, 1, 12, 12) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(torch.bincount(a.labels), torch.full((5,), 10))
    train = load_dataset("synthetic", "train")
    assert train.images.shape == (2000, 3, 32, 32) and train.num_classes == 10
    with pytest.raises(ValueError, match="channels"):
        synthetic_dataset(10, channels=0)


def test_dataset_info_registry() -> None:
    info = dataset_info("cifar10")
    assert (info.channels, info.image_size, info.num_classes) == (3, 32, 10)
    assert dataset_info("CIFAR-100").num_classes == 100
    assert dataset_info("fashion_mnist").channels == 1
    assert dataset_info("stl10").image_size == 96 and "train+unlabeled" in DATASETS["stl10"].splits
    assert dataset_info("digits").image_size == 8
    with pytest.raises(ValueError, match="unknown data set"):
        dataset_info("mnist-but-not-really")


def test_image_dataset_subset_and_validation() -> None:
    data = synthetic_dataset(10, channels=3, size=4, num_classes=2, seed=0)
    sub = data.subset(torch.tensor([1, 3]))
    assert len(sub) == 2 and torch.equal(sub.images, data.images[[1, 3]])
    assert sub.num_classes == 2 and sub.name == "synthetic"
    assert len(data.subset([0, 1, 2])) == 3
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 2, "x")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(
            torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), 2, "x"
        )


# --------------------------------------------------------------------------------------
# Train / validation split
# --------------------------------------------------------------------------------------


def test_train_val_split_properties() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [-1] * 5)
    labels = labels[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    train_idx, val_idx = train_val_split(labels, 0.2, seed=7)
    assert train_idx.dtype == torch.int64 and val_idx.dtype == torch.int64
    assert len(val_idx) == 20 and len(train_idx) == 80
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(100))
    # Stratified: each class contributes 20 % of its members.
    val_counts = {c: int((labels[val_idx] == c).sum()) for c in (0, 1, 2, -1)}
    assert val_counts == {0: 10, 1: 6, 2: 3, -1: 1}
    # Reproducible for a seed, different for another.
    again = train_val_split(labels, 0.2, seed=7)
    assert torch.equal(again[0], train_idx) and torch.equal(again[1], val_idx)
    other = train_val_split(labels, 0.2, seed=8)
    assert not torch.equal(other[1], val_idx)


def test_train_val_split_rounding_is_within_one_per_class() -> None:
    labels = torch.arange(1000) % 7
    _, val_idx = train_val_split(labels, 0.1, seed=0)
    assert len(val_idx) == 100
    counts = torch.bincount(labels[val_idx], minlength=7)
    expected = 0.1 * torch.bincount(labels).double()
    assert bool(((counts.double() - expected).abs() < 1).all())


def test_train_val_split_on_real_split() -> None:
    train = load_dataset("digits", "train")
    train_idx, val_idx = train_val_split(train.labels, 0.1, seed=0)
    assert len(val_idx) == 150 and len(train_idx) == 1347
    assert len(train.subset(val_idx)) == 150


def test_train_val_split_validation() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        train_val_split(torch.arange(10), 1.0, seed=0)
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(torch.zeros(2, 5, dtype=torch.long), 0.1, seed=0)
    with pytest.raises(ValueError, match="integer"):
        train_val_split(torch.zeros(5), 0.1, seed=0)
    train_idx, val_idx = train_val_split(torch.arange(10) % 2, 0.0, seed=0)
    assert len(val_idx) == 0 and len(train_idx) == 10


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet-21k", "train")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", "train", image_size=0)
