"""webdataset tar shards: ``root/<split>/*.tar`` (or ``root/*.tar`` for train), as ``mmcr data pack`` writes.

Each sample is an image member (``<key>.jpg``, ``.jpeg``, ``.png`` or ``.webp``) and its
class index in ``<key>.cls`` (-1 where absent); the class names come from
``classes.json`` beside the shards (or in ``root``), else they are the label numbers.
Read whole (the ``memory`` and ``cache`` loaders), every image is converted to RGB,
centre-cropped to a square and resized to ``image_size`` pixels (default 64), like an
image folder. Pretraining usually streams the shards instead (``loader = "stream"``, or
``auto`` over the memory budget; :mod:`mmcr.data.stream.shard_loader`).

Paired image-text shards (``paired = true``) hold ``<key>.txt`` captions with the images,
one caption per line. :func:`load_shard_pairs` (``load_paired("webdataset", split, DIR)``)
reads a split whole into a :class:`~mmcr.data.paired.PairedDataset`, for evaluation: at
most :data:`MAX_PAIRS_IN_MEMORY` samples (a larger split raises ``ValueError``; paired
pretraining streams its training split, :mod:`mmcr.data.stream.paired_shards`). The
``.cls`` classes, where the shards have them, become the label kind ``"class"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.paired import PairedDataset, PairedRequest, register_paired_reader, report_skipped
from mmcr.data.readers.imagefolder import DEFAULT_SIZE
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["MAX_PAIRS_IN_MEMORY", "WEBDATASET", "load_shard_pairs", "load_shards"]

#: The most samples :func:`load_shard_pairs` reads into memory (a test split for retrieval).
MAX_PAIRS_IN_MEMORY = 100_000


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


def load_shard_pairs(request: PairedRequest) -> PairedDataset:
    """Every sample of a split of paired shards, decoded: images, captions (one per line), classes.

    Images are decoded as :func:`load_shards` decodes them. Raises ``ValueError`` naming
    the shard and the key for a bad sample (an undecodable image, no ``.txt``, bytes that
    are not UTF-8, an empty caption), unless ``options.skip_bad_rows`` leaves it out (the
    count is reported); and for a split of more than :data:`MAX_PAIRS_IN_MEMORY` samples.
    """
    from mmcr.data.stream.decode import BadImageError, decode_square
    from mmcr.data.stream.paired_shards import caption_lines
    from mmcr.data.stream.shard_index import IMAGE_MEMBERS, shard_index, split_shards

    inner = request.request
    if inner.data_dir is None:
        raise ValueError(
            "paired webdataset shards need data_dir (--data-dir): a folder root/<split>/*.tar "
            "(or root/*.tar for the train split) of <key>.jpg and <key>.txt samples"
        )
    index = shard_index(Path(inner.data_dir), inner.split, cache_dir=request.options.cache_dir)
    if len(index) > MAX_PAIRS_IN_MEMORY:
        raise ValueError(
            f"split {inner.split!r} of the shards under {inner.data_dir} has {len(index)} samples, more "
            f"than the {MAX_PAIRS_IN_MEMORY} read into memory (evaluation reads the test split whole); "
            "paired pretraining streams its training split"
        )
    try:
        import webdataset as wds
    except ImportError:
        raise ImportError(
            "reading webdataset shards needs the webdataset package: pip install 'mmcr[webdataset]'"
        ) from None
    side = inner.image_size or DEFAULT_SIZE
    images, captions, keys, labels, skipped = [], [], [], [], []
    for shard in split_shards(Path(inner.data_dir), inner.split)[1]:
        pipeline = wds.WebDataset(
            [str(shard)], shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False
        )
        for sample in pipeline:
            key = str(sample["__key__"])
            where = f"shard {shard}, sample {key!r}"
            try:
                if "txt" not in sample:
                    raise ValueError(f"{where}: no .txt caption member")
                texts = caption_lines(sample["txt"], where)
                member = next((k for k in IMAGE_MEMBERS if k in sample), None)
                if member is None:
                    raise ValueError(f"{where}: no image member ({', '.join(IMAGE_MEMBERS)})")
                try:
                    pixels = decode_square(
                        sample[member], side, 3, draft=False, name=f"{shard}:{key}.{member}"
                    )
                except BadImageError as err:
                    raise ValueError(f"{where}: {err}") from None
                label = int(sample["cls"]) if "cls" in sample else -1
            except ValueError as err:
                if not request.options.skip_bad_rows:
                    raise
                skipped.append(str(err))
                continue
            images.append(pixels)
            captions.append(texts)
            keys.append(key)
            labels.append(label)
    report_skipped(skipped, f"the shards of split {inner.split!r}")
    if not images:
        raise ValueError(f"split {inner.split!r} of the shards under {inner.data_dir} holds no readable pair")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    kinds: dict[str, torch.Tensor] = {}
    names: dict[str, list[str]] = {}
    if bool((label_tensor >= 0).any()):
        kinds["class"], names["class"] = label_tensor, list(index.classes)
    return PairedDataset(
        images=torch.from_numpy(np.stack(images)),
        captions=captions,
        name=inner.info.name,
        keys=keys,
        labels=kinds,
        label_names=names,
        sources=(f"{inner.data_dir} ({inner.split}: {len(images)} pairs)",),
        skipped=tuple(skipped),
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

register_paired_reader(WEBDATASET.name, load_shard_pairs)
