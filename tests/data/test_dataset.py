"""The in-memory container and the stratified train / validation split."""

from __future__ import annotations

import pytest
import torch

from mmcr.data import ImageDataset, load_dataset, synthetic_dataset, train_val_split


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
