"""The per-image reference path of the multi-view augmentation: the oracle of the batched path.

:func:`augment_one` applies the parameters of one (image, view) pair with plain
single-image operations; the tests check that :func:`mmcr.data.apply_params` gives the same
result for the same parameters, and ``benchmarks/augment_speed.py`` times it as the
per-image pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcr.data import AugmentConfig, AugmentParams
from mmcr.data.augment.ops import (
    BRIGHTNESS,
    CONTRAST,
    HUE,
    SATURATION,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_kernel1d,
    jitter_enabled,
    rgb_to_grayscale,
    solarize,
)
from mmcr.data.augment.pixels import check_images, norm_stats, to_unit_float

__all__ = ["augment_one"]

_JITTER_OPS = {
    BRIGHTNESS: adjust_brightness,
    CONTRAST: adjust_contrast,
    SATURATION: adjust_saturation,
    HUE: adjust_hue,
}


def augment_one(
    image: torch.Tensor,
    params: AugmentParams,
    config: AugmentConfig,
    index: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Apply the parameters of one (image, view) pair to one image: the reference path.

    Plain single-image operations: crop by slicing, ``F.interpolate`` (bilinear,
    ``align_corners=False``), ``torch.flip``, the colour ops on a batch of one in the
    view's order, a 2-D convolution with an explicit Gaussian kernel, ``torch.where``
    for solarize.

    Args:
        image: uint8 ``(C, H, W)`` or float in [0, 1].
        params: parameters from :func:`mmcr.data.sample_params`.
        config: the recipe.
        index: ``(n, k)``: which image and view of ``params`` to use.

    Returns:
        float32 ``(C, crop_size, crop_size)``, normalised.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor of shape (C, H, W), got {shape}")
    check_images(image.unsqueeze(0))
    n, k = index
    size = config.crop_size
    x = to_unit_float(image, "image")
    c = x.shape[0]
    top, left, h, w = (int(v) for v in params.crop[n, k].tolist())
    crop = x[:, top : top + h, left : left + w]
    out = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)
    if bool(params.flip[n, k]):
        out = torch.flip(out, dims=[-1])
    if bool(params.jitter[n, k]):
        enabled = jitter_enabled(config, c)
        order = params.jitter_order[n, k].tolist() if config.jitter_random_order else range(4)
        for op in order:
            if op in enabled:
                out = _JITTER_OPS[op](out, float(params.jitter_factors[n, k, op]))
    if c == 3 and bool(params.gray[n, k]):
        out = rgb_to_grayscale(out).expand(1, 3, size, size)
    if bool(params.blur[n, k]):
        kernel_size = int(config.blur_kernel or 3)
        radius = kernel_size // 2
        k1 = gaussian_kernel1d(params.blur_sigma[n, k].reshape(1).to(out), kernel_size)[0]
        kernel2d = torch.outer(k1, k1).expand(c, 1, kernel_size, kernel_size)
        padded = F.pad(out, (radius, radius, radius, radius), mode="reflect")
        out = F.conv2d(padded, kernel2d, groups=c)
    if bool(params.solarize[n, k]):
        out = solarize(out, config.solarize_threshold)
    stats = norm_stats(config, c, 0, 3, out)
    result = out[0]
    if stats is not None:
        result = (result - stats[0]) / stats[1]
    return result
