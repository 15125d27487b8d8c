"""Each op against a direct single-image computation."""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mmcr.data import AugmentConfig, MultiViewAugment, apply_params, sample_params
from mmcr.data.augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    rgb_to_grayscale,
    solarize,
)

from .helpers import PLAIN, explicit_params, images, unit_images


def test_identity_crop_is_resize_of_whole_image() -> None:
    x = images(3, 3, 20, 20)
    out = MultiViewAugment(PLAIN)(x, 2)
    expected = F.interpolate(x.float() / 255, size=(16, 16), mode="bilinear", align_corners=False)
    for k in range(2):
        torch.testing.assert_close(out[:, k], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("box", [(2, 3, 10, 14), (0, 0, 5, 4), (7, 1, 13, 20), (0, 0, 20, 24)])
def test_crop_matches_slice_and_interpolate(box: tuple[int, int, int, int]) -> None:
    x = images(2, 3, 20, 24)
    params = explicit_params(2, 1, (20, 24), crop=box)
    out = apply_params(x, params, PLAIN)
    top, left, h, w = box
    expected = F.interpolate(
        x[:, :, top : top + h, left : left + w].float() / 255,
        size=(16, 16),
        mode="bilinear",
        align_corners=False,
    )
    torch.testing.assert_close(out[:, 0], expected, atol=1e-5, rtol=0)


def test_flip_is_torch_flip() -> None:
    x = images(2, 3, 20, 24)
    box = (1, 2, 15, 19)
    plain = apply_params(x, explicit_params(2, 1, (20, 24), crop=box), PLAIN)
    flipped = apply_params(
        x, explicit_params(2, 1, (20, 24), crop=box, flip=torch.ones(2, 1, dtype=torch.bool)), PLAIN
    )
    torch.testing.assert_close(flipped, torch.flip(plain, dims=[-1]), atol=1e-6, rtol=0)


def test_brightness_is_scale_and_clamp() -> None:
    x = unit_images()
    factors = torch.tensor([0.6, 1.0, 1.4])
    out = adjust_brightness(x, factors)
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(out[i], (x[i] * f).clamp(0, 1))
    assert not torch.equal(out, x)  # the input is left alone
    torch.testing.assert_close(x, unit_images())


def test_contrast_blends_with_mean_gray() -> None:
    x = unit_images()
    factors = torch.tensor([0.6, 1.0, 1.4])
    out = adjust_contrast(x, factors)
    for i, f in enumerate(factors.tolist()):
        gray_mean = (0.299 * x[i, 0] + 0.587 * x[i, 1] + 0.114 * x[i, 2]).mean()
        expected = (f * x[i] + (1 - f) * gray_mean).clamp(0, 1)
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)
    one = unit_images(c=1)
    expected = (0.5 * one[0] + 0.5 * one[0].mean()).clamp(0, 1)
    torch.testing.assert_close(adjust_contrast(one, 0.5)[0], expected, atol=1e-6, rtol=0)


