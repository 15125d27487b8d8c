"""Batched multi-view augmentation: each op against a direct single-image computation,
the batched path against the per-image reference path, randomness, shapes and errors."""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from mmcr.data import (
    AugmentConfig,
    AugmentParams,
    MultiViewAugment,
    apply_params,
    augment_one,
    preset,
    sample_params,
)
from mmcr.data.views import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    rgb_to_grayscale,
    solarize,
)

# A config whose every op is off: the output is the plain resized crop in [0, 1].
PLAIN = AugmentConfig(
    crop_size=16,
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_p=0.0,
    jitter_p=0.0,
    gray_p=0.0,
    blur_p=0.0,
    solarize_p=0.0,
)


def images(n: int = 4, c: int = 3, h: int = 20, w: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)


def explicit_params(
    n: int,
    k: int,
    image_size: tuple[int, int],
    crop: tuple[int, int, int, int] | None = None,
    **flags: object,
) -> AugmentParams:
    """Parameters with every op off (identity jitter factors) unless set in ``flags``."""
    h, w = image_size
    box = crop if crop is not None else (0, 0, h, w)
    params = AugmentParams(
        crop=torch.tensor(box).expand(n, k, 4).clone(),
        flip=torch.zeros(n, k, dtype=torch.bool),
        jitter=torch.zeros(n, k, dtype=torch.bool),
        jitter_factors=torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(n, k, 4).clone(),
        jitter_order=torch.arange(4).expand(n, k, 4).clone(),
        gray=torch.zeros(n, k, dtype=torch.bool),
        blur=torch.zeros(n, k, dtype=torch.bool),
        blur_sigma=torch.ones(n, k),
        solarize=torch.zeros(n, k, dtype=torch.bool),
        image_size=(h, w),
    )
    return replace(params, **flags)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Shapes, dtypes, errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_views", [1, 2, 5])
