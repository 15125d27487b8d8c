"""The streaming path: DataLoader workers that read files and cut the K crops of each image.

A step's batch is named by the training loop as a list of ``(epoch, i)`` keys (``i`` a
position in the pretraining set); :class:`CropDataset` turns one key into the image's K
random-resized crops at the output size (uint8), with crop boxes drawn from a generator
seeded by ``(seed, epoch, i)``. Which worker decodes an image, and when, changes nothing,
so a resumed run reads exactly the crops the uninterrupted one read. The rest of the
augmentation (flip, colour, grey, blur, solarize) runs batched on the training device:
:class:`PrecroppedAugment` is :class:`~mmcr.data.MultiViewAugment` without the crop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmcr.data.augment.batched import apply_params
from mmcr.data.augment.config import AugmentConfig
from mmcr.data.augment.multiview import MultiViewAugment
from mmcr.data.augment.sampling import AugmentParams, sample_params
from mmcr.data.stream.decode import BadImageError, decode_crops, decode_square
from mmcr.data.stream.index import FileIndex

__all__ = [
    "CropDataset",
    "LoaderOptions",
    "PrecroppedAugment",
    "SquareDataset",
    "StreamedSplit",
    "crop_generator",
    "draw_crops",
    "make_loader",
    "stream_batches",
]

#: How many following images a skipped unreadable one is replaced by, at most, in a row.
_MAX_REPLACEMENTS = 16


@dataclass(frozen=True)
class LoaderOptions:
    """How the DataLoader runs: its worker processes, their read-ahead, pinned memory."""

    num_workers: int = 2
    prefetch_factor: int = 2
    pin_memory: bool = False
    skip_bad: bool = False


@dataclass(frozen=True)
class StreamedSplit:
    """Images read from files as they are needed: ``positions`` into a :class:`FileIndex`.

    Attributes:
        index: the files and labels of the split(s).
        positions: int64 ``(N,)``: index entries of the images, in this split's order.
        channels: colour channels the images are decoded to.
    """

    index: FileIndex
    positions: np.ndarray
    channels: int

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        """int64 ``(N,)`` labels of the images."""
        return torch.from_numpy(self.index.labels[self.positions].copy())

    def subset(self, rows: torch.Tensor | np.ndarray) -> StreamedSplit:
        """The images at ``rows`` (positions in this split)."""
        picked = self.positions[np.asarray(rows, dtype=np.int64)]
        return dataclasses.replace(self, positions=picked)


def crop_generator(seed: int, epoch: int, i: int) -> np.random.Generator:
    """The generator of image ``i``'s crop boxes in ``epoch`` (numpy: a torch generator per
    image costs more than the draws)."""
    return np.random.default_rng([seed, epoch, i])


def draw_crops(
    generator: np.random.Generator,
    num: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> np.ndarray:
    """``num`` random-resized-crop boxes (top, left, height, width): int64 ``(num, 4)``.

    The rule of :func:`~mmcr.data.augment.sampling.sample_crops` (torchvision's): up to 10
    attempts of an area fraction uniform in ``scale`` and a log-uniform aspect ratio in
    ``ratio``, the first that fits placed uniformly; else the whole image, its aspect ratio
    clamped to ``ratio``, centred.
    """
    u = generator.random((num, 10, 4))
    target = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = np.round(np.sqrt(target * aspect))
    h = np.round(np.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    boxes = np.empty((num, 4), dtype=np.int64)
    in_ratio = width / height
    fallback_w = width if in_ratio <= ratio[1] else round(height * ratio[1])
    fallback_h = height if in_ratio >= ratio[0] else round(width / ratio[0])
    for k in range(num):
        tries = np.flatnonzero(fits[k])
        if tries.size == 0:
            boxes[k] = ((height - fallback_h) // 2, (width - fallback_w) // 2, fallback_h, fallback_w)
            continue
        a = int(tries[0])
        bh, bw = int(h[k, a]), int(w[k, a])
        top = min(int(u[k, a, 2] * (height - bh + 1)), height - bh)
        left = min(int(u[k, a, 3] * (width - bw + 1)), width - bw)
        boxes[k] = (top, left, bh, bw)
    return boxes


class _Reader(torch.utils.data.Dataset):
    """Shared part of the two datasets: read image ``i``, or a stand-in if it is bad and skipped."""

    def __init__(self, split: StreamedSplit, skip_bad: bool) -> None:
        self.split = split
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.split)

    def _read(self, i: int, decode: Any) -> tuple[np.ndarray, int, int]:
        """``(pixels, label, skipped)``: ``skipped`` is the index entry of a bad file replaced, or -1."""
        skipped = -1
        n = len(self.split)
        for attempt in range(_MAX_REPLACEMENTS + 1):
            j = (i + attempt) % n
            entry = int(self.split.positions[j])
            index = self.split.index
            try:
                pixels = decode(index.source(entry), index.name(entry), j)
            except BadImageError:
                if not self.skip_bad or attempt == _MAX_REPLACEMENTS:
                    raise
                skipped = entry if skipped < 0 else skipped
                continue
            return pixels, int(self.split.index.labels[entry]), skipped
        raise AssertionError("unreachable")


class CropDataset(_Reader):
    """``dataset[(epoch, i)]`` -> ``(crops, label, skipped)``: uint8 ``(K, C, S, S)``, int, int.

    ``skipped`` is the index entry of an unreadable file that was replaced by the next
    readable image (only with ``skip_bad``), else -1.
    """

    def __init__(
        self, split: StreamedSplit, config: AugmentConfig, num_views: int, seed: int, skip_bad: bool = False
    ) -> None:
        super().__init__(split, skip_bad)
        self.config = config
        self.num_views = num_views
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        epoch, i = key
        config = self.config

        def decode(source: Any, name: str, j: int) -> np.ndarray:
            generator = crop_generator(self.seed, epoch, j)

            def boxes(height: int, width: int) -> np.ndarray:
                return draw_crops(
                    generator, self.num_views, height, width, config.crop_scale, config.crop_ratio
                )

            return decode_crops(source, config.crop_size, self.split.channels, boxes, name=name)

        pixels, label, skipped = self._read(int(i), decode)
        return torch.from_numpy(pixels), label, skipped


class SquareDataset(_Reader):
    """``dataset[i]`` -> ``(square, label, skipped)``: the centre square at ``size``, uint8 ``(C, S, S)``."""

    def __init__(self, split: StreamedSplit, size: int, skip_bad: bool = False) -> None:
        super().__init__(split, skip_bad)
        self.size = size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        pixels, label, skipped = self._read(
            int(i), lambda source, name, j: decode_square(source, self.size, self.split.channels, name=name)
        )
        return torch.from_numpy(pixels), label, skipped


def _worker_init(worker_id: int) -> None:
    # one decode per process: torch's intra-op threads would only contend for the cores
    torch.set_num_threads(1)


def make_loader(
    dataset: torch.utils.data.Dataset,
    batches: Iterable[list[Any]],
    options: LoaderOptions,
) -> torch.utils.data.DataLoader:
    """A DataLoader that reads the batches ``batches`` names (lists of dataset keys), in order."""
    workers = options.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        prefetch_factor=options.prefetch_factor if workers > 0 else None,
        pin_memory=options.pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
    )


def stream_batches(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], skipped: set[int]
) -> Iterator[torch.Tensor]:
    """The images of each batch of ``loader``; the index entries of skipped files go into ``skipped``."""
    for images, _labels, bad in loader:
        if bool((bad >= 0).any()):
            skipped.update(int(b) for b in bad[bad >= 0].tolist())
        yield images


class PrecroppedAugment(MultiViewAugment):
    """The multi-view augmentation of views already cropped: flip, colour, grey, blur, solarize.

    Takes uint8 ``(N, K, C, S, S)`` crops (``S = config.crop_size``) and returns float32
    ``(N, K, C, S, S)``, normalised, on the crops' device. Per-view probabilities keep their
    view positions. A :class:`~mmcr.data.MultiViewAugment` whose input is the crops.
    """

    def forward(
        self, crops: torch.Tensor, num_views: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment crops ``(N, K, C, S, S)``; the same generator state gives the same views."""
        if crops.ndim != 5 or crops.shape[1] != num_views or crops.shape[-1] != self.config.crop_size:
            raise ValueError(
                f"expected crops (N, {num_views}, C, {self.config.crop_size}, {self.config.crop_size}), "
                f"got shape {tuple(crops.shape)}"
            )
        n, k, c, s, _ = crops.shape
        params = sample_params(self.config, n, k, (s, s), generator=generator, device=crops.device)
        whole = torch.tensor([0, 0, s, s], dtype=torch.long, device=params.crop.device)
        params = dataclasses.replace(params, crop=whole.expand(n, k, 4).contiguous())
        flat = _one_view_each(params)
        images = crops.reshape(n * k, c, s, s)
        if images.device.type != "cpu":
            out = apply_params(images, flat, self.config)
        else:
            with self._workspace.lock:
                out = apply_params(images, flat, self.config, workspace=self._workspace)
        return out.view(n, k, c, s, s)


def _one_view_each(params: AugmentParams) -> AugmentParams:
    """``(N, K, ...)`` parameters as ``(N * K, 1, ...)``: one view of each crop."""
    moved = {
        f.name: getattr(params, f.name).flatten(0, 1).unsqueeze(1)
        for f in dataclasses.fields(params)
        if isinstance(getattr(params, f.name), torch.Tensor)
    }
    return dataclasses.replace(params, **moved)
