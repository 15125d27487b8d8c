"""AugmentConfig: validation at construction and the default blur kernel."""

from __future__ import annotations

import pytest

from mmcr.data import AugmentConfig


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(crop_size=8, flip_p=1.5)
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(crop_size=8, blur_p=())
    with pytest.raises(ValueError, match="odd"):
        AugmentConfig(crop_size=8, blur_kernel=4)
    with pytest.raises(ValueError, match="crop_size"):
        AugmentConfig(crop_size=0)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_size=8, crop_scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="hue"):
        AugmentConfig(crop_size=8, hue=0.6)
    with pytest.raises(ValueError, match="together"):
        AugmentConfig(crop_size=8, mean=(0.5,))
    with pytest.raises(ValueError, match="too large"):
        AugmentConfig(crop_size=4, blur_p=0.5, blur_kernel=9)


def test_default_blur_kernel_is_odd_ten_percent() -> None:
    assert AugmentConfig(crop_size=32).blur_kernel == 3
    assert AugmentConfig(crop_size=224).blur_kernel == 23
    assert AugmentConfig(crop_size=96).blur_kernel == 11
