"""Colour and filter operations on batches of images, pure tensor functions.

Images are ``(B, C, H, W)`` in [0, 1]; a factor is a scalar or one value per sample
``(B,)``. The names ending in ``_`` work in place: the batched path avoids full-size
temporaries, which on CPU cost as much as the arithmetic. The others return new tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmcr.data.augment.config import AugmentConfig

__all__ = [
    "BRIGHTNESS",
    "CONTRAST",
    "GRAY_WEIGHTS",
    "HUE",
    "INPLACE_JITTER_OPS",
    "SATURATION",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "brightness_",
    "contrast_",
    "gaussian_blur",
    "gaussian_kernel1d",
    "grayscale_",
    "hue_",
    "jitter_enabled",
    "rgb_to_grayscale",
    "saturation_",
    "solarize",
    "solarize_",
]

#: ITU-R 601 luma weights of R, G and B.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

#: Index of each colour-jitter component in AugmentParams.jitter_factors / jitter_order.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _per_sample(factor: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return f.reshape(-1, 1, 1, 1) if f.ndim else f


def _gray_plane(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``(B, H, W)`` of RGB images ``(B, 3, H, W)`` (a new tensor)."""
    gray = x[:, 0] * GRAY_WEIGHTS[0]
    gray.add_(x[:, 1], alpha=GRAY_WEIGHTS[1]).add_(x[:, 2], alpha=GRAY_WEIGHTS[2])
    return gray


def brightness_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """In-place :func:`adjust_brightness`."""
    # Factors are >= 0, so only the upper bound can be crossed.
    return x.mul_(_per_sample(factor, x)).clamp_(max=1.0)


def contrast_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """In-place :func:`adjust_contrast`."""
    f = _per_sample(factor, x)
    channel_means = x.mean(dim=(-2, -1))  # (B, C); the gray mean is linear in them
    if x.shape[1] == 3:
        weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
        mean = (channel_means * weights).sum(dim=1)
    else:
        mean = channel_means.mean(dim=1)
    offset = (1.0 - f) * mean.reshape(-1, 1, 1, 1)
    return x.mul_(f).add_(offset).clamp_(0.0, 1.0)


def saturation_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """In-place :func:`adjust_saturation`."""
    if x.shape[1] == 1:
        return x
    f = _per_sample(factor, x)
    gray = _gray_plane(x).unsqueeze(1).mul_(1.0 - f)
    return x.mul_(f).add_(gray).clamp_(0.0, 1.0)


