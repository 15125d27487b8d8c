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

Random parameters are drawn once per (image, view) by :func:`sample_params` into an
:class:`AugmentParams`, then applied either batched (:func:`apply_params`: one
``grid_sample`` for crop + flip of all views, in-place colour ops on contiguous slices
of views sorted by the ops they get, one grouped convolution per axis for blur) or one
image at a time (:func:`augment_one`, the plain reference
path: slicing, ``F.interpolate``, ``torch.flip``, a 2-D convolution). Both give the same
result for the same parameters, which is what the tests check.

For 1-channel images (Fashion-MNIST, digits) saturation, hue and grayscale are no-ops.

>>> import torch
>>> from mmcr.data import MultiViewAugment, preset
>>> augment = MultiViewAugment(preset("cifar"))
>>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
>>> views = augment(images, num_views=4, generator=torch.Generator().manual_seed(0))
>>> views.shape                                    # (N, K, C, crop, crop), float32
torch.Size([8, 4, 3, 32, 32])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "MultiViewAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_params",
    "augment_one",
    "gaussian_blur",
    "gaussian_kernel1d",
    "preset",
    "rgb_to_grayscale",
    "sample_params",
    "solarize",
]

#: A probability, or one probability per view position (view k uses entry k % len).
Probability = float | tuple[float, ...]

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_RRC_ATTEMPTS = 10
# Index of each colour-jitter op in AugmentParams.jitter_factors / jitter_order.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3
_PROBABILITY_FIELDS = ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p")


def _as_pair(value: object, name: str) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"AugmentConfig.{name} must be a pair (low, high), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not 0.0 < low <= high:
        raise ValueError(f"AugmentConfig.{name} must satisfy 0 < low <= high, got {value!r}")
    return low, high


