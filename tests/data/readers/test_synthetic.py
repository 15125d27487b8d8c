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
