"""scikit-learn's digits: the fixed stratified split and resizing."""

from __future__ import annotations

import numpy as np
import torch

from mmcr.data import load_dataset


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