@dataclass
class AugmentConfig:
    """Parameters of the multi-view augmentation. Pixel values are in [0, 1].

    Attributes:
        crop_size: output side length in pixels.
        crop_scale: range of the crop area as a fraction of the image area.
        crop_ratio: range of the crop aspect ratio width / height (sampled log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter_p: probability of applying colour jitter (all four components at once).
        brightness, contrast, saturation: jitter strengths s; factors are drawn uniformly
            from ``[max(0, 1 - s), 1 + s]`` (0 disables the component).
        hue: hue shift range ``[-hue, hue]`` in turns of the colour wheel, ``0 <= hue <= 0.5``.
        jitter_random_order: apply the four jitter components in a random order per view
            (torchvision's behaviour); if False, the fixed order brightness, contrast,
            saturation, hue.
        gray_p: probability of converting to grayscale (3 channels kept).
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's standard deviation in pixels (of the crop).
        blur_kernel: odd kernel size in pixels; ``None`` = the odd number nearest 10 % of
            ``crop_size`` (at least 3), e.g. 3 at 32 px and 23 at 224 px.
        solarize_p: probability of solarizing.
        solarize_threshold: pixels ``>= threshold`` are mapped to ``1 - x``.
        mean, std: per-channel normalisation (length 1 or C); ``None`` leaves values in [0, 1].

    Every probability (``flip_p``, ``jitter_p``, ``gray_p``, ``blur_p``, ``solarize_p``) may
    be a tuple with one value per view position, cycling: view k uses entry
    ``k % len``. The Barlow Twins / BYOL pair is ``blur_p=(1.0, 0.1)``,
    ``solarize_p=(0.0, 0.2)``.
    """

    crop_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: Probability = 0.5
    jitter_p: Probability = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_random_order: bool = True
    gray_p: Probability = 0.2
    blur_p: Probability = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None
    solarize_p: Probability = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.crop_size, int) or self.crop_size < 1:
            raise ValueError(f"crop_size must be a positive int, got {self.crop_size!r}")
        self.crop_scale = _as_pair(self.crop_scale, "crop_scale")
        self.crop_ratio = _as_pair(self.crop_ratio, "crop_ratio")
        self.blur_sigma = _as_pair(self.blur_sigma, "blur_sigma")
        for name in _PROBABILITY_FIELDS:
            value = getattr(self, name)
            probs = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            if not probs or not all(0.0 <= float(p) <= 1.0 for p in probs):
                raise ValueError(
                    f"AugmentConfig.{name} must be a probability in [0, 1] or a non-empty "
                    f"tuple of them (one per view position), got {value!r}"
                )
            if isinstance(value, (tuple, list)):
                setattr(self, name, tuple(float(p) for p in probs))
            else:
                setattr(self, name, float(value))
        for name in ("brightness", "contrast", "saturation"):
            if float(getattr(self, name)) < 0.0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.hue) <= 0.5:
            raise ValueError(f"AugmentConfig.hue must lie in [0, 0.5], got {self.hue}")
        if not 0.0 <= float(self.solarize_threshold) <= 1.0:
            raise ValueError(
                "AugmentConfig.solarize_threshold must lie in [0, 1], got "
                f"{self.solarize_threshold}"
            )
        if self.blur_kernel is None:
            k = max(3, round(0.1 * self.crop_size))
            self.blur_kernel = k if k % 2 == 1 else k + 1
        if (
            not isinstance(self.blur_kernel, int)
            or self.blur_kernel < 1
            or self.blur_kernel % 2 == 0
        ):
            raise ValueError(
                f"AugmentConfig.blur_kernel must be an odd positive int, got {self.blur_kernel!r}"
            )
        if max(self.view_probabilities("blur_p")) > 0 and self.blur_kernel // 2 >= self.crop_size:
            raise ValueError(
                f"AugmentConfig.blur_kernel {self.blur_kernel} is too large for crop_size "
                f"{self.crop_size}: reflect padding needs blur_kernel // 2 < crop_size"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("AugmentConfig.mean and std must be given together (or both None)")
        if self.mean is not None and self.std is not None:
            self.mean = tuple(float(m) for m in self.mean)
            self.std = tuple(float(s) for s in self.std)
            if not self.mean or len(self.mean) != len(self.std):
                raise ValueError(
                    f"AugmentConfig.mean and std must have the same non-zero length, got "
                    f"{len(self.mean)} and {len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise ValueError(f"AugmentConfig.std must be positive, got {self.std}")

    def view_probabilities(self, name: str) -> tuple[float, ...]:
        """The probability field ``name`` as a tuple (one entry per view position, cycling)."""
        if name not in _PROBABILITY_FIELDS:
            raise ValueError(
                f"{name!r} is not a probability field; expected one of {_PROBABILITY_FIELDS}"
            )
        value = getattr(self, name)
        return tuple(value) if isinstance(value, tuple) else (float(value),)

    def to_dict(self) -> dict[str, object]:
        """Plain values (tuples as lists) for logging and saving beside a checkpoint."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# --------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------

_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
# Commonly quoted STL-10 statistics (approximate; the labelled and unlabelled splits differ
# slightly); normalisation only needs to be roughly right.
_STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Measured on the training sets as loaded by mmcr.data (uint8, / 255).
_FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
_DIGITS_STATS = ((0.3053,), (0.3759,))


def _cifar(stats: tuple[tuple[float, ...], tuple[float, ...]]) -> AugmentConfig:
    # REFERENCE.md: RRC(32, 0.08-1), flip, jitter(0.4, 0.4, 0.4, 0.1) p 0.8, gray 0.2.
    return AugmentConfig(crop_size=32, mean=stats[0], std=stats[1])


#: Preset name -> factory of its default configuration.
PRESETS: dict[str, Callable[[], AugmentConfig]] = {
    # Fashion-MNIST (28 px, 1 channel): clothes survive moderate crops and mirroring; only
    # brightness and contrast mean anything in grayscale. Scale 0.2-1 (not 0.08) because
    # at 28 px an 8 % crop is a 8x8 patch with almost nothing left of the garment.
    "fashion-mnist": lambda: AugmentConfig(
        crop_size=28,
        crop_scale=(0.2, 1.0),
        flip_p=0.5,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        gray_p=0.0,
        mean=_FASHION_MNIST_STATS[0],
        std=_FASHION_MNIST_STATS[1],
    ),
    # Digits (8 px, 1 channel): no flips (a mirrored 2 or 7 is not a digit), mild crops.
    "digits": lambda: AugmentConfig(
        crop_size=8,
        crop_scale=(0.5, 1.0),
        flip_p=0.0,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        gray_p=0.0,
        mean=_DIGITS_STATS[0],
        std=_DIGITS_STATS[1],
    ),
    "cifar": lambda: _cifar(_CIFAR10_STATS),
    "cifar10": lambda: _cifar(_CIFAR10_STATS),
    "cifar100": lambda: _cifar(_CIFAR100_STATS),
    # STL-10 (REFERENCE.md): 64 px crops of the 96 px images, scale 0.2-1.
    "stl10": lambda: AugmentConfig(
        crop_size=64, crop_scale=(0.2, 1.0), mean=_STL10_STATS[0], std=_STL10_STATS[1]
    ),
    # ImageNet, the Barlow Twins pair: blur always on view 0 and with p 0.1 on view 1,
    # solarize never on view 0 and with p 0.2 on view 1 (alternating for K > 2).
    "imagenet": lambda: AugmentConfig(
        crop_size=224,
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        gray_p=0.2,
        blur_p=(1.0, 0.1),
        blur_sigma=(0.1, 2.0),
        solarize_p=(0.0, 0.2),
        mean=_IMAGENET_STATS[0],
        std=_IMAGENET_STATS[1],
    ),
    # Synthetic smoke-test images (3 channels, 32 px, values spread around 0.5).
    "synthetic": lambda: AugmentConfig(crop_size=32, mean=(0.5,), std=(0.3,)),
}


def preset(name: str, crop_size: int | None = None) -> AugmentConfig:
    """Return the augmentation recipe of a data set.

    Args:
        name: ``"fashion-mnist"``, ``"digits"``, ``"cifar"`` (= ``"cifar10"``),
            ``"cifar100"``, ``"stl10"``, ``"imagenet"`` or ``"synthetic"``.
        crop_size: override the preset's output size in pixels (the blur kernel follows
            it unless the preset fixes one).

    Returns:
        A fresh :class:`AugmentConfig`; edit it with ``dataclasses.replace``.
    """
    key = name.strip().lower().replace("_", "-")
    key = {
        "fashionmnist": "fashion-mnist",
        "cifar-10": "cifar10",
        "cifar-100": "cifar100",
        "stl-10": "stl10",
    }.get(key, key)
    factory = PRESETS.get(key)
    if factory is None:
        raise ValueError(f"unknown augmentation preset {name!r}; expected one of {sorted(PRESETS)}")
    config = factory()
    if crop_size is not None:
        config = replace(config, crop_size=crop_size, blur_kernel=None)
    return config


# --------------------------------------------------------------------------------------
# Random parameters
# --------------------------------------------------------------------------------------


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


def _wide_float(device: torch.device) -> torch.dtype:
    """float64 for index arithmetic on small tensors, where the device has it (not MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _sample_crops(
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
    of the whole image with its aspect ratio clamped to ``ratio``.
    """
    u = torch.rand((num, _RRC_ATTEMPTS, 4), generator=generator, device=device)
    u = u.to(_wide_float(device))
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

    crop = _sample_crops(
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


# --------------------------------------------------------------------------------------
# Colour operations on batches (B, C, H, W) in [0, 1], one factor per sample (B,)
#
# The underscore versions work in place (the fast path avoids allocating full-size
# temporaries, which on CPU cost as much as the arithmetic); the public versions copy.
# --------------------------------------------------------------------------------------


def _per_sample(factor: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return f.reshape(-1, 1, 1, 1) if f.ndim else f


def _gray_plane(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``(B, H, W)`` of RGB images ``(B, 3, H, W)`` (a new tensor)."""
    gray = x[:, 0] * _GRAY_WEIGHTS[0]
    gray.add_(x[:, 1], alpha=_GRAY_WEIGHTS[1]).add_(x[:, 2], alpha=_GRAY_WEIGHTS[2])
    return gray


def _brightness_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    # Factors are >= 0, so only the upper bound can be crossed.
    return x.mul_(_per_sample(factor, x)).clamp_(max=1.0)


def _contrast_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    f = _per_sample(factor, x)
    channel_means = x.mean(dim=(-2, -1))  # (B, C); the gray mean is linear in them
    if x.shape[1] == 3:
        weights = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
        mean = (channel_means * weights).sum(dim=1)
    else:
        mean = channel_means.mean(dim=1)
    offset = (1.0 - f) * mean.reshape(-1, 1, 1, 1)
    return x.mul_(f).add_(offset).clamp_(0.0, 1.0)


def _saturation_(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    f = _per_sample(factor, x)
    gray = _gray_plane(x).unsqueeze(1).mul_(1.0 - f)
    return x.mul_(f).add_(gray).clamp_(0.0, 1.0)


def _hue_(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
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


def _grayscale_(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return x.copy_(_gray_plane(x).unsqueeze(1).expand_as(x))


def _solarize_(x: torch.Tensor, threshold: float) -> torch.Tensor:
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
    return _brightness_(x.clone(), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend ``(B, C, H, W)`` images with their mean gray level: ``f x + (1 - f) mean``, clamped.

    ``mean`` is the mean over the whole image of its ITU-R 601 grayscale (of the single
    channel for 1-channel images).
    """
    return _contrast_(x.clone(), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend RGB images ``(B, 3, H, W)`` with their grayscale: ``f x + (1 - f) gray``, clamped.

    A no-op for 1-channel images.
    """
    return _saturation_(x.clone(), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate the hue of RGB images ``(B, 3, H, W)`` by ``shift`` turns (in [-0.5, 0.5]).

    Equal to converting to HSV, adding ``shift`` to the hue modulo 1 and converting back
    (value and saturation unchanged). A no-op for 1-channel images.
    """
    return _hue_(x.clone(), shift)


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


_JITTER_OPS_ = {
    _BRIGHTNESS: _brightness_,
    _CONTRAST: _contrast_,
    _SATURATION: _saturation_,
    _HUE: _hue_,
}


def _jitter_enabled(config: AugmentConfig, channels: int) -> list[int]:
    """Jitter components that change anything for this config and channel count."""
    enabled = []
    if config.brightness > 0:
        enabled.append(_BRIGHTNESS)
    if config.contrast > 0:
        enabled.append(_CONTRAST)
    if channels == 3 and config.saturation > 0:
        enabled.append(_SATURATION)
    if channels == 3 and config.hue > 0:
        enabled.append(_HUE)
    return enabled


# --------------------------------------------------------------------------------------
# Applying parameters
# --------------------------------------------------------------------------------------


def _to_unit_float(images: torch.Tensor, name: str = "images") -> torch.Tensor:
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


def _check_images(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 1 or 3 channels (shape (N, C, H, W)), got C = {images.shape[1]} "
            f"in shape {tuple(images.shape)}"
        )
    return images


def _norm_stats(
    config: AugmentConfig, channels: int, channel_dim: int, ndim: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
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


def _crop_grid(
    params: AugmentParams, size: int, device: torch.device, workspace: _Workspace | None = None
) -> torch.Tensor:
    """Sampling grid ``(N, K * size, size, 2)`` for crop + resize + flip of all views.

    Output pixel j of a crop (left, width) samples input x = left + (j + 0.5) width / size
    - 0.5, clamped to the crop, exactly as ``F.interpolate(crop, bilinear,
    align_corners=False)`` does; a flip reverses the sample positions.
    """
    height, width = params.image_size
    n, k = params.num_images, params.num_views
    crop = params.crop.to(device=device, dtype=_wide_float(device))
    top, left, h, w = crop.unbind(dim=-1)  # (N, K) each
    steps = torch.arange(size, dtype=crop.dtype, device=device) + 0.5
    xs = left[..., None] + (steps * (w / size)[..., None] - 0.5).clamp(min=0.0)
    xs = torch.minimum(xs, (left + w - 1.0)[..., None])
    ys = top[..., None] + (steps * (h / size)[..., None] - 0.5).clamp(min=0.0)
    ys = torch.minimum(ys, (top + h - 1.0)[..., None])
    flip = params.flip.to(device)[..., None]
    xs = torch.where(flip, xs.flip(-1), xs)
    # Pixel coordinate p -> normalised grid coordinate for align_corners=False.
    gx = ((2.0 * xs + 1.0) / width - 1.0).to(torch.float32)
    gy = ((2.0 * ys + 1.0) / height - 1.0).to(torch.float32)
    shape = (n, k, size, size, 2)
    if workspace is None:
        grid = torch.empty(shape, dtype=torch.float32, device=device)
    else:
        grid = workspace.get("grid", shape, torch.float32, device)
    grid[..., 0] = gx[:, :, None, :]
    grid[..., 1] = gy[:, :, :, None]
    return grid.view(n, k * size, size, 2)


class _Workspace:
    """Scratch tensors kept between calls, so that the CPU path does not pay for fresh
    memory (page faults, about a third of its time) on every batch; a tensor is reused
    when it is large enough. The lock serialises threads sharing one module; pickling
    and deep copies get an empty workspace."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self.lock = threading.Lock()

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != dtype
            or buffer.device != device
        ):
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]


def _apply_subset(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor], *args: torch.Tensor
) -> None:
    """``x[mask] = fn(x[mask], *(a[mask] for a in args))`` in place, for a bool mask ``(B,)``."""
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return
    if idx.numel() == mask.numel():
        x.copy_(fn(x, *args))
        return
    x.index_copy_(0, idx, fn(x.index_select(0, idx), *(a.index_select(0, idx) for a in args)))


def apply_params(
    images: torch.Tensor,
    params: AugmentParams,
    config: AugmentConfig,
    *,
    workspace: _Workspace | None = None,
) -> torch.Tensor:
    """Apply sampled parameters to a batch: the fast path.

    Crop, resize and flip of all N x K views are one ``grid_sample`` (the K views of an
    image are stacked along the grid's height, so the input is not repeated). Colour
    jitter then runs step by step: before each of its four steps the views are sorted by
    the component they get at that step, so each component runs in place on one
    contiguous slice with per-view factors. Grayscale, blur and solarize gather the views
    that get them, transform them and scatter them back. The first sort is folded into the
    copy from grid_sample's layout and the last one into the copy to the output.

    Args:
        images: uint8 ``(N, C, H, W)`` (0-255) or float in [0, 1], C in {1, 3}.
        params: from :func:`sample_params` for these N images and ``(H, W)``.
        config: the recipe the parameters were drawn for.
        workspace: scratch memory reused across calls (internal; MultiViewAugment passes
            its own on CPU). Results do not depend on it.

    Returns:
        float32 ``(N, K, C, crop_size, crop_size)``, normalised with ``config.mean/std``.
    """
    images = _check_images(images)
    n, c, height, width = images.shape
    if params.num_images != n or tuple(params.image_size) != (height, width):
        raise ValueError(
            f"params were drawn for {params.num_images} images of size {params.image_size}, "
            f"got {n} images of size {(height, width)}"
        )
    k, size = params.num_views, config.crop_size
    device = images.device
    if workspace is not None and images.dtype == torch.uint8:
        x = workspace.get("input", tuple(images.shape), torch.float32, device)
        x.copy_(images).div_(255.0)
    else:
        x = _to_unit_float(images)
    stats = _norm_stats(config, c, 1, 4, x)
    if n == 0:
        return x.new_zeros((0, k, c, size, size))
    p = params.to(device)
    m = n * k

    # All K views read the same image: stack them along the grid's height instead of
    # repeating the input K times.
    crops = F.grid_sample(
        x,
        _crop_grid(p, size, device, workspace),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    ).view(n, c, k, size, size)

    # Colour jitter, step by step: before step t the views are sorted by the component
    # they get at step t (4 = none), so each component runs in place on one contiguous
    # slice. That costs a gather per step but keeps the number of kernels (and of thread
    # pool wake-ups) independent of the 24 possible orders. The first gather is the copy
    # that turns grid_sample's (N, C, K, S, S) layout into one image per view anyway:
    # blocks of S*S pixels, one per (view, channel).
    enabled = torch.zeros(5, dtype=torch.bool, device=device)
    enabled[_jitter_enabled(config, c)] = True
    if config.jitter_random_order:
        digits = p.jitter_order.reshape(m, 4)
    else:
        digits = torch.arange(4, device=device).expand(m, 4)
    active = p.jitter.reshape(m, 1) & enabled[digits]
    step_ops = torch.where(active, digits, 4)  # (M, 4): component of view v at step t
    factors = p.jitter_factors.reshape(m, 4)

    order = torch.argsort(step_ops[:, 0], stable=True)  # sorted position -> view n * K + k
    channels = torch.arange(c, device=device)
    blocks = ((order // k)[:, None] * c + channels) * k + (order % k)[:, None]
    blocks_flat = blocks.reshape(-1)
    if workspace is None:
        work = crops.reshape(n * c * k, size * size).index_select(0, blocks_flat)
    else:
        work = workspace.get("work", (n * c * k, size * size), torch.float32, device)
        torch.index_select(crops.reshape(n * c * k, size * size), 0, blocks_flat, out=work)
    work = work.view(m, c, size, size)
    spare: torch.Tensor | None = None
    for step in range(4):
        ops_now = step_ops[order, step]
        if step > 0 and not bool((ops_now[1:] >= ops_now[:-1]).all()):
            resort = torch.argsort(ops_now, stable=True)
            if spare is None:
                spare = (
                    torch.empty_like(work)
                    if workspace is None
                    else workspace.get("spare", tuple(work.shape), torch.float32, device)
                )
            torch.index_select(work, 0, resort, out=spare)
            work, spare = spare, work
            order = order[resort]
            ops_now = ops_now[resort]
        counts = torch.bincount(ops_now, minlength=5).tolist()
        start = 0
        for op in range(4):
            if counts[op]:
                stop = start + counts[op]
                _JITTER_OPS_[op](work[start:stop], factors[order[start:stop], op])
                start = stop
    del spare

    # Grayscale, blur and solarize touch a subset each: gather, transform, scatter back.
    if c == 3:
        _apply_subset(work, p.gray.reshape(m)[order], _grayscale_)
    blur = p.blur.reshape(m)[order]
    if bool(blur.any()):
        sigma = p.blur_sigma.reshape(m)[order]
        kernel = int(config.blur_kernel or 3)
        _apply_subset(work, blur, lambda v, sd: gaussian_blur(v, sd, kernel), sigma)
    threshold = config.solarize_threshold
    _apply_subset(work, p.solarize.reshape(m)[order], lambda v: _solarize_(v, threshold))
    if stats is not None:
        work.sub_(stats[0]).div_(stats[1])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(m, device=device)
    # The crops are dead after the gather: reuse their memory for the output.
    out = crops.view(m, c * size * size)
    torch.index_select(work.view(m, c * size * size), 0, inverse, out=out)
    return out.view(n, k, c, size, size)


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
        params: parameters from :func:`sample_params`.
        config: the recipe.
        index: ``(n, k)``: which image and view of ``params`` to use.

    Returns:
        float32 ``(C, crop_size, crop_size)``, normalised.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor of shape (C, H, W), got {shape}")
    _check_images(image.unsqueeze(0))
    n, k = index
    size = config.crop_size
    x = _to_unit_float(image, "image")
    c = x.shape[0]
    top, left, h, w = (int(v) for v in params.crop[n, k].tolist())
    crop = x[:, top : top + h, left : left + w]
    out = F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)
    if bool(params.flip[n, k]):
        out = torch.flip(out, dims=[-1])
    if bool(params.jitter[n, k]):
        enabled = _jitter_enabled(config, c)
        order = params.jitter_order[n, k].tolist() if config.jitter_random_order else range(4)
        public = {
            _BRIGHTNESS: adjust_brightness,
            _CONTRAST: adjust_contrast,
            _SATURATION: adjust_saturation,
            _HUE: adjust_hue,
        }
        for op in order:
            if op in enabled:
                out = public[op](out, float(params.jitter_factors[n, k, op]))
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
    stats = _norm_stats(config, c, 0, 3, out)
    result = out[0]
    if stats is not None:
        result = (result - stats[0]) / stats[1]
    return result


class MultiViewAugment(torch.nn.Module):
    """Make K augmented views of every image of a batch, on the batch's device.

    On CPU the module keeps scratch tensors between calls (about three times the size of
    one output batch; :meth:`clear_workspace` frees them), because fresh memory costs
    page faults that take about a third of the time otherwise. It has no parameters and
    no state that a checkpoint needs.

    Args:
        config: the recipe, e.g. ``preset("cifar")``.

    Example:
        >>> augment = MultiViewAugment(preset("fashion-mnist"))
        >>> views = augment(images, num_views=2)    # (N, 2, 1, 28, 28) float32
    """

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        if not isinstance(config, AugmentConfig):
            raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
        self.config = config
        # CPU only: GPU allocators cache memory already.
        self._workspace = _Workspace()

    def sample_params(
        self,
        images: torch.Tensor,
        num_views: int,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw the parameters for ``images`` ``(N, C, H, W)``, on the images' device."""
        images = _check_images(images)
        return sample_params(
            self.config,
            images.shape[0],
            num_views,
            (images.shape[2], images.shape[3]),
            generator=generator,
            device=images.device,
        )

    def forward(
        self,
        images: torch.Tensor,
        num_views: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: uint8 ``(N, C, H, W)`` (0-255) or float in [0, 1], C in {1, 3}.
            num_views: K >= 1 views per image.
            generator: random source (may live on another device than the images; the
                parameters are drawn there and moved). Same seed -> same views.

        Returns:
            float32 ``(N, K, C, crop_size, crop_size)``, normalised with the config's
            mean and std.
        """
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an int >= 1, got {num_views!r}")
        params = self.sample_params(images, num_views, generator)
        if images.device.type != "cpu":
            return apply_params(images, params, self.config)
        with self._workspace.lock:
            return apply_params(images, params, self.config, workspace=self._workspace)

    def clear_workspace(self) -> None:
        """Free the scratch memory kept between calls on CPU (about 3x one output)."""
        self._workspace.clear()

    def extra_repr(self) -> str:
        return f"config={self.config}"
