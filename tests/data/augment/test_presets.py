"""The named recipes, and their lookup by preset, data-set name or alias."""

from __future__ import annotations

import pytest

from mmcr.data import preset
from mmcr.data.augment import preset_names


def test_presets() -> None:
    assert preset("fashion-mnist").crop_size == 28 and preset("fashion-mnist").mean == (0.2860,)
    assert preset("digits").crop_size == 8 and preset("digits").flip_p == 0.0
    cifar = preset("cifar")
    assert (cifar.crop_size, cifar.crop_scale, cifar.jitter_p, cifar.gray_p) == (
        32,
        (0.08, 1.0),
        0.8,
        0.2,
    )
    assert (cifar.brightness, cifar.contrast, cifar.saturation, cifar.hue) == (0.4, 0.4, 0.4, 0.1)
    stl = preset("stl10")
    assert stl.crop_size == 64 and stl.crop_scale == (0.2, 1.0)
    imagenet = preset("imagenet")
    assert imagenet.crop_size == 224 and imagenet.blur_kernel == 23
    small = preset("imagenet", crop_size=64)
    assert small.crop_size == 64 and small.blur_kernel == 7 and small.blur_p == (1.0, 0.1)
    assert preset("CIFAR-100").mean != cifar.mean
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        preset("mnist-ish")
    assert isinstance(preset("cifar").to_dict()["mean"], list)


def test_preset_names_resolve_through_the_dataset_registry() -> None:
    assert preset("cifar-10") == preset("cifar10") == preset("cifar")
    assert preset("fashionmnist") == preset("fashion-mnist") == preset("FMNIST")
    assert preset("Fashion_MNIST") == preset("fashion-mnist")
    assert preset("CIFAR_100") == preset("cifar100") and preset("stl-10") == preset("stl10")
    # A data set without a preset of its own name gets its default one.
    assert preset("imagefolder") == preset("imagenet") == preset("image_folder")
    assert preset("cifar-10", crop_size=24).crop_size == 24


def test_unknown_preset_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        preset("mnist-ish")
    assert str(info.value) == f"unknown augmentation preset 'mnist-ish'; valid: {', '.join(preset_names())}"
    for name in ("cifar", "imagenet", "fashion-mnist", "imagefolder"):
        assert name in preset_names()
