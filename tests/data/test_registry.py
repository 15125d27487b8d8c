"""The data-set registry: entries, names and aliases, dispatch, registration of a new set."""

from __future__ import annotations

import pytest

from mmcr.data import DATASETS, dataset_info, load_dataset


def test_dataset_info_registry() -> None:
    info = dataset_info("cifar10")
    assert (info.channels, info.image_size, info.num_classes) == (3, 32, 10)
    assert dataset_info("CIFAR-100").num_classes == 100
    assert dataset_info("fashion_mnist").channels == 1
    assert dataset_info("stl10").image_size == 96 and "train+unlabeled" in DATASETS["stl10"].splits
    assert dataset_info("digits").image_size == 8
    with pytest.raises(ValueError, match="unknown data set"):
        dataset_info("mnist-but-not-really")


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet-21k", "train")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", "train", image_size=0)
