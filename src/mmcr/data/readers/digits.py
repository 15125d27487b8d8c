"""scikit-learn's digits: 1,797 images of 1 x 8 x 8 pixels, always present (the data for fast tests).

Split once, stratified with a fixed seed, into 1,497 train and 300 test images.
"""

from __future__ import annotations

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset, stratified_split
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["DIGITS", "load_digits"]

_DIGITS_TEST_SIZE = 300
_DIGITS_SPLIT_SEED = 0


def load_digits(request: DatasetRequest) -> ImageDataset:
    """Digits ``"train"`` or ``"test"``: uint8 ``(N, 1, 8, 8)`` (0-255), labels 0-9."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    # Values are counts 0-16 of set pixels in 4x4 blocks: map 16 -> 255.
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = torch.from_numpy(pixels.astype(np.uint8)).unsqueeze(1).contiguous()
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    generator = torch.Generator().manual_seed(_DIGITS_SPLIT_SEED)
    train_idx, test_idx = stratified_split(labels, _DIGITS_TEST_SIZE, generator)
    index = train_idx if request.split == "train" else test_idx
    return ImageDataset(
        images=images[index],
        labels=labels[index],
        num_classes=10,
        name=request.info.name,
        classes=[str(d) for d in range(10)],
    )


DIGITS = DatasetInfo(
    "digits",
    1,
    8,
    10,
    ("train", "test"),
    "scikit-learn load_digits (1797 8x8 digits)",
    augment="digits",
    loader=load_digits,
    class_names=tuple(str(d) for d in range(10)),
)
