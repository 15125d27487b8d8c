"""Pretraining batches read from webdataset shards: each rank streams its shards, in steps.

A :class:`ShardSplit` is the pretraining samples of a split of shards (the held-out
validation samples masked out). :func:`shard_batches` turns it into this rank's batches
of K crops, from any step on:

- An epoch's shard order is seeded by (seed, epoch); rank r of W reads every W-th shard,
  and each of its V DataLoader workers every V-th of those, through a shuffle buffer
  seeded by (seed, epoch, rank, worker) (:class:`~mmcr.data.stream.shards.ShardStream`).
  The workers decode each sample and cut its K crops, with boxes drawn from a generator
  seeded by (seed, epoch, the sample's index entry).
- The rank's samples are taken from its workers in turn, one each (a worker whose shards
  are done drops out of the turn), whatever order the DataLoader delivers them in, so the
  sequence depends on (seed, epoch, rank, W, V) only.
- Every epoch has the same number of steps on every rank: the samples the rank given the
  fewest can have, ``sum of the floor(S / W) smallest shards`` (kept samples), divided by
  the per-rank batch. The rest of a rank's share of an epoch is not read.
- Resuming at step s of an epoch passes over the samples of the epoch's first s steps
  (each worker reads its share of them, without decoding), so the resumed run reads the
  batches the uninterrupted one read, provided W and V are the same.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.data.augment.config import AugmentConfig
from mmcr.data.stream.decode import BadImageError, decode_crops
from mmcr.data.stream.index import FileIndex
from mmcr.data.stream.loader import LoaderOptions, _worker_init, crop_generator, draw_crops
from mmcr.data.stream.shard_index import IMAGE_MEMBERS
from mmcr.data.stream.shards import ShardStream, assigned_shards, shard_starts

__all__ = ["ShardCrops", "ShardSplit", "round_robin", "shard_batches"]

#: Samples a worker's shuffle buffer holds.
SHUFFLE_BUFFER = 1000


@dataclass(frozen=True)
class ShardSplit:
    """The pretraining samples of shards: every sample of ``index`` that ``keep`` marks.

    Attributes:
        index: the samples of the shards (:func:`~mmcr.data.stream.shard_index.shard_index`).
        keep: bool ``(len(index),)``: the samples pretrained on (the others are held out).
        channels: colour channels the images are decoded to.
    """

    index: FileIndex
    keep: np.ndarray
    channels: int

    def __len__(self) -> int:
        return int(self.keep.sum())

    @cached_property
    def _bounds(self) -> dict[str, tuple[int, int]]:
        return shard_starts(self.index)

    @property
    def shards(self) -> list[Path]:
        """The shard files, in index order."""
        return [self.index.root / name for name in self._bounds]

    @property
    def labels(self) -> torch.Tensor:
        """int64 labels of the kept samples, in index order."""
        return torch.from_numpy(self.index.labels[self.keep].copy())

    def kept_per_shard(self) -> dict[Path, int]:
        """Each shard's number of kept samples."""
        return {
            self.index.root / name: int(self.keep[a:b].sum()) for name, (a, b) in self._bounds.items()
        }

    def steps_per_epoch(self, world: int, local_batch: int) -> int:
        """Steps of ``local_batch`` samples that every rank of ``world`` can take in every epoch.

        Raises:
            ValueError: fewer shards than processes, or too few samples for one step.
        """
        counts = sorted(self.kept_per_shard().values())
        if len(counts) < world:
            raise ValueError(
                f"{len(counts)} shards cannot be split over {world} processes: every process reads "
                "whole shards; pack the data into more shards (mmcr data pack --shard-size)"
            )
        fewest = sum(counts[: len(counts) // world])
        steps = fewest // local_batch
        if steps < 1:
            raise ValueError(
                f"a process may be given only {fewest} samples of the shards an epoch, fewer than its "
                f"batch of {local_batch}: lower batch_size or use more (smaller) shards"
            )
        return steps

    def worker_counts(self, seed: int, epoch: int, rank: int, world: int, workers: int) -> list[int]:
        """How many kept samples each of a rank's ``workers`` reads in ``epoch``."""
        kept = self.kept_per_shard()
        shards = self.shards
        return [
            sum(kept[s] for s in assigned_shards(shards, seed, epoch, rank, world, w, workers))
            for w in range(workers)
        ]


def round_robin(counts: list[int]) -> Iterator[int]:
    """The worker of each sample of a rank's sequence: in turn, one each, a finished worker dropped."""
    for turn in range(max(counts, default=0)):
        for worker, count in enumerate(counts):
            if count > turn:
                yield worker


class ShardCrops:
    """A worker's decode of one raw sample: ``(index entry, crops uint8 (K, C, S, S), readable)``.

    An unreadable image raises :class:`~mmcr.data.stream.BadImageError` naming the shard
    and member, or with ``skip_bad`` gives zeros and ``readable`` False (the batch replaces
    it, :func:`shard_batches`).
    """

    def __init__(
        self, index: FileIndex, config: AugmentConfig, num_views: int, seed: int, epoch: int,
        channels: int, skip_bad: bool = False,
    ) -> None:
        self.index, self.config, self.num_views = index, config, num_views
        self.seed, self.epoch, self.channels, self.skip_bad = seed, epoch, channels, skip_bad

    def __call__(self, sample: dict[str, Any]) -> tuple[int, torch.Tensor, bool]:
        position = int(sample["__index__"])
        image = next(sample[k] for k in IMAGE_MEMBERS if k in sample)
        generator = crop_generator(self.seed, self.epoch, position)
        config = self.config

        def boxes(height: int, width: int) -> np.ndarray:
            return draw_crops(generator, self.num_views, height, width, config.crop_scale, config.crop_ratio)

        size = config.crop_size
        try:
            crops = decode_crops(image, size, self.channels, boxes, name=self.index.name(position))
        except BadImageError:
            if not self.skip_bad:
                raise
            shape = (self.num_views, self.channels, size, size)
            return position, torch.zeros(shape, dtype=torch.uint8), False
        return position, torch.from_numpy(crops), True


class _Chunks(torch.utils.data.IterableDataset):
    """A worker's samples of a :class:`ShardStream` in stacked chunks of ``chunk``.

    Yields ``(worker, positions (c,), crops (c, K, C, S, S), readable (c,))``: one transfer
    from a worker per chunk, not per sample (which cost about two thirds of the rate).
    """

    def __init__(self, stream: ShardStream, chunk: int) -> None:
        super().__init__()
        self.stream, self.chunk = stream, chunk

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        items = iter(self.stream)
        while True:
            group = list(itertools.islice(items, self.chunk))
            if not group:
                return
            worker = group[0][0]
            positions = torch.tensor([item[0] for _, item in group], dtype=torch.int64)
            readable = torch.tensor([item[2] for _, item in group], dtype=torch.bool)
            yield worker, positions, torch.stack([item[1] for _, item in group]), readable


def _merged(
    loader: Iterable[Any], counts: list[int], start: int
) -> Generator[tuple[int, torch.Tensor, bool], None, None]:
    """The rank's samples from ``start`` on, in :func:`round_robin` order, from workers' chunks."""
    pending: list[deque[Any]] = [deque() for _ in counts]
    chunks = iter(loader)
    for worker in itertools.islice(round_robin(counts), start, None):
        while not pending[worker]:
            try:
                tag, positions, crops, readable = next(chunks)
            except StopIteration:
                raise ValueError(
                    "the shards held fewer samples than their index lists: a shard changed while "
                    "the run read it"
                ) from None
            pending[int(tag)].extend(zip(positions.tolist(), crops, readable.tolist(), strict=True))
        position, image, ok = pending[worker].popleft()
        yield int(position), image, bool(ok)


def _batch(
    items: list[tuple[int, torch.Tensor, bool]], labels: np.ndarray, skipped: set[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a step's samples; an unreadable one takes the pixels and label of the nearest readable one."""
    good = [i for i, (_, _, ok) in enumerate(items) if ok]
    if not good:
        raise BadImageError(
            f"every image of a batch of {len(items)} was unreadable (skip_bad_images), e.g. entry "
            f"{items[0][0]} of the shards' index: the shards look damaged"
        )
    rows = []
    for i, (position, _, ok) in enumerate(items):
        if ok:
            rows.append(i)
            continue
        skipped.add(position)
        rows.append(min(good, key=lambda g: (abs(g - i), g > i)))
    # numpy's copy runs on this thread: torch's would wake its intra-op threads, which then
    # contend with the DataLoader workers for the cores (0.45 s a batch of 32 on 2 cores)
    crops = torch.from_numpy(np.stack([items[r][1].numpy() for r in rows]))
    return crops, torch.from_numpy(labels[[items[r][0] for r in rows]].astype(np.int64))


def shard_batches(
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
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's ``(crops (B / W, K, C, S, S) uint8, labels (B / W,))`` of each step from ``start_step``.

    The index entries of unreadable images that were replaced (``options.skip_bad``) go
    into ``skipped``. See the module docstring for the order and the resume.
    """
    per_epoch = split.steps_per_epoch(world, local_batch)
    workers = max(1, options.num_workers)
    step = start_step
    while step < total_steps:
        epoch, offset = divmod(step, per_epoch)
        counts = split.worker_counts(seed, epoch, rank, world, workers)
        start = offset * local_batch
        passed = Counter(itertools.islice(round_robin(counts), start))
        stream = ShardStream(
            split.shards, seed=seed, epoch=epoch, rank=rank, world=world, shuffle_buffer=shuffle_buffer,
            decode=ShardCrops(split.index, config, num_views, seed, epoch, split.channels, options.skip_bad),
            index=split.index, keep=split.keep, skip=[passed[w] for w in range(workers)], tag_workers=True,
        )
        # a worker's share of a step is one chunk; prefetch_factor chunks each read ahead
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
            crops, labels = _batch([next(samples) for _ in range(local_batch)], split.index.labels, skipped)
            if options.pin_memory and torch.cuda.is_available():
                crops = crops.pin_memory()  # pinned once the batch is whole, for a faster copy
            yield crops, labels
            step += 1
        samples.close()  # ends the epoch's DataLoader workers