def test_saturation_blends_with_grayscale() -> None:
    x = unit_images()
    factors = torch.tensor([0.0, 0.7, 1.4])
    out = adjust_saturation(x, factors)
    for i, f in enumerate(factors.tolist()):
        gray = 0.299 * x[i, 0] + 0.587 * x[i, 1] + 0.114 * x[i, 2]
        torch.testing.assert_close(
            out[i], (f * x[i] + (1 - f) * gray).clamp(0, 1), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("shift", [0.0, 0.05, -0.1, 0.25, -0.5, 0.5])
def test_hue_matches_colorsys(shift: float) -> None:
    x = unit_images(2, 3, 5, seed=1)
    x[0, :, 0, 0] = torch.tensor([0.3, 0.3, 0.3])  # gray: hue undefined, must be unchanged
    x[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    x[0, :, 0, 2] = torch.tensor([0.2, 0.9, 0.9])  # ties between channels
    out = adjust_hue(x, shift)
    for b in range(2):
        for i in range(5):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
                assert out[b, :, i, j].tolist() == pytest.approx(expected, abs=1e-5)


def test_grayscale_uses_itu_601_weights() -> None:
    x = unit_images()
    gray = rgb_to_grayscale(x)
    assert gray.shape == (3, 1, 6, 6)
    torch.testing.assert_close(gray[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    params = explicit_params(3, 1, (6, 6), gray=torch.ones(3, 1, dtype=torch.bool))
    config = replace(PLAIN, crop_size=6)
    out = apply_params((x * 255).round().to(torch.uint8), params, config)
    x8 = (x * 255).round() / 255
    expected = 0.299 * x8[:, 0] + 0.587 * x8[:, 1] + 0.114 * x8[:, 2]
    for ch in range(3):
        torch.testing.assert_close(out[:, 0, ch], expected, atol=1e-6, rtol=0)


def gaussian_kernel_2d(sigma: float, size: int) -> torch.Tensor:
    r = size // 2
    w = torch.tensor([math.exp(-(i * i) / (2 * sigma * sigma)) for i in range(-r, r + 1)])
    w = w / w.sum()
    return w[:, None] * w[None, :]


def test_blur_matches_explicit_gaussian_convolution() -> None:
    x = unit_images(3, 3, 12)
    sigmas = torch.tensor([0.3, 1.0, 2.0])
    out = gaussian_blur(x, sigmas, 5)
    for i, sigma in enumerate(sigmas.tolist()):
        kernel = gaussian_kernel_2d(sigma, 5).expand(3, 1, 5, 5)
        padded = F.pad(x[i : i + 1], (2, 2, 2, 2), mode="reflect")
        expected = F.conv2d(padded, kernel, groups=3)[0]
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)


def test_blur_in_pipeline() -> None:
    x = images(2, 3, 16, 16)
    config = replace(PLAIN, crop_size=16, blur_p=1.0, blur_kernel=7)
    sigma = torch.tensor([[0.5], [1.7]])
    params = explicit_params(
        2, 1, (16, 16), blur=torch.ones(2, 1, dtype=torch.bool), blur_sigma=sigma
    )
    out = apply_params(x, params, config)
    for i in range(2):
        kernel = gaussian_kernel_2d(sigma[i, 0].item(), 7).expand(3, 1, 7, 7)
        padded = F.pad(x[i : i + 1].float() / 255, (3, 3, 3, 3), mode="reflect")
        torch.testing.assert_close(
            out[i, 0], F.conv2d(padded, kernel, groups=3)[0], atol=1e-5, rtol=0
        )


def test_solarize_inverts_above_threshold() -> None:
    x = torch.tensor([[[[0.1, 0.5, 0.49, 0.9]]]])
    assert solarize(x, 0.5).flatten().tolist() == pytest.approx([0.1, 0.5, 0.49, 0.1])
    u = unit_images()
    torch.testing.assert_close(solarize(u, 0.3), torch.where(u >= 0.3, 1 - u, u))


def test_normalisation() -> None:
    x = images(2, 3, 16, 16)
    config = replace(PLAIN, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    raw = MultiViewAugment(PLAIN)(x, 1)
    out = MultiViewAugment(config)(x, 1)
    mean = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    torch.testing.assert_close(out, (raw - mean) / std, atol=1e-5, rtol=0)


def test_one_channel_ignores_colour_ops() -> None:
    x = images(4, 1, 28, 28)
    colourful = AugmentConfig(crop_size=28, saturation=1.0, hue=0.5, gray_p=1.0, jitter_p=1.0)
    grayish = replace(colourful, saturation=0.0, hue=0.0, gray_p=0.0)
    params = sample_params(colourful, 4, 3, (28, 28), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        apply_params(x, params, colourful), apply_params(x, params, grayish), atol=0, rtol=0
    )
