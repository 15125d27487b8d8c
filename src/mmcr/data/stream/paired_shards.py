"""Paired image-text pretraining streamed from webdataset shards, and shards written from pairs.

A paired shard's sample is an image member (``<key>.jpg``, ``.jpeg``, ``.png`` or
``.webp``) and its caption(s) in ``<key>.txt``: UTF-8 text, **one caption per line** (a
one-line file is one caption, the CC3M case; COCO-style shards put an image's five
captions on five lines). Blank lines are ignored; a sample whose text holds no caption,
whose bytes are not UTF-8, that has no ``.txt`` member or whose image cannot be decoded
is an error naming the shard and the sample's key (with ``skip_bad``: replaced, see
below, and counted).

The machinery is the image-only shard path's (:mod:`~mmcr.data.stream.shard_loader`): a
:class:`~mmcr.data.stream.ShardSplit` of the split's shards, an epoch's shard order seeded
by (seed, epoch), rank r of W reading every W-th shard and each of its DataLoader workers
every V-th of those through a seeded shuffle buffer, the same number of steps on every
rank, and a resume at step s that passes over the first s steps' samples without decoding
them. What differs: each sample also brings its captions, and
:func:`paired_shard_batches` yields them with the crops and the samples' index entries
(which seed the choice of captions, :func:`mmcr.training.paired.caption_choice`). Memory
stays constant: a worker holds its shuffle buffer of raw samples, the loader a few chunks.

An unreadable sample under ``skip_bad`` is replaced, image and captions together, by the
nearest readable sample of its batch (the batch keeps its size, every rank its step
count), and its index entry is added to ``skipped``.

The text tower's tokenizer is trained on the training captions before the first step:
:func:`shard_captions` reads the ``.txt`` members only (the images are passed over), the
first :data:`TOKENIZER_CAPTIONS` captions in shard order.

:func:`write_paired_shards` writes a :class:`~mmcr.data.paired.PairedDataset` (e.g. the
emoji set, or a csv table) as such shards (PNG images, captions one per line): test data
and a way to stream a small corpus. ``mmcr data pack TABLE.tsv DEST`` writes them from a
table.
"""

from __future__ import annotations

import io
import itertools
import tarfile
from collections import Counter, deque
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from mmcr.data.augment.config import AugmentConfig
from mmcr.data.paired import decode_caption, sample_captions
from mmcr.data.stream.decode import BadImageError
from mmcr.data.stream.index import write_atomic
from mmcr.data.stream.loader import LoaderOptions, _worker_init
from mmcr.data.stream.shard_index import sample_key, shard_index, split_shards
from mmcr.data.stream.shard_loader import SHUFFLE_BUFFER, ShardCrops, ShardSplit, round_robin
from mmcr.data.stream.shards import ShardStream

if TYPE_CHECKING:
    from mmcr.data.paired import PairedDataset

__all__ = [
    "TOKENIZER_CAPTIONS",
    "PairedShardBatch",
    "PairedShards",
    "paired_shard_batches",
    "paired_shards",
    "shard_captions",
    "write_paired_shards",
]

#: Captions :func:`shard_captions` reads for the tokenizer by default (the first, in shard order).
TOKENIZER_CAPTIONS = 200_000


class PairedShards(NamedTuple):
    """The training pairs of a split of shards, streamed: every sample of the split.

    ``split`` is the image-only path's :class:`~mmcr.data.stream.ShardSplit` (all samples
    kept: paired pretraining holds nothing out of its training split), ``root`` and
    ``name`` the shard folder and the split.
    """

    split: ShardSplit
    root: Path
    name: str

    @property
    def channels(self) -> int:
        return self.split.channels

    def __len__(self) -> int:
        return len(self.split)


def paired_shards(root: str | Path, split: str, *, cache_dir: str | Path | None = None) -> PairedShards:
    """The samples of ``split``'s shards (``root/<split>/*.tar``, or ``root/*.tar`` for train), indexed.

    Raises:
        FileNotFoundError: no shards (the message names where it looked).
        ValueError: a shard that cannot be read or a sample without an image member.
    """
    index = shard_index(root, split, cache_dir=cache_dir)
    return PairedShards(ShardSplit(index, np.ones(len(index), dtype=bool), 3), Path(root), split)


def caption_lines(raw: bytes | str, where: str) -> list[str]:
    """The captions of a ``.txt`` member: its non-blank lines, stripped (``ValueError`` naming ``where``)."""
    return [line.strip() for line in decode_caption(raw, where).splitlines() if line.strip()]


