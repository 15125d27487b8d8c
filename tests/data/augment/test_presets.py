"""The named recipes, and their lookup by preset, data-set name or alias."""

from __future__ import annotations

import pytest

from mmcr.data import preset


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
