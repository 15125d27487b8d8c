"""The data layer: data-set readers behind one registry, and batched multi-view augmentation.

Readers (:mod:`mmcr.data.readers`, one per format, registered in :mod:`mmcr.data.registry`)
load a whole split into memory as uint8 ``(N, C, H, W)`` images (:mod:`mmcr.data.dataset`),
each called with the one :class:`DatasetRequest` that :func:`load_dataset` builds;
:class:`MultiViewAugment` (:mod:`mmcr.data.augment`) turns a batch into K augmented views
``(N, K, C, crop, crop)`` on the batch's device, and :func:`plain_view` gives the
deterministic evaluation view ``(N, C, crop, crop)``. Paired image-text data sets
(:mod:`mmcr.data.paired`: ``"emoji"``, ``"csv"``) are in the same registry, and
:func:`load_paired` reads their images with a list of captions per image.

>>> from mmcr.data import MultiViewAugment, load_dataset, plain_view, preset
>>> train = load_dataset("digits", "train")
>>> views = MultiViewAugment(preset("digits"))(train.images[:16], num_views=2)
>>> views.shape
torch.Size([16, 2, 1, 8, 8])
>>> plain_view(train.images[:16], preset("digits")).shape
torch.Size([16, 1, 8, 8])
"""

# Importing mmcr.data.readers (below, for read_idx) registers the built-in data sets.
from mmcr.data.augment import (
    PRESETS,
    AugmentConfig,
    AugmentParams,
    MultiViewAugment,
    apply_params,
    plain_view,
    preset,
    preset_names,
    sample_params,
)
from mmcr.data.dataset import ImageDataset, train_val_split
from mmcr.data.paired import PairedDataset, PairedOptions, load_paired, register_paired_dataset
from mmcr.data.readers.csv_pairs import CSV_PAIRS, load_csv_pairs
from mmcr.data.readers.emoji import EMOJI, load_emoji_pairs
from mmcr.data.readers.idx import read_idx
from mmcr.data.readers.search import DATA_DIR_ENV
from mmcr.data.readers.synthetic import synthetic_dataset
from mmcr.data.registry import (
    DATASETS,
    DatasetInfo,
    DatasetRequest,
    Loader,
    dataset_info,
    dataset_names,
    load_dataset,
    register_dataset,
)

#: The paired image-text data sets registered when :mod:`mmcr.data` is imported.
PAIRED_DATASETS = ((EMOJI, load_emoji_pairs), (CSV_PAIRS, load_csv_pairs))
for _info, _paired in PAIRED_DATASETS:
    register_paired_dataset(_info, _paired)

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "PAIRED_DATASETS",
    "PRESETS",
    "AugmentConfig",
    "AugmentParams",
    "DatasetInfo",
    "DatasetRequest",
    "ImageDataset",
    "Loader",
    "MultiViewAugment",
    "PairedDataset",
    "PairedOptions",
    "apply_params",
    "dataset_info",
    "dataset_names",
    "load_dataset",
    "load_paired",
    "plain_view",
    "preset",
    "preset_names",
    "read_idx",
    "register_dataset",
    "register_paired_dataset",
    "sample_params",
    "synthetic_dataset",
    "train_val_split",
]