def shard_captions(
    root: str | Path,
    split: str,
    *,
    limit: int = TOKENIZER_CAPTIONS,
    skip_bad: bool = False,
) -> list[str]:
    """The first ``limit`` captions of ``split``'s shards, in shard order, from the ``.txt`` members alone.

    Cheap: the tar headers are read and the images passed over. A caption that is not
    UTF-8 or empty raises ``ValueError`` naming the shard and the key, or with
    ``skip_bad`` is left out.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    _, shards = split_shards(root, split)
    captions: list[str] = []
    for shard in shards:
        try:
            with tarfile.open(shard, "r:") as tar:
                for info in tar:
                    parts = sample_key(info.name) if info.isreg() else None
                    if parts is None or parts[1] != "txt":
                        continue
                    handle = tar.extractfile(info)
                    raw = handle.read() if handle is not None else b""
                    try:
                        captions.extend(caption_lines(raw, f"shard {shard}, sample {parts[0]!r}"))
                    except ValueError:
                        if not skip_bad:
                            raise
                        continue
                    if len(captions) >= limit:
                        return captions[:limit]
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"cannot read shard {shard}: {err}") from None
    if not captions:
        raise ValueError(f"the shards of split {split!r} under {root} hold no captions (.txt members)")
    return captions


class PairedShardCrops:
    """A worker's decode of one raw paired sample: ``(index entry, crops, readable, captions)``.

    The crops are :class:`~mmcr.data.stream.shard_loader.ShardCrops`' (K random-resized
    crops seeded by (seed, epoch, index entry)); the captions the ``.txt`` member's lines.
    A bad image or caption raises naming the shard and the key, or with ``skip_bad``
    gives ``readable`` False (and no captions).
    """

    def __init__(self, crops: ShardCrops) -> None:
        self.crops = crops

    def __call__(self, sample: dict[str, Any]) -> tuple[int, torch.Tensor, bool, list[str]]:
        position = int(sample["__index__"])
        try:
            captions = sample_captions(sample, split_lines=True)
            if not captions:
                raise ValueError(
                    f"shard {sample.get('__url__', '?')}, sample {sample.get('__key__', '?')!r}: "
                    "the caption is empty"
                )
        except ValueError:
            if not self.crops.skip_bad:
                raise
            config = self.crops.config
            shape = (self.crops.num_views, self.crops.channels, config.crop_size, config.crop_size)
            return position, torch.zeros(shape, dtype=torch.uint8), False, []
        position, crops, readable = self.crops(sample)
        return position, crops, readable, captions if readable else []


class _Chunks(torch.utils.data.IterableDataset):
    """A worker's paired samples in chunks: ``(worker, positions, crops, readable, captions)``."""

    def __init__(self, stream: ShardStream, chunk: int) -> None:
        super().__init__()
        self.stream, self.chunk = stream, chunk

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, list[list[str]]]]:
        items = iter(self.stream)
        while True:
            group = list(itertools.islice(items, self.chunk))
            if not group:
                return
            positions = torch.tensor([item[0] for _, item in group], dtype=torch.int64)
            readable = torch.tensor([item[2] for _, item in group], dtype=torch.bool)
            captions = [item[3] for _, item in group]
            yield group[0][0], positions, torch.stack([item[1] for _, item in group]), readable, captions


_Item = tuple[int, torch.Tensor, bool, list[str]]


def _merged(loader: Iterable[Any], counts: list[int], start: int) -> Generator[_Item, None, None]:
    """The rank's samples from ``start`` on, in :func:`round_robin` order, from the workers' chunks."""
    pending: list[deque[_Item]] = [deque() for _ in counts]
    chunks = iter(loader)
    for worker in itertools.islice(round_robin(counts), start, None):
        while not pending[worker]:
            try:
                tag, positions, crops, readable, captions = next(chunks)
            except StopIteration:
                raise ValueError(
                    "the shards held fewer samples than their index lists: a shard changed while "
                    "the run read it"
                ) from None
            pending[int(tag)].extend(zip(positions.tolist(), crops, readable.tolist(), captions, strict=True))
        yield pending[worker].popleft()


class PairedShardBatch(NamedTuple):
    """One rank's share of a step: ``crops`` uint8 ``(b, K, C, S, S)``, the samples' index
    entries ``positions`` int64 ``(b,)`` and each sample's captions."""

    crops: torch.Tensor
    positions: torch.Tensor
    captions: list[list[str]]


