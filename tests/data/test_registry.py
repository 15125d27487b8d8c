"""The data-set registry: entries, names and aliases, dispatch, registration of a new set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
import torch

import mmcr.data
from mmcr.data import (
    DATASETS,
    DatasetInfo,
    DatasetRequest,
    ImageDataset,
    dataset_info,
    dataset_names,
    load_dataset,
    preset,
    register_dataset,
    registry,
)
from mmcr.data.readers import BUILTIN_DATASETS
from mmcr.data.registry import normalise_name


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


# --------------------------------------------------------------------------------------
# Registering a new data set through the public API
# --------------------------------------------------------------------------------------


@pytest.fixture
def _restore_registry() -> Iterator[None]:
    """Leave the registry as it was: a test's toy data sets do not leak into other tests."""
    entries, names = dict(registry._ENTRIES), dict(registry._NAMES)
    yield
    registry._ENTRIES.clear()
    registry._ENTRIES.update(entries)
    registry._NAMES.clear()
    registry._NAMES.update(names)


def load_toy(request: DatasetRequest) -> ImageDataset:
    n = request.size or 6
    images = torch.full((n, 1, 4, 4), 7 if request.split == "train" else 9, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 2, 2, request.info.name, ["even", "odd"])


def toy_info(name: str = "toy-shapes", aliases: tuple[str, ...] = ("toyshapes",)) -> DatasetInfo:
    return DatasetInfo(
        name, 1, 4, 2, ("train", "test"), "made in memory", aliases=aliases, augment="digits",
        loader=load_toy,
    )


@pytest.mark.usefixtures("_restore_registry")
def test_register_toy_dataset_and_load_by_name_and_alias() -> None:
    info = toy_info()
    assert mmcr.data.register_dataset(info) is info
    assert "toy-shapes" in dataset_names() and DATASETS["toy-shapes"] is info
    train = load_dataset("toy-shapes", "train")
    assert train.images.shape == (6, 1, 4, 4) and bool((train.images == 7).all())
    assert train.name == "toy-shapes" and train.labels.tolist() == [0, 1, 0, 1, 0, 1]
    by_alias = load_dataset("ToyShapes", "test", size=3)
    assert by_alias.images.shape == (3, 1, 4, 4) and bool((by_alias.images == 9).all())
    assert dataset_info("toy_shapes") is info and dataset_info("TOYSHAPES") is info
    # The registry's resize and split checks apply to every entry.
    assert load_dataset("toy-shapes", "train", image_size=8).images.shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="splits"):
        load_dataset("toy-shapes", "val")
    # The entry's default augmentation preset is reachable by its name and aliases.
    assert preset("toyshapes") == preset("digits")


@pytest.mark.usefixtures("_restore_registry")
def test_load_dataset_hands_the_loader_one_checked_request(tmp_path: Path) -> None:
    requests: list[DatasetRequest] = []

    def recording_loader(request: DatasetRequest) -> ImageDataset:
        requests.append(request)
        return load_toy(request)

    info = register_dataset(replace(toy_info(), loader=recording_loader))
    load_dataset("ToyShapes", "test", tmp_path, image_size=8, size=3, seed=5)
    assert requests == [DatasetRequest(info, "test", tmp_path, image_size=8, size=3, seed=5)]
    with pytest.raises(FrozenInstanceError):
        requests[0].seed = 6  # type: ignore[misc]
    # The request checks itself, so a loader called directly gets the same errors.
    with pytest.raises(ValueError, match="splits"):
        DatasetRequest(info, "val")
    with pytest.raises(ValueError, match="size must be a positive int"):
        DatasetRequest(info, "train", size=0)


@pytest.mark.usefixtures("_restore_registry")
def test_register_duplicate_name_or_alias_is_an_error() -> None:
    register_dataset(toy_info())
    with pytest.raises(ValueError, match="'toy-shapes' is already registered for data set 'toy-shapes'"):
        register_dataset(toy_info())
    with pytest.raises(ValueError, match="'toyshapes' is already registered"):
        register_dataset(toy_info("other-toy", aliases=("other", "ToyShapes")))
    with pytest.raises(ValueError, match="'fmnist' is already registered for data set 'fashion-mnist'"):
        register_dataset(toy_info("another-toy", aliases=("FMNIST",)))
    with pytest.raises(ValueError, match="already registered for data set 'cifar10'"):
        register_dataset(toy_info("cifar10", aliases=()))
    # A failed registration leaves nothing behind.
    assert "other-toy" not in DATASETS and "another-toy" not in DATASETS
    for name in ("other-toy", "other", "another-toy"):
        with pytest.raises(ValueError, match="unknown data set"):
            dataset_info(name)


@pytest.mark.usefixtures("_restore_registry")
def test_register_rejects_bad_entries() -> None:
    with pytest.raises(ValueError, match="lower case"):
        register_dataset(toy_info("Toy_Shapes"))
    with pytest.raises(ValueError, match="twice"):
        register_dataset(toy_info("toy", aliases=("toy-2", "TOY_2")))
    with pytest.raises(ValueError, match="callable loader"):
        register_dataset(replace(toy_info(), loader=None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DatasetInfo"):
        register_dataset("toy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 class names"):
        register_dataset(replace(toy_info(), num_classes=3, class_names=("a", "b")))


def test_registry_view_is_read_only() -> None:
    with pytest.raises(TypeError):
        DATASETS["toy"] = toy_info()  # type: ignore[index]


def test_builtin_entries_aliases_and_presets() -> None:
    # The built-in entries, not dataset_names(): other test modules (tests/test_registries.py)
    # register toy data sets when pytest imports them.
    builtin = tuple(sorted(info.name for info in BUILTIN_DATASETS))
    assert builtin == (
        "cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder", "stl10", "synthetic", "webdataset",
    )
    assert all(DATASETS[info.name] is info for info in BUILTIN_DATASETS)
    expected = {
        "fashion-mnist": "fashion-mnist",
        "digits": "digits",
        "cifar10": "cifar10",
        "cifar100": "cifar100",
        "stl10": "stl10",
        "imagefolder": "imagenet",
        "synthetic": "synthetic",
        "webdataset": "imagenet",
    }
    assert {name: DATASETS[name].augment for name in builtin} == expected
    for alias, name in [
        ("fashionmnist", "fashion-mnist"),
        ("fmnist", "fashion-mnist"),
        ("Fashion_MNIST", "fashion-mnist"),
        ("cifar-10", "cifar10"),
        ("CIFAR_100", "cifar100"),
        ("stl-10", "stl10"),
        ("image-folder", "imagefolder"),
        ("wds", "webdataset"),
        (" Digits ", "digits"),
    ]:
        assert dataset_info(alias).name == name
    assert normalise_name(" CIFAR_10 ") == "cifar-10"


def test_class_names_known_before_reading() -> None:
    # fixed names are in the entry; the others come from the files (the loaded split's classes)
    assert DATASETS["fashion-mnist"].class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )
    assert DATASETS["digits"].class_names == tuple("0123456789")
    for name in ("cifar10", "cifar100", "stl10", "imagefolder", "webdataset"):
        assert DATASETS[name].class_names is None, name
    for name in ("digits", "synthetic"):
        assert list(DATASETS[name].class_names or ()) == load_dataset(name, "test").classes


def test_unknown_name_error_lists_the_registry() -> None:
    with pytest.raises(ValueError) as info:
        dataset_info("mnist-ish")
    assert str(info.value) == f"unknown data set 'mnist-ish'; valid: {', '.join(dataset_names())}"


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size must be a positive int"):
        load_dataset("synthetic", "train", size=0)
