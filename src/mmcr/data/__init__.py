"""The data layer: dataset readers and batched multi-view augmentation.

Readers (:mod:`mmcr.data.datasets`) load a whole split into memory as uint8
``(N, C, H, W)`` images; :class:`MultiViewAugment` (:mod:`mmcr.data.views`) turns a
batch into K augmented views ``(N, K, C, crop, crop)`` on the batch's device.

>>> from mmcr.data import MultiViewAugment, load_dataset, preset
>>> train = load_dataset("digits", "train")
>>> views = MultiViewAugment(preset("digits"))(train.images[:16], num_views=2)
>>> views.shape
torch.Size([16, 2, 1, 8, 8])
"""

from mmcr.data.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetInfo,
    ImageDataset,
    dataset_info,
    load_dataset,
    read_idx,
    synthetic_dataset,
    train_val_split,
)
from mmcr.data.views import (
    PRESETS,
    AugmentConfig,
    AugmentParams,
    MultiViewAugment,
    apply_params,
    augment_one,
    preset,
    sample_params,
)

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "DatasetInfo",
    "ImageDataset",
    "MultiViewAugment",
    "apply_params",
    "augment_one",
    "dataset_info",
    "load_dataset",
    "preset",
    "read_idx",
    "sample_params",
    "synthetic_dataset",
    "train_val_split",
]
