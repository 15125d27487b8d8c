"""Random parameters: reproducibility, statistics, crop boxes, per-view probabilities."""

from __future__ import annotations

from dataclasses import replace

import torch

from mmcr.data import MultiViewAugment, preset, sample_params

from .helpers import PLAIN, images


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