def hue_(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """In-place :func:`adjust_hue`."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc = x.amax(dim=1)
    delta = torch.sub(maxc, x.amin(dim=1))
    # HSV hue in sextants, h in [-1, 5): ((g - b), (b - r) + 2 delta, (r - g) + 4 delta)
    # / delta for a red, green or blue maximum. Where delta = 0 the channels are equal and
    # the numerator is exactly 0, so a tiny floor on the divisor is enough.
    hue = torch.where(
        maxc == r,
        g - b,
        torch.where(maxc == g, (b - r).add_(delta, alpha=2.0), (r - g).add_(delta, alpha=4.0)),
    )
    hue.div_(delta.clamp(min=1e-30))
    # HSV -> RGB with V = max and V * S = delta, both unchanged by a hue rotation: channel
    # = max - delta * t, where t = clamp(2 - dist, 0, 1) and dist is the circular distance
    # (period 6) between the rotated hue and the channel's opposite hue (3 for red, 5 for
    # green, 1 for blue). Rotating the hue by +6 s equals rotating those centres by -6 s;
    # with hue and centres both in [-1, 5), dist = min(d, 6 - d) for d = |hue - centre|,
    # and 2 - min(d, 6 - d) = |d - 3| - 1.
    s = torch.as_tensor(shift, dtype=x.dtype, device=x.device).reshape(-1, 1)
    centres = torch.tensor([3.0, 5.0, 1.0], dtype=x.dtype, device=x.device) - 6.0 * s
    centres = torch.remainder(centres + 1.0, 6.0) - 1.0  # (B or 1, 3) in [-1, 5)
    t = hue.unsqueeze(1) - centres[:, :, None, None]
    t.abs_().sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    torch.addcmul(maxc.unsqueeze(1), delta.unsqueeze(1), t, value=-1.0, out=x)
    return x


def grayscale_(x: torch.Tensor) -> torch.Tensor:
    """Replace every channel of RGB images ``(B, 3, H, W)`` by their luma, in place."""
    if x.shape[1] == 1:
        return x
    return x.copy_(_gray_plane(x).unsqueeze(1).expand_as(x))


def solarize_(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """In-place :func:`solarize`."""
    return x.copy_(torch.where(x >= threshold, 1.0 - x, x))


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB images ``(B, 3, H, W)`` -> ``(B, 1, H, W)``.

    Weights 0.299 R + 0.587 G + 0.114 B; 1-channel images pass through unchanged.
    """
    if x.shape[-3] == 1:
        return x
    return _gray_plane(x.reshape(-1, *x.shape[-3:])).reshape(*x.shape[:-3], 1, *x.shape[-2:])


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Scale ``(B, C, H, W)`` images by ``factor`` (scalar or ``(B,)``, >= 0), clamp to [0, 1]."""
    return brightness_(x.clone(), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend ``(B, C, H, W)`` images with their mean gray level: ``f x + (1 - f) mean``, clamped.

    ``mean`` is the mean over the whole image of its ITU-R 601 grayscale (of the single
    channel for 1-channel images).
    """
    return contrast_(x.clone(), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend RGB images ``(B, 3, H, W)`` with their grayscale: ``f x + (1 - f) gray``, clamped.

    A no-op for 1-channel images.
    """
    return saturation_(x.clone(), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate the hue of RGB images ``(B, 3, H, W)`` by ``shift`` turns (in [-0.5, 0.5]).

    Equal to converting to HSV, adding ``shift`` to the hue modulo 1 and converting back
    (value and saturation unchanged). A no-op for 1-channel images.
    """
    return hue_(x.clone(), shift)


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert pixels at or above ``threshold``: ``x -> 1 - x`` where ``x >= threshold``."""
    return torch.where(x >= threshold, 1.0 - x, x)


def gaussian_kernel1d(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Normalised Gaussian weights ``(B, kernel_size)`` for std ``sigma`` ``(B,)`` in pixels."""
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    weights = torch.exp(-0.5 * (offsets / sigma.reshape(-1, 1)) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur images ``(B, C, H, W)`` with a per-sample Gaussian of std ``sigma`` ``(B,)`` pixels.

    Separable: one grouped 1-D convolution along each axis, reflect padding by
    ``kernel_size // 2`` (needs ``kernel_size // 2 < min(H, W)``).
    """
    b, c, h, w = x.shape
    radius = kernel_size // 2
    weights = gaussian_kernel1d(sigma.to(x.dtype), kernel_size)  # (B, k)
    weights = weights.repeat_interleave(c, dim=0)  # (B*C, k): one kernel per channel
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    flat = padded.reshape(1, b * c, h + 2 * radius, w + 2 * radius)
    flat = F.conv2d(flat, weights.reshape(b * c, 1, 1, kernel_size), groups=b * c)
    flat = F.conv2d(flat, weights.reshape(b * c, 1, kernel_size, 1), groups=b * c)
    return flat.reshape(b, c, h, w)


#: Jitter component index -> its in-place operation ``op_(x, factor)``.
INPLACE_JITTER_OPS: dict[int, Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]] = {
    BRIGHTNESS: brightness_,
    CONTRAST: contrast_,
    SATURATION: saturation_,
    HUE: hue_,
}


def jitter_enabled(config: AugmentConfig, channels: int) -> list[int]:
    """Jitter components that change anything for this config and channel count."""
    enabled = []
    if config.brightness > 0:
        enabled.append(BRIGHTNESS)
    if config.contrast > 0:
        enabled.append(CONTRAST)
    if channels == 3 and config.saturation > 0:
        enabled.append(SATURATION)
    if channels == 3 and config.hue > 0:
        enabled.append(HUE)
    return enabled
