"""webdataset tar shards: ``root/<split>/*.tar`` (or ``root/*.tar`` for train), as ``mmcr data pack`` writes.

Each sample is an image member (``<key>.jpg``, ``.jpeg``, ``.png`` or ``.webp``) and its
class index in ``<key>.cls`` (-1 where absent); the class names come from
``classes.json`` beside the shards (or in ``root``), else they are the label numbers.
Read whole (the ``memory`` and ``cache`` loaders), every image is converted to RGB,
centre-cropped to a square and resized to ``image_size`` pixels (default 64), like an
image folder. Pretraining usually streams the shards instead (``loader = "stream"``, or
``auto`` over the memory budget; :mod:`mmcr.data.stream.shard_loader`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.readers.imagefolder import DEFAULT_SIZE
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["WEBDATASET", "load_shards"]


def load_shards(request: DatasetRequest) -> ImageDataset:
    """Every sample of ``request``'s split of shards, decoded: uint8 ``(N, 3, image_size, image_size)``."""
    # deferred: the streaming modules import the readers package, which registers this one
    from mmcr.data.stream.decode import decode_square
    from mmcr.data.stream.shard_index import shard_index

    if request.data_dir is None:
        raise ValueError(
            "the 'webdataset' reader needs data_dir (--data-dir): a folder of shards root/<split>/*.tar "
            "(or root/*.tar for the train split), written by mmcr data pack"
        )
    index = shard_index(Path(request.data_dir), request.split)
    side = request.image_size or DEFAULT_SIZE
    images = np.stack(
        [decode_square(index.source(i), side, 3, draft=False, name=index.name(i)) for i in range(len(index))]
    )
    shards = sorted({bytes(p).decode("utf-8") for p in index.paths})
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(index.labels.copy()),
        num_classes=len(index.classes),
        name=request.info.name,
        classes=list(index.classes),
        sources=(f"{index.root} ({len(shards)} shards, {len(index)} samples)",),
    )


WEBDATASET = DatasetInfo(
    "webdataset",
    3,
    None,
    None,
    ("train", "val", "test", "<any folder name>"),
    "webdataset tar shards root/<split>/*.tar (or root/*.tar), written by mmcr data pack",
    aliases=("wds", "shards"),
    augment="imagenet",
    loader=load_shards,
)
