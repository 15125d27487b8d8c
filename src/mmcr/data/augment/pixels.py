"""The pixel conventions of the views: input checks, uint8 -> [0, 1], normalisation stats.

Images are ``(N, C, H, W)`` with C in {1, 3}, either uint8 (0-255) or floating point in
[0, 1]; views leave as float32, normalised per channel with ``(x - mean) / std``.
"""

from __future__ import annotations

import torch

from mmcr.data.augment.config import AugmentConfig

__all__ = ["check_images", "norm_stats", "to_unit_float"]


def to_unit_float(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """float32 copy of uint8 (divided by 255) or floating-point images, checked to lie in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if not images.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be uint8 (0-255) or floating point in [0, 1], got dtype {images.dtype}"
        )
    x = images.to(torch.float32)
    if x.numel():
        lo, hi = torch.aminmax(x)
        if float(lo) < 0.0 or float(hi) > 1.0:
            raise ValueError(
                f"floating-point {name} must lie in [0, 1], got values in "
                f"[{float(lo):.4g}, {float(hi):.4g}]"
            )
    return x


def check_images(images: object) -> torch.Tensor:
    """Return ``images`` if it is a tensor ``(N, C, H, W)`` with C in {1, 3}, else raise."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 1 or 3 channels (shape (N, C, H, W)), got C = {images.shape[1]} "
            f"in shape {tuple(images.shape)}"
        )
    return images


def norm_stats(
    config: AugmentConfig, channels: int, channel_dim: int, ndim: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` of ``config`` shaped to broadcast over a tensor of ``ndim`` dims whose
    channels are at ``channel_dim``, in ``like``'s dtype and device; ``None`` if the config
    does not normalise."""
    if config.mean is None or config.std is None:
        return None
    if len(config.mean) not in (1, channels):
        raise ValueError(
            f"AugmentConfig.mean/std have {len(config.mean)} entries but the images have "
            f"{channels} channel(s); give one value per channel, or a single value for all"
        )
    shape = [1] * ndim
    shape[channel_dim] = len(config.mean)
    mean = torch.tensor(config.mean, dtype=like.dtype, device=like.device).reshape(shape)
    std = torch.tensor(config.std, dtype=like.dtype, device=like.device).reshape(shape)
    return mean, std
