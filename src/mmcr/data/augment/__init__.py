"""Batched multi-view augmentation: K random views of every image, on the input's device.

The pipeline, per view (the order of the SimCLR / Barlow Twins family):

1. random resized crop to ``crop_size`` (rejection-sampled scale and aspect ratio, as in
   torchvision's ``RandomResizedCrop``; bilinear without antialiasing, so crops much
   larger than ``crop_size`` alias a little, as with ``grid_sample``-based GPU pipelines),
2. horizontal flip,
3. colour jitter (brightness, contrast, saturation, hue; in a random order per view),
4. grayscale (ITU-R 601: 0.299 R + 0.587 G + 0.114 B),
5. Gaussian blur (per-view sigma, fixed odd kernel, reflect padding),
6. solarize (``x -> 1 - x`` where ``x >= threshold``),
7. per-channel normalisation ``(x - mean) / std``.

The modules, in the order of the flow:

- :mod:`~mmcr.data.augment.config`: :class:`AugmentConfig`, the recipe;
  :mod:`~mmcr.data.augment.presets`: the named recipes, :func:`preset`.
- :mod:`~mmcr.data.augment.sampling`: :func:`sample_params` draws the random parameters
  once per (image, view) into an :class:`AugmentParams`.
- :mod:`~mmcr.data.augment.ops`: the colour and filter operations, pure tensor functions.
- :mod:`~mmcr.data.augment.batched`: :func:`apply_params` applies the parameters to the
  whole batch (one ``grid_sample`` for crop + flip of all views, in-place colour ops on
  contiguous slices of views sorted by the ops they get, one grouped convolution per axis
  for blur); :mod:`~mmcr.data.augment.multiview`: :class:`MultiViewAugment`, the module.
- :mod:`~mmcr.data.augment.plain`: :func:`plain_view`, the deterministic evaluation view.

For 1-channel images (Fashion-MNIST, digits) saturation, hue and grayscale are no-ops.

>>> import torch
>>> from mmcr.data import MultiViewAugment, preset
>>> augment = MultiViewAugment(preset("cifar"))
>>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
>>> views = augment(images, num_views=4, generator=torch.Generator().manual_seed(0))
>>> views.shape                                    # (N, K, C, crop, crop), float32
torch.Size([8, 4, 3, 32, 32])
"""

from mmcr.data.augment.batched import apply_params
from mmcr.data.augment.config import AugmentConfig, Probability
from mmcr.data.augment.multiview import MultiViewAugment
from mmcr.data.augment.ops import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    gaussian_kernel1d,
    rgb_to_grayscale,
    solarize,
)
from mmcr.data.augment.plain import plain_view
from mmcr.data.augment.presets import PRESETS, preset, preset_names
from mmcr.data.augment.sampling import AugmentParams, sample_params

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "MultiViewAugment",
    "Probability",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_params",
    "gaussian_blur",
    "gaussian_kernel1d",
    "plain_view",
    "preset",
    "preset_names",
    "rgb_to_grayscale",
    "sample_params",
    "solarize",
]
