"""Synthetic class-structured images, generated from a seed: the data of smoke tests.

The registered ``"synthetic"`` data set has 3 channels, 10 classes and side
``image_size or 32``; ``load_dataset``'s ``size`` sets the number of train images (default
2000; the test split has ``max(1, size // 4)``, default 500) and its ``seed`` the images
(the train split is stream 0, the test split stream 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcr.data.dataset import ImageDataset
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["SYNTHETIC", "load_synthetic", "synthetic_dataset"]

_CHANNELS, _SIZE, _NUM_CLASSES = 3, 32, 10
_TRAIN_SIZE, _TEST_SIZE = 2000, 500


def synthetic_dataset(
    n: int = 1000,
    channels: int = 3,
    size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
    *,
    stream: int = 0,
) -> ImageDataset:
    """Random uint8 images with class structure, for smoke tests.

    Each class has a smooth random prototype (a 4x4 pattern upsampled to ``size``); an
    image is its class prototype plus per-pixel noise, so a model can learn something.

    Args:
        n: number of images.
        channels: colour channels C.
        size: side length in pixels.
        num_classes: number of classes; labels are balanced (``i % num_classes``), shuffled.
        seed: seeds the class prototypes (shared by all streams of the same seed).
        stream: selects an independent sample of images from the same prototypes (the
            ``"train"`` split uses 0, ``"test"`` 1).

    Returns:
        An :class:`ImageDataset` of ``n`` images of shape ``(channels, size, size)``.
    """
    if n < 0 or channels < 1 or size < 1 or num_classes < 1:
        raise ValueError(
            "synthetic_dataset expects n >= 0 and channels, size, num_classes >= 1, got "
            f"n={n}, channels={channels}, size={size}, num_classes={num_classes}"
        )
    proto_gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand((num_classes, channels, 4, 4), generator=proto_gen)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    sample_gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * (stream + 1))
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    labels = labels[torch.randperm(n, generator=sample_gen)]
    noise = 0.15 * torch.randn((n, channels, size, size), generator=sample_gen)
    images = (prototypes[labels] + noise).clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return ImageDataset(
        images=images,
        labels=labels,
        num_classes=num_classes,
        name="synthetic",
        classes=[f"class_{c}" for c in range(num_classes)],
    )


_STREAMS = {"train": 0, "test": 1, "unlabeled": 2}


def load_synthetic(request: DatasetRequest) -> ImageDataset:
    """``size`` train images (stream 0), or ``max(1, size // 4)`` test (stream 1) or unlabelled
    (stream 2, labels -1, like STL-10's extra split) images."""
    split, size = request.split, request.size
    if split == "train":
        n = _TRAIN_SIZE if size is None else size
    else:
        n = _TEST_SIZE if size is None else max(1, size // 4)
    data = synthetic_dataset(
        n=n,
        channels=_CHANNELS,
        size=request.image_size or _SIZE,
        num_classes=_NUM_CLASSES,
        seed=request.seed,
        stream=_STREAMS[split],
    )
    if split == "unlabeled":
        data.labels = torch.full_like(data.labels, -1)
    return data


SYNTHETIC = DatasetInfo(
    "synthetic",
    _CHANNELS,
    _SIZE,
    _NUM_CLASSES,
    tuple(_STREAMS),
    "random class-structured uint8 images",
    augment="synthetic",
    loader=load_synthetic,
    class_names=tuple(f"class_{c}" for c in range(_NUM_CLASSES)),
)
