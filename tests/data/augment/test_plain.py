"""The deterministic evaluation view against a direct computation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mmcr.data import plain_view, preset

from .helpers import PLAIN, images


def test_plain_view_resizes_scales_and_normalises() -> None:
    x = images(3, 3, 20, 24)
    config = preset("cifar", crop_size=16)
    out = plain_view(x, config)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    resized = F.interpolate(
        x.float() / 255, size=(16, 16), mode="bilinear", antialias=True, align_corners=False
    )
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (resized - mean) / std, atol=1e-6, rtol=0)


def test_plain_view_at_crop_size_is_only_scaled() -> None:
    x = images(2, 1, 16, 16)
    assert torch.equal(plain_view(x, PLAIN), x.float() / 255)
    unit = x.float() / 255
    assert torch.equal(plain_view(unit, PLAIN), unit)
    one_value = replace(PLAIN, mean=(0.5,), std=(0.25,))
    torch.testing.assert_close(plain_view(x, one_value), (x.float() / 255 - 0.5) / 0.25)


def test_plain_view_is_deterministic_and_checks_channels() -> None:
    x = images(4, 3, 32, 32)
    assert torch.equal(plain_view(x, preset("cifar")), plain_view(x, preset("cifar")))
    with pytest.raises(ValueError, match="mean/std"):
        plain_view(images(2, 1, 32, 32), preset("cifar"))
