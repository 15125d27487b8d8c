"""Named augmentation recipes, one per data set (and ``"cifar"``, ``"imagenet"``).

A preset is looked up by its name, or by the name or an alias of a registered data set,
which gives that data set's default preset (:attr:`~mmcr.data.DatasetInfo.augment`); both
spellings go through the registry's one normaliser, so ``"CIFAR_10"`` and ``"cifar-10"``
are ``"cifar10"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mmcr.data.augment.config import AugmentConfig
from mmcr.data.registry import dataset_names, find_dataset, normalise_name

__all__ = ["PRESETS", "preset", "preset_names"]

_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
# Commonly quoted STL-10 statistics (approximate; the labelled and unlabelled splits differ
# slightly); normalisation only needs to be roughly right.
_STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Measured on the training sets as loaded by mmcr.data (uint8, / 255).
_FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
_DIGITS_STATS = ((0.3053,), (0.3759,))


_Stats = tuple[tuple[float, ...], tuple[float, ...]]


def _cifar(stats: _Stats) -> AugmentConfig:
    # The reference code's CIFAR views: RRC(32, 0.08-1), flip, jitter(0.4, 0.4, 0.4, 0.1) p 0.8, gray 0.2.
    return AugmentConfig(crop_size=32, mean=stats[0], std=stats[1])


def _grayscale(
    crop_size: int, crop_scale: tuple[float, float], flip_p: float, stats: _Stats
) -> AugmentConfig:
    # One channel: of the colour jitter only brightness and contrast mean anything, and
    # there is no colour to drop, so saturation, hue and gray_p are off.
    return AugmentConfig(
        crop_size=crop_size,
        crop_scale=crop_scale,
        flip_p=flip_p,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        gray_p=0.0,
        mean=stats[0],
        std=stats[1],
    )


#: Preset name -> factory of its default configuration.
PRESETS: dict[str, Callable[[], AugmentConfig]] = {
    # Fashion-MNIST (28 px, 1 channel): clothes survive moderate crops and mirroring.
    # Scale 0.2-1 (not 0.08) because at 28 px an 8 % crop is a 8x8 patch with almost
    # nothing left of the garment.
    "fashion-mnist": lambda: _grayscale(28, (0.2, 1.0), flip_p=0.5, stats=_FASHION_MNIST_STATS),
    # Digits (8 px, 1 channel): no flips (a mirrored 2 or 7 is not a digit), mild crops.
    "digits": lambda: _grayscale(8, (0.5, 1.0), flip_p=0.0, stats=_DIGITS_STATS),
    "cifar": lambda: _cifar(_CIFAR10_STATS),
    "cifar10": lambda: _cifar(_CIFAR10_STATS),
    "cifar100": lambda: _cifar(_CIFAR100_STATS),
    # STL-10 as the reference code trains it: 64 px crops of the 96 px images, scale 0.2-1.
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
    # Emoji glyphs (rendered, 3 channels): no flips (a mirrored arrow points the other way)
    # and no hue jitter or grey (a red heart and a blue heart are different emoji).
    "emoji": lambda: AugmentConfig(
        crop_size=32,
        crop_scale=(0.4, 1.0),
        flip_p=0.0,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.0,
        gray_p=0.0,
        mean=(0.5, 0.5, 0.5),
        std=(0.3, 0.3, 0.3),
    ),
    # Synthetic smoke-test images (3 channels, 32 px, values spread around 0.5).
    "synthetic": lambda: AugmentConfig(crop_size=32, mean=(0.5, 0.5, 0.5), std=(0.3, 0.3, 0.3)),
}


def preset_names() -> tuple[str, ...]:
    """Every name :func:`preset` accepts (aliases aside): the presets and the data sets."""
    return tuple(sorted(set(PRESETS) | set(dataset_names())))


def preset(name: str, crop_size: int | None = None) -> AugmentConfig:
    """Return the augmentation recipe of a data set.

    Args:
        name: a preset, ``"fashion-mnist"``, ``"digits"``, ``"cifar"`` (= ``"cifar10"``),
            ``"cifar100"``, ``"stl10"``, ``"imagenet"`` or ``"synthetic"``, or the name or
            alias of a registered data set (its default preset, e.g. ``"imagefolder"`` ->
            ``"imagenet"``).
        crop_size: override the preset's output size in pixels (the blur kernel follows
            it unless the preset fixes one).

    Returns:
        A fresh :class:`AugmentConfig`; edit it with ``dataclasses.replace``.
    """
    key = normalise_name(name)
    if key not in PRESETS:
        info = find_dataset(key)
        if info is not None:
            key = info.augment
    factory = PRESETS.get(key)
    if factory is None:
        raise ValueError(f"unknown augmentation preset {name!r}; valid: {', '.join(preset_names())}")
    config = factory()
    if crop_size is not None:
        config = replace(config, crop_size=crop_size, blur_kernel=None)
    return config
