"""Synthetic data: seeds, streams, and the registered "synthetic" data set."""

from __future__ import annotations

import pytest
import torch

from mmcr.data import load_dataset, synthetic_dataset


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


@pytest.mark.parametrize(("image_size", "size", "seed"), [(32, 512, 0), (16, 40, 3), (28, 7, 11)])
def test_load_dataset_synthetic_equals_the_pretraining_call(
    image_size: int, size: int, seed: int
) -> None:
    """Pretraining's synthetic images, through the registry like any other data set."""
    direct = synthetic_dataset(n=size, channels=3, size=image_size, num_classes=10, seed=seed)
    loaded = load_dataset("synthetic", "train", image_size=image_size, size=size, seed=seed)
    assert torch.equal(loaded.images, direct.images) and torch.equal(loaded.labels, direct.labels)
    assert (loaded.num_classes, loaded.name, loaded.classes) == (10, "synthetic", direct.classes)


def test_load_dataset_synthetic_sizes_and_streams() -> None:
    test = load_dataset("synthetic", "test")
    assert test.images.shape == (500, 3, 32, 32)
    assert torch.equal(test.images, synthetic_dataset(500, 3, 32, 10, 0, stream=1).images)
    small = load_dataset("synthetic", "test", image_size=8, size=40, seed=5)
    expected = synthetic_dataset(10, 3, 8, 10, 5, stream=1)
    assert torch.equal(small.images, expected.images) and torch.equal(small.labels, expected.labels)
    assert len(load_dataset("synthetic", "test", size=3)) == 1
    assert not torch.equal(
        load_dataset("synthetic", "train", size=20, seed=1).images,
        load_dataset("synthetic", "train", size=20, seed=2).images,
    )


def test_real_readers_ignore_size_and_seed() -> None:
    plain = load_dataset("digits", "test")
    other = load_dataset("digits", "test", size=5, seed=9)
    assert torch.equal(plain.images, other.images) and torch.equal(plain.labels, other.labels)
