"""Data read from disk as it is needed: the file index, decoding, DataLoader workers.

- :mod:`~mmcr.data.stream.index`: :func:`folder_index`, the cached list of an image
  folder's files and labels.
- :mod:`~mmcr.data.stream.decode`: :func:`decode_crops` (the K random-resized crops of one
  file, with JPEG draft decoding) and :func:`decode_square` (the evaluation view).
- :mod:`~mmcr.data.stream.cache`: :func:`decoded_cache`, splits decoded once into
  memory-mapped files shared by every rank and run.
- :mod:`~mmcr.data.stream.loader`: :class:`CropDataset` and :class:`SquareDataset` (what a
  worker reads), :func:`make_loader`, and :class:`PrecroppedAugment` (the rest of the
  augmentation, batched on the training device).
- :mod:`~mmcr.data.stream.shards`: webdataset shards, written (:func:`pack_shards`) and
  read split over ranks and workers (:class:`ShardStream`);
  :mod:`~mmcr.data.stream.shard_index`: :func:`shard_index`, the cached index of a split's
  shards; :mod:`~mmcr.data.stream.shard_loader`: :func:`shard_batches`, pretraining
  batches streamed from a :class:`ShardSplit`.
- :mod:`~mmcr.data.stream.paired_shards`: paired image-text shards (``<key>.txt``
  captions, one per line): :class:`PairedShards`, :func:`paired_shard_batches` (the same
  machinery, with each sample's captions) and :func:`write_paired_shards`.
"""

from mmcr.data.stream.cache import cache_entry, decoded_cache, read_entry
from mmcr.data.stream.decode import BadImageError, decode_crops, decode_square
from mmcr.data.stream.index import (
    CACHE_DIR_ENV,
    FileIndex,
    concat_indices,
    default_cache_dir,
    folder_index,
    write_atomic,
)
from mmcr.data.stream.loader import (
    CropDataset,
    LoaderOptions,
    PrecroppedAugment,
    SquareDataset,
    StreamedSplit,
    crop_generator,
    draw_crops,
    make_loader,
    stream_batches,
)
from mmcr.data.stream.paired_shards import PairedShards, paired_shard_batches, write_paired_shards
from mmcr.data.stream.shard_index import shard_index
from mmcr.data.stream.shard_loader import ShardSplit, shard_batches
from mmcr.data.stream.shards import ShardStream, pack_shards

#: The data sets that the streaming path reads (the others are read whole, or cached).
STREAMING_DATASETS = frozenset({"imagefolder", "webdataset"})

__all__ = [
    "CACHE_DIR_ENV",
    "STREAMING_DATASETS",
    "BadImageError",
    "CropDataset",
    "FileIndex",
    "LoaderOptions",
    "PairedShards",
    "PrecroppedAugment",
    "ShardSplit",
    "ShardStream",
    "SquareDataset",
    "StreamedSplit",
    "cache_entry",
    "concat_indices",
    "crop_generator",
    "decode_crops",
    "decode_square",
    "decoded_cache",
    "default_cache_dir",
    "draw_crops",
    "folder_index",
    "make_loader",
    "pack_shards",
    "paired_shard_batches",
    "read_entry",
    "shard_batches",
    "shard_index",
    "stream_batches",
    "write_atomic",
    "write_paired_shards",
]
