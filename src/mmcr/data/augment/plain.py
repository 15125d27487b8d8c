"""The deterministic evaluation view: the whole image, resized, scaled and normalised."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcr.data.augment.config import AugmentConfig
from mmcr.data.augment.pixels import norm_stats

__all__ = ["plain_view"]


def plain_view(images: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """The evaluation view of uint8 ``(N, C, H, W)`` images: resized to the crop size, normalised.

    No randomness: the whole image is resized (bilinear, antialiased) to
    ``config.crop_size`` if it differs, scaled to [0, 1] and normalised with the config's
    mean and std. Returns float32 ``(N, C, crop, crop)``.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    size = config.crop_size
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    stats = norm_stats(config, x.shape[1], 1, 4, x)
    if stats is not None:
        x = (x - stats[0]) / stats[1]
    return x