def _batch(items: list[_Item], skipped: set[int]) -> PairedShardBatch:
    """Stack a step's samples; an unreadable one is replaced by the nearest readable one."""
    good = [i for i, item in enumerate(items) if item[2]]
    if not good:
        raise BadImageError(
            f"every sample of a batch of {len(items)} was unreadable (skip_bad_images), e.g. entry "
            f"{items[0][0]} of the shards' index: the shards look damaged"
        )
    rows = []
    for i, (position, _, ok, _) in enumerate(items):
        if not ok:
            skipped.add(position)
        rows.append(i if ok else min(good, key=lambda g: (abs(g - i), g > i)))
    crops = torch.from_numpy(np.stack([items[r][1].numpy() for r in rows]))
    positions = torch.tensor([items[r][0] for r in rows], dtype=torch.int64)
    return PairedShardBatch(crops, positions, [list(items[r][3]) for r in rows])


def paired_shard_batches(
    split: ShardSplit,
    config: AugmentConfig,
    *,
    num_views: int,
    seed: int,
    rank: int,
    world: int,
    local_batch: int,
    start_step: int,
    total_steps: int,
    options: LoaderOptions,
    skipped: set[int],
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> Generator[PairedShardBatch, None, None]:
    """This rank's :class:`PairedShardBatch` of each step from ``start_step`` (see the module docstring).

    The order is :func:`~mmcr.data.stream.shard_batches`' (the same samples in the same
    order for the same seed, W and ``num_workers``); resuming at a step reads what the
    uninterrupted run read from there.
    """
    per_epoch = split.steps_per_epoch(world, local_batch)
    workers = max(1, options.num_workers)
    step = start_step
    while step < total_steps:
        epoch, offset = divmod(step, per_epoch)
        counts = split.worker_counts(seed, epoch, rank, world, workers)
        start = offset * local_batch
        passed = Counter(itertools.islice(round_robin(counts), start))
        crops = ShardCrops(split.index, config, num_views, seed, epoch, split.channels, options.skip_bad)
        stream = ShardStream(
            split.shards,
            seed=seed,
            epoch=epoch,
            rank=rank,
            world=world,
            shuffle_buffer=shuffle_buffer,
            decode=PairedShardCrops(crops),
            index=split.index,
            keep=split.keep,
            skip=[passed[w] for w in range(workers)],
            tag_workers=True,
        )
        loader = torch.utils.data.DataLoader(
            _Chunks(stream, max(1, -(-local_batch // workers))),
            batch_size=None,
            num_workers=options.num_workers,
            prefetch_factor=options.prefetch_factor if options.num_workers else None,
            worker_init_fn=_worker_init if options.num_workers else None,
        )
        samples = _merged(loader, counts, start)
        for _ in range(offset, per_epoch):
            if step >= total_steps:
                break
            batch = _batch([next(samples) for _ in range(local_batch)], skipped)
            if options.pin_memory and torch.cuda.is_available():
                batch = batch._replace(crops=batch.crops.pin_memory())
            yield batch
            step += 1
        samples.close()  # ends the epoch's DataLoader workers


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_paired_shards(dataset: PairedDataset, dest: str | Path, *, shard_size: int = 1000) -> list[Path]:
    """Write ``dataset`` as paired shards ``dest/shard-000000.tar``, ...: ``<key>.png`` + ``<key>.txt``.

    Each datum's captions go one per line into its ``.txt`` (a caption holding a line
    break would become two: such captions are refused). Keys are the datum's position
    (``000000042``); every shard is written to a temporary name and renamed. Returns the
    shard paths.
    """
    from PIL import Image

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    images = dataset.images.permute(0, 2, 3, 1).numpy()
    written = []
    for number, start in enumerate(range(0, len(dataset), shard_size)):
        path = dest / f"shard-{number:06d}.tar"
        rows = range(start, min(start + shard_size, len(dataset)))

        def write(handle: Any, rows: range = rows) -> None:
            with tarfile.open(fileobj=handle, mode="w") as tar:
                for i in rows:
                    captions = dataset.captions[i]
                    if any("\n" in c or "\r" in c for c in captions):
                        raise ValueError(
                            f"datum {i} ({dataset.keys[i]!r}) has a caption with a line break; "
                            "a paired shard holds one caption per line"
                        )
                    pixels = images[i]
                    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
                    buffer = io.BytesIO()
                    image.save(buffer, format="PNG")
                    _member(tar, f"{i:09d}.png", buffer.getvalue())
                    _member(tar, f"{i:09d}.txt", "\n".join(captions).encode("utf-8"))

        write_atomic(path, write)
        written.append(path)
    return written