def test_output_shape_and_dtype(channels: int, num_views: int) -> None:
    augment = MultiViewAugment(replace(preset("cifar", crop_size=12), mean=(0.5,), std=(0.25,)))
    out = augment(images(3, channels, 20, 20), num_views, torch.Generator().manual_seed(0))
    assert out.shape == (3, num_views, channels, 12, 12) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_float_input_equals_uint8_input() -> None:
    x = images()
    augment = MultiViewAugment(preset("cifar", crop_size=16))
    a = augment(x, 2, torch.Generator().manual_seed(5))
    b = augment(x.double() / 255, 2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_crop_larger_than_image_upsamples() -> None:
    out = MultiViewAugment(preset("cifar", crop_size=40))(images(2, 3, 10, 10), 2)
    assert out.shape == (2, 2, 3, 40, 40)


def test_empty_batch() -> None:
    out = MultiViewAugment(preset("cifar"))(images(0, 3, 32, 32), 3)
    assert out.shape == (0, 3, 3, 32, 32)


def test_bad_inputs() -> None:
    augment = MultiViewAugment(preset("cifar"))
    with pytest.raises(ValueError, match="num_views"):
        augment(images(), 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment(images()[0], 2)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        augment(images(2, 2), 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(torch.full((2, 3, 8, 8), 2.0), 2)
    with pytest.raises(ValueError, match="uint8"):
        augment(torch.zeros(2, 3, 8, 8, dtype=torch.int32), 2)
    with pytest.raises(ValueError, match="mean/std"):
        MultiViewAugment(replace(preset("cifar"), mean=(0.5, 0.5), std=(0.2, 0.2)))(images(), 1)
    params = sample_params(preset("cifar"), 3, 2, (20, 24))
    with pytest.raises(ValueError, match="params were drawn for 3 images"):
        apply_params(images(4), params, preset("cifar"))


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


# --------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------


def test_reproducible_with_seeded_generator() -> None:
    augment = MultiViewAugment(preset("imagenet", crop_size=16))
    x = images(4, 3, 24, 24)
    a = augment(x, 4, torch.Generator().manual_seed(3))
    b = augment(x, 4, torch.Generator().manual_seed(3))
    c = augment(x, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_views_differ_across_samples_and_views() -> None:
    x = images(1, 3, 32, 32).expand(8, 3, 32, 32).contiguous()  # the same image 8 times
    out = MultiViewAugment(preset("cifar"))(x, 3, torch.Generator().manual_seed(0))
    flat = out.reshape(24, -1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == 24  # every (sample, view) got its own parameters
    params = sample_params(
        preset("cifar"), 8, 3, (32, 32), generator=torch.Generator().manual_seed(0)
    )
    assert len({tuple(b) for b in params.crop.reshape(-1, 4).tolist()}) > 20
    assert len({tuple(o) for o in params.jitter_order.reshape(-1, 4).tolist()}) > 5


def test_parameter_statistics() -> None:
    config = preset("cifar")
    params = sample_params(config, 2000, 2, (32, 32), generator=torch.Generator().manual_seed(0))
    assert abs(params.flip.float().mean().item() - 0.5) < 0.03
    assert abs(params.jitter.float().mean().item() - 0.8) < 0.03
    assert abs(params.gray.float().mean().item() - 0.2) < 0.03
    assert not bool(params.blur.any()) and not bool(params.solarize.any())
    b, _, _, h = params.jitter_factors.reshape(-1, 4).unbind(1)
    assert 0.6 <= b.min().item() and b.max().item() <= 1.4
    assert -0.1 <= h.min().item() and h.max().item() <= 0.1
    # Each jitter order is a permutation of the four components.
    assert bool((params.jitter_order.sort(dim=-1).values == torch.arange(4)).all())


def test_random_resized_crop_boxes() -> None:
    config = replace(preset("cifar"), crop_scale=(0.2, 0.6))
    h, w = 40, 50
    params = sample_params(config, 500, 2, (h, w), generator=torch.Generator().manual_seed(1))
    top, left, ch, cw = params.crop.reshape(-1, 4).unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + ch <= h).all() and (left + cw <= w).all())
    area = (ch * cw).double() / (h * w)
    # Rounding the sides to whole pixels moves the area a little outside the range.
    assert area.min().item() > 0.17 and area.max().item() < 0.64
    ratio = cw.double() / ch.double()
    assert ratio.min().item() > 0.7 and ratio.max().item() < 1.4
    # Positions are spread over the image, not centred.
    assert len(set(top.tolist())) > 10 and len(set(left.tolist())) > 10


def test_random_resized_crop_fallback_is_centre_crop() -> None:
    # An area range the image cannot hold: every attempt fails, so the fallback is the
    # whole image with its aspect ratio clamped to crop_ratio, centred.
    config = replace(preset("cifar"), crop_scale=(2.0, 3.0), crop_ratio=(1.0, 1.0))
    params = sample_params(config, 5, 2, (20, 30))
    assert params.crop.reshape(-1, 4).tolist() == [[0, 5, 20, 20]] * 10


def test_per_view_probabilities_alternate() -> None:
    config = preset("imagenet")
    assert config.blur_p == (1.0, 0.1) and config.solarize_p == (0.0, 0.2)
    params = sample_params(config, 500, 4, (32, 32), generator=torch.Generator().manual_seed(0))
    assert bool(params.blur[:, 0::2].all())
    assert abs(params.blur[:, 1::2].float().mean().item() - 0.1) < 0.03
    assert not bool(params.solarize[:, 0::2].any())
    assert abs(params.solarize[:, 1::2].float().mean().item() - 0.2) < 0.03
    cfg = replace(PLAIN, flip_p=(1.0, 0.0, 0.0))
    flips = sample_params(cfg, 10, 6, (16, 16)).flip
    assert flips[:, [0, 3]].all() and not flips[:, [1, 2, 4, 5]].any()


# --------------------------------------------------------------------------------------
# Each op against a direct computation
# --------------------------------------------------------------------------------------


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


def unit_images(n: int = 3, c: int = 3, size: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


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


# --------------------------------------------------------------------------------------
# Batched path == per-image reference path
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "crop"),
    [
        ("cifar", (6, 3, 32, 32), None),
        ("imagenet", (3, 3, 40, 52), 24),
        ("stl10", (3, 3, 48, 48), 32),
        ("fashion-mnist", (5, 1, 28, 28), None),
        ("digits", (5, 1, 8, 8), None),
    ],
)
@pytest.mark.parametrize("random_order", [True, False])
def test_batched_matches_per_image(
    name: str, shape: tuple[int, int, int, int], crop: int | None, random_order: bool
) -> None:
    config = replace(preset(name, crop_size=crop), jitter_random_order=random_order)
    if name == "imagenet":
        config = replace(config, solarize_p=(0.5, 0.5))
    x = images(*shape, seed=3)
    num_views = 4
    params = sample_params(
        config, shape[0], num_views, shape[2:], generator=torch.Generator().manual_seed(9)
    )
    batched = apply_params(x, params, config)
    for n in range(shape[0]):
        for k in range(num_views):
            single = augment_one(x[n], params, config, (n, k))
            torch.testing.assert_close(batched[n, k], single, atol=2e-4, rtol=0)


def test_every_op_exercised_in_matching_test() -> None:
    """The parameters used above switch every op on for some view and off for another."""
    config = replace(preset("imagenet", crop_size=24), solarize_p=(0.5, 0.5))
    params = sample_params(config, 3, 4, (40, 52), generator=torch.Generator().manual_seed(9))
    for flags in (params.flip, params.jitter, params.gray, params.blur, params.solarize):
        assert bool(flags.any()) and not bool(flags.all())


def test_forward_equals_sample_then_apply() -> None:
    augment = MultiViewAugment(preset("cifar"))
    x = images(5, 3, 32, 32)
    out = augment(x, 2, torch.Generator().manual_seed(11))
    params = augment.sample_params(x, 2, torch.Generator().manual_seed(11))
    assert torch.equal(out, apply_params(x, params, augment.config))


# --------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------


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


def test_workspace_reuse_keeps_results_independent() -> None:
    """On CPU the module reuses scratch memory across calls; outputs must not share it."""
    augment = MultiViewAugment(preset("cifar"))
    big, small = images(8, 3, 32, 32, seed=1), images(3, 3, 40, 36, seed=2)
    first = augment(big, 3, torch.Generator().manual_seed(0))
    kept = first.clone()
    second = augment(small, 2, torch.Generator().manual_seed(1))
    third = augment(big, 3, torch.Generator().manual_seed(0))
    assert torch.equal(first, kept) and torch.equal(first, third)
    params = sample_params(
        augment.config, 3, 2, (40, 36), generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(second, apply_params(small, params, augment.config))
    augment.clear_workspace()
    assert torch.equal(augment(big, 3, torch.Generator().manual_seed(0)), first)


def test_module_pickles_and_has_no_state() -> None:
    import copy
    import pickle

    augment = MultiViewAugment(preset("fashion-mnist"))
    x = images(2, 1, 28, 28)
    out = augment(x, 2, torch.Generator().manual_seed(0))
    for other in (pickle.loads(pickle.dumps(augment)), copy.deepcopy(augment)):
        assert torch.equal(other(x, 2, torch.Generator().manual_seed(0)), out)
    assert augment.state_dict() == {}
