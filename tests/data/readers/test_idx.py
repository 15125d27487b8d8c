"""idx parsing and the Fashion-MNIST reader (files written by hand into tmp_path)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcr.data import load_dataset, read_idx
from mmcr.data.readers import idx as idx_reader

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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
    suffix = ".gz" if gz else ""
    assert train.sources == (
        str(tmp_path / "fm" / f"train-images-idx3-ubyte{suffix}"),
        str(tmp_path / "fm" / f"train-labels-idx1-ubyte{suffix}"),
    )
    assert train.subset([0, 1]).sources == train.sources  # what a run logs as read


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
    monkeypatch.setattr(idx_reader, "_FASHION_MNIST_SYSTEM_DIR", SYSTEM_FASHION_MNIST)
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1000))
    assert train.images.float().mean().item() / 255 == pytest.approx(0.2860, abs=1e-3)
