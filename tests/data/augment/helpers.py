"""Inputs and parameters shared by the augmentation tests."""

from __future__ import annotations

from dataclasses import replace

import torch

from mmcr.data import AugmentConfig, AugmentParams

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


def unit_images(n: int = 3, c: int = 3, size: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


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
