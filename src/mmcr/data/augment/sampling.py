"""The random parameters of the views: :class:`AugmentParams` and :func:`sample_params`.

Every random number of a batch is drawn here, once per (image, view) pair and in a fixed
order, so that the same generator state gives the same views on any device and through
either application path (batched or per image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from mmcr.data.augment.config import AugmentConfig

__all__ = ["AugmentParams", "sample_crops", "sample_params", "wide_float"]

_RRC_ATTEMPTS = 10


@dataclass
class AugmentParams:
    """The random parameters of ``N`` images x ``K`` views (leading dims ``(N, K)``).

    Attributes:
        crop: int64 ``(N, K, 4)``: top, left, height, width of the crop in input pixels.
        flip: bool ``(N, K)``: flip horizontally.
        jitter: bool ``(N, K)``: apply colour jitter.
        jitter_factors: float32 ``(N, K, 4)``: brightness, contrast and saturation factors
            (1 = unchanged) and the hue shift in turns.
        jitter_order: int64 ``(N, K, 4)``: a permutation of 0..3 (brightness, contrast,
            saturation, hue), the order the jitter components are applied in.
        gray: bool ``(N, K)``: convert to grayscale.
        blur: bool ``(N, K)``: blur.
        blur_sigma: float32 ``(N, K)``: blur standard deviation in pixels.
        solarize: bool ``(N, K)``: solarize.
        image_size: ``(H, W)`` of the images the crops were drawn for.
    """

    crop: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    jitter_factors: torch.Tensor
    jitter_order: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    blur_sigma: torch.Tensor
    solarize: torch.Tensor
    image_size: tuple[int, int]

    @property
    def num_images(self) -> int:
        return int(self.flip.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.flip.shape[1])

    def to(self, device: torch.device | str) -> AugmentParams:
        """Move every tensor to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def wide_float(device: torch.device) -> torch.dtype:
    """float64 for index arithmetic on small tensors, where the device has it (not MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _per_view(probs: tuple[float, ...], num_views: int, device: torch.device) -> torch.Tensor:
    values = [probs[k % len(probs)] for k in range(num_views)]
    return torch.tensor(values, dtype=torch.float32, device=device)


def _uniform(
    low: float,
    high: float,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device)
    return low + (high - low) * u


def sample_crops(
    num: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Random-resized-crop boxes ``(num, 4)`` = (top, left, height, width), batched.

    Semantics of torchvision's ``RandomResizedCrop.get_params``: up to 10 attempts of an
    area fraction uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``; the
    first attempt that fits is used, with a uniform position; if none fits, a centre crop
    of the whole image with its aspect ratio clamped to ``ratio``. Sizes in pixels.
    """
    u = torch.rand((num, _RRC_ATTEMPTS, 4), generator=generator, device=device)
    u = u.to(wide_float(device))
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)
    w_sel = w.gather(1, first).squeeze(1)
    h_sel = h.gather(1, first).squeeze(1)
    # Position draws of the chosen attempt: an integer uniform in [0, H - h].
    top = torch.floor(u[..., 2].gather(1, first).squeeze(1) * (height - h_sel + 1))
    left = torch.floor(u[..., 3].gather(1, first).squeeze(1) * (width - w_sel + 1))
    top = torch.minimum(top, height - h_sel)
    left = torch.minimum(left, width - w_sel)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fb_w, fb_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fb_w, fb_h = round(height * ratio[1]), height
    else:
        fb_w, fb_h = width, height
    fb = torch.tensor(
        [(height - fb_h) // 2, (width - fb_w) // 2, fb_h, fb_w], dtype=u.dtype, device=device
    )
    boxes = torch.stack([top, left, h_sel, w_sel], dim=1)
    boxes = torch.where(fits.any(dim=1, keepdim=True), boxes, fb)
    return boxes.long()


def sample_params(
    config: AugmentConfig,
    num_images: int,
    num_views: int,
    image_size: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> AugmentParams:
    """Draw the random parameters of every (image, view) pair at once.

    Args:
        config: the augmentation recipe.
        num_images: N.
        num_views: K >= 1.
        image_size: ``(H, W)`` of the input images in pixels.
        generator: random source; the same seed gives the same parameters. Draws happen on
            the generator's device.
        device: device of the returned tensors (default: the generator's, else CPU).

    Returns:
        An :class:`AugmentParams` with leading dims ``(N, K)``.
    """
    if not isinstance(num_views, int) or num_views < 1:
        raise ValueError(f"num_views must be an int >= 1, got {num_views!r}")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    height, width = int(image_size[0]), int(image_size[1])
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    draw_device = generator.device if generator is not None else torch.device(device or "cpu")
    n, k = num_images, num_views
    m = n * k

    def coin(name: str) -> torch.Tensor:
        p = _per_view(config.view_probabilities(name), k, draw_device)
        return torch.rand((n, k), generator=generator, device=draw_device) < p

    # The order of the draws below fixes which views a seed gives: do not reorder them.
    crop = sample_crops(
        m, height, width, config.crop_scale, config.crop_ratio, generator, draw_device
    ).reshape(n, k, 4)
    flip = coin("flip_p")
    jitter = coin("jitter_p")
    factors = torch.stack(
        [
            _uniform(max(0.0, 1.0 - s), 1.0 + s, (n, k), generator, draw_device)
            for s in (float(config.brightness), float(config.contrast), float(config.saturation))
        ]
        + [_uniform(-float(config.hue), float(config.hue), (n, k), generator, draw_device)],
        dim=-1,
    )
    order_keys = torch.rand((n, k, 4), generator=generator, device=draw_device)
    if config.jitter_random_order:
        order = torch.argsort(order_keys, dim=-1)
    else:
        order = torch.arange(4, device=draw_device).expand(n, k, 4).clone()
    gray = coin("gray_p")
    blur = coin("blur_p")
    sigma = _uniform(config.blur_sigma[0], config.blur_sigma[1], (n, k), generator, draw_device)
    sol = coin("solarize_p")
    params = AugmentParams(
        crop=crop,
        flip=flip,
        jitter=jitter,
        jitter_factors=factors,
        jitter_order=order,
        gray=gray,
        blur=blur,
        blur_sigma=sigma,
        solarize=sol,
        image_size=(height, width),
    )
    if device is not None and torch.device(device) != draw_device:
        params = params.to(device)
    return params
