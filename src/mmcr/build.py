"""From a recipe to objects: data, views, network, objective, optimiser, device; the typed checkpoint.

The assembly layer. Every consumer of a :class:`~mmcr.config.PretrainConfig` (the training
loop, ``mmcr eval``, the experiment runner, the benchmarks) builds its pieces here, so a
recipe means the same network, the same views and the same objective everywhere.

>>> from mmcr.config import build_config
>>> cfg = build_config("configs/fashion_mnist.toml")   # doctest: +SKIP
>>> data = load_data(cfg)                               # doctest: +SKIP
>>> network = build_network(cfg, data.channels)         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmcr import distributed as mdist
from mmcr.checkpoint import load_checkpoint, save_checkpoint
from mmcr.config import PretrainConfig, build_config
from mmcr.data import AugmentConfig, ImageDataset, dataset_info, load_dataset, preset, train_val_split
from mmcr.data.readers.imagefolder import DEFAULT_SIZE
from mmcr.data.stream import (
    STREAMING_DATASETS,
    FileIndex,
    LoaderOptions,
    ShardSplit,
    SquareDataset,
    StreamedSplit,
    concat_indices,
    decoded_cache,
    folder_index,
    make_loader,
    shard_index,
)
from mmcr.models import MMCRNetwork, build_encoder, build_projector
from mmcr.objectives import Objective, build_objective
from mmcr.optim import build_optimizer, scale_lr


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA (this process's local GPU under torchrun) where available, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", mdist.local_rank() if mdist.is_distributed() else 0)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


@dataclass
class Data:
    """The pretraining images and the labelled validation split used for monitoring.

    On the streaming path (``stream`` set, or ``shards`` for webdataset shards) the
    pretraining images are read from their files by DataLoader workers: ``train`` then
    holds their labels and no pixels (images of shape ``(N, C, 0, 0)``), and ``memory``
    and ``val`` hold at most ``monitor_size`` images each, decoded at the crop size, for
    the monitor.
    """

    train: ImageDataset  # pretraining images (labels may be -1)
    memory: ImageDataset  # labelled training images: the kNN monitor's memory bank
    val: ImageDataset  # held-out labelled images (model selection only)
    channels: int
    num_classes: int
    stream: StreamedSplit | None = None  # the streaming path: the pretraining images, read from files
    stream_memory: StreamedSplit | None = None  # the streaming path: all of memory's split, for evaluation
    stream_val: StreamedSplit | None = None  # the streaming path: all of val's split, for evaluation
    shards: ShardSplit | None = None  # webdataset shards streamed: the pretraining samples (stream is None)


def _load(cfg: PretrainConfig, split: str) -> ImageDataset:
    return load_dataset(
        cfg.dataset, split, cfg.data_dir, image_size=cfg.image_size, size=cfg.synthetic_size, seed=cfg.seed
    )


def _train_splits(cfg: PretrainConfig) -> list[str]:
    splits = cfg.train_split.split("+")
    if splits[0] != "train" or "train" in splits[1:]:
        raise ValueError(f"train_split must be 'train' or 'train+<other>', got {cfg.train_split!r}")
    return splits


def loader_options(cfg: PretrainConfig) -> LoaderOptions:
    """The recipe's DataLoader settings (streaming path)."""
    return LoaderOptions(cfg.num_workers, cfg.prefetch_factor, cfg.pin_memory, cfg.skip_bad_images)


def choose_loader(cfg: PretrainConfig) -> str:
    """The path the recipe's data takes: ``memory``, ``stream`` or ``cache``.

    ``loader = "auto"`` streams an image folder (or webdataset shards) whose training
    images, decoded at ``image_size`` (default 64), would take more than
    ``memory_budget_gb``, and reads everything else into memory; the other values force a
    path.
    """
    if cfg.loader != "auto":
        return cfg.loader
    info = dataset_info(cfg.dataset)
    if info.name not in STREAMING_DATASETS or cfg.data_dir is None:
        return "memory"
    n = sum(len(_index(cfg, split)) for split in _train_splits(cfg))
    side = cfg.image_size or DEFAULT_SIZE
    return "stream" if n * info.channels * side * side > cfg.memory_budget_gb * 1e9 else "memory"


def _is_shards(cfg: PretrainConfig) -> bool:
    return dataset_info(cfg.dataset).name == "webdataset"


def _index(cfg: PretrainConfig, split: str) -> FileIndex:
    if cfg.data_dir is None:
        layout = "root/<split>/*.tar" if _is_shards(cfg) else "a tree root/<split>/<class>/*.jpg"
        raise ValueError(f"data set {cfg.dataset!r} needs data_dir (--data-dir), the root of {layout}")
    if _is_shards(cfg):
        return shard_index(cfg.data_dir, split, cache_dir=cfg.cache_dir)
    return folder_index(cfg.data_dir, split, cache_dir=cfg.cache_dir, skip_bad=cfg.skip_bad_images)


def _report_empty(index: FileIndex) -> None:
    if index.empty and mdist.rank() == 0:
        print(
            f"skipped {len(index.empty)} empty image files under {index.root} (skip_bad_images), "
            f"e.g. {index.empty[0]}",
            file=sys.stderr,
        )


def read_streamed(
    split: StreamedSplit, size: int, options: LoaderOptions, name: str, batch: int = 256
) -> ImageDataset:
    """Decode the centre squares of ``split`` at ``size`` pixels with DataLoader workers, into memory."""
    index = split.index
    dataset = SquareDataset(split, size, options.skip_bad)
    batches = [list(range(s, min(s + batch, len(split)))) for s in range(0, len(split), batch)]
    parts = [images for images, _, _ in make_loader(dataset, batches, options)]
    channels = split.channels
    images = torch.cat(parts) if parts else torch.empty((0, channels, size, size), dtype=torch.uint8)
    return ImageDataset(images, split.labels, len(index.classes), name, list(index.classes))


def _load_streamed(cfg: PretrainConfig) -> Data:
    """The streaming path: file indices for training, small decoded samples for the monitor."""
    info = dataset_info(cfg.dataset)
    indices = [_index(cfg, split) for split in _train_splits(cfg)]
    for index in indices:
        _report_empty(index)
    combined = concat_indices(indices)
    labelled = StreamedSplit(combined, np.arange(len(indices[0]), dtype=np.int64), info.channels)
    train_idx, val_idx = train_val_split(labelled.labels, cfg.val_fraction, cfg.seed)
    extra = np.arange(len(indices[0]), len(combined), dtype=np.int64)
    train = StreamedSplit(combined, np.concatenate([train_idx.numpy(), extra]), info.channels)
    generator = torch.Generator().manual_seed(cfg.seed)
    bank = train_idx[torch.randperm(len(train_idx), generator=generator)[: cfg.monitor_size]]
    held = val_idx[torch.randperm(len(val_idx), generator=generator)[: cfg.monitor_size]]
    size, options = augment_config(cfg).crop_size, loader_options(cfg)
    name = info.name
    shards = None
    if _is_shards(cfg):  # read in shard order, not by position: the same images, as a mask
        keep = np.zeros(len(combined), dtype=bool)
        keep[train.positions] = True
        shards = ShardSplit(combined, keep, info.channels)
        train = StreamedSplit(combined, np.flatnonzero(keep), info.channels)
    return Data(
        train=ImageDataset(
            torch.empty((len(train), info.channels, 0, 0), dtype=torch.uint8),
            train.labels,
            len(combined.classes),
            name,
            list(combined.classes),
        ),
        memory=read_streamed(labelled.subset(bank.sort().values), size, options, name),
        val=read_streamed(labelled.subset(held.sort().values), size, options, name),
        channels=info.channels,
        num_classes=len(combined.classes),
        stream=None if shards is not None else train,
        stream_memory=labelled.subset(train_idx),
        stream_val=labelled.subset(val_idx),
        shards=shards,
    )


def load_data(cfg: PretrainConfig) -> Data:
    """Load the training split and hold out a stratified validation split (fixed seed).

    ``train_split = "train+<other>"`` (STL-10's unlabelled images) adds the other splits
    to the pretraining images, never to the kNN memory or the validation split. The path
    is :func:`choose_loader`'s.
    """
    path = choose_loader(cfg)
    if path == "stream":
        return _load_streamed(cfg)
    if path == "cache":
        return _load_cached(cfg)
    return _load_memory(cfg)


def _cache_key(cfg: PretrainConfig, split: str) -> dict[str, Any]:
    """What a decoded cache entry depends on: the data set, its files and the stored size."""
    info = dataset_info(cfg.dataset)
    key: dict[str, Any] = {
        "dataset": info.name,
        "split": split,
        "data_dir": None if cfg.data_dir is None else str(Path(cfg.data_dir).resolve()),
        "image_size": cfg.image_size,
    }
    if info.name == "synthetic":
        key.update(size=cfg.synthetic_size, seed=cfg.seed)
    if info.name in STREAMING_DATASETS:  # the listing of the tree: a changed tree is another entry
        key["files"] = [_listing_digest(_index(cfg, s)) for s in split.split("+")]
    return key


def _listing_digest(index: FileIndex) -> str:
    """A digest of an index's files (and, for shards, of where each image lies in them)."""
    digest = hashlib.sha256(index.paths.tobytes())
    for extra in (index.offsets, index.sizes):
        if extra is not None:
            digest.update(extra.tobytes())
    return digest.hexdigest()


def _load_cached(cfg: PretrainConfig) -> Data:
    """The memory path's data, decoded once into memory-mapped files shared by ranks and runs."""
    key = {**_cache_key(cfg, cfg.train_split), "val_fraction": cfg.val_fraction, "seed": cfg.seed}

    def build() -> tuple[dict[str, ImageDataset], dict[str, Any]]:
        data = _load_memory(cfg)
        return {"train": data.train, "val": data.val}, {"memory": len(data.memory)}

    parts, notes = _shared_cache(key, build, cfg)
    train, n = parts["train"], int(notes["memory"])
    memory = ImageDataset(train.images[:n], train.labels[:n], train.num_classes, train.name, train.classes)
    return Data(train, memory, parts["val"], train.channels, train.num_classes)


def _shared_cache(
    key: dict[str, Any], build: Any, cfg: PretrainConfig
) -> tuple[dict[str, ImageDataset], dict[str, Any]]:
    """:func:`decoded_cache`, built by rank 0 alone while the other ranks wait for it."""
    if mdist.is_distributed() and mdist.rank() != 0:
        torch.distributed.barrier()  # rank 0 builds (or finds) the entry first
        return decoded_cache(key, build, cfg.cache_dir)
    found = decoded_cache(key, build, cfg.cache_dir)
    if mdist.is_distributed():
        torch.distributed.barrier()
    return found


def _load_memory(cfg: PretrainConfig) -> Data:
    """The in-memory path: every split read whole into this process's memory."""
    splits = _train_splits(cfg)
    labelled = _load(cfg, "train")
    extra = [_load(cfg, s) for s in splits[1:]]
    train_idx, val_idx = train_val_split(labelled.labels, cfg.val_fraction, cfg.seed)
    memory = labelled.subset(train_idx)
    train = memory
    if extra:
        train = ImageDataset(
            images=torch.cat([memory.images, *[e.images for e in extra]]),
            labels=torch.cat([memory.labels, *[e.labels for e in extra]]),
            num_classes=memory.num_classes,
            name=memory.name,
            classes=memory.classes,
            sources=memory.sources + tuple(f for e in extra for f in e.sources),
        )
    return Data(
        train=train,
        memory=memory,
        val=labelled.subset(val_idx),
        channels=labelled.channels,
        num_classes=labelled.num_classes,
    )


def load_test(cfg: PretrainConfig) -> ImageDataset:
    """The data set's test split, read as the training split was (same folder and image size).

    On the streaming path this is a seeded sample of at most ``monitor_size`` test images,
    decoded by DataLoader workers at the crop size (the size of the evaluation view); the
    whole split is :func:`load_test_stream`'s.
    """
    split = load_test_stream(cfg)
    if split is not None:
        generator = torch.Generator().manual_seed(cfg.seed)
        rows = torch.randperm(len(split), generator=generator)[: cfg.monitor_size].sort().values
        size, name = augment_config(cfg).crop_size, dataset_info(cfg.dataset).name
        return read_streamed(split.subset(rows), size, loader_options(cfg), name)
    if choose_loader(cfg) == "cache":

        def build() -> tuple[dict[str, ImageDataset], dict[str, Any]]:
            return {"test": _load(cfg, "test")}, {}

        return _shared_cache(_cache_key(cfg, "test"), build, cfg)[0]["test"]
    return _load(cfg, "test")


def load_test_stream(cfg: PretrainConfig) -> StreamedSplit | None:
    """The test split's files on the streaming path (``None`` on the others)."""
    if choose_loader(cfg) != "stream":
        return None
    index = _index(cfg, "test")
    _report_empty(index)
    return StreamedSplit(index, np.arange(len(index), dtype=np.int64), dataset_info(cfg.dataset).channels)


def augment_config(cfg: PretrainConfig) -> AugmentConfig:
    """The recipe's augmentation: its preset (by default the data set's), crop size and scale."""
    config = preset(cfg.augment or dataset_info(cfg.dataset).augment, crop_size=cfg.crop_size)
    if cfg.crop_scale is not None:
        config = dataclasses.replace(config, crop_scale=(cfg.crop_scale[0], cfg.crop_scale[1]))
    return config


def build_network(cfg: PretrainConfig, in_channels: int) -> MMCRNetwork:
    """Encoder + projector of the recipe, for images with ``in_channels`` channels."""
    encoder = build_encoder(cfg.encoder, in_channels=in_channels, **cfg.encoder_kwargs())
    feature_dim = int(encoder.feature_dim)  # type: ignore[arg-type]
    projector = build_projector(feature_dim, cfg.projector_hidden, cfg.projector_dim)
    return MMCRNetwork(encoder, projector)


def build_loss(cfg: PretrainConfig) -> Objective:
    """The recipe's objective, by its registered name."""
    return build_objective(cfg.objective, **cfg.objective_kwargs())


def effective_lr(cfg: PretrainConfig) -> float:
    """LARS follows the linear scaling rule lr x B / 256; the other optimisers take lr as given."""
    return scale_lr(cfg.lr, cfg.batch_size) if cfg.optimizer == "lars" else cfg.lr


def make_optimizer(cfg: PretrainConfig, network: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(
        cfg.optimizer, network, lr=effective_lr(cfg), weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )


# ----------------------------------------------------------------------------- checkpoint


@dataclass
class Checkpoint:
    """What ``last.pt`` holds: plain data only (loaded with ``weights_only=True``).

    Attributes:
        config: the resolved :class:`PretrainConfig` as a dict.
        model: the network's state dict (encoder and projector).
        step: optimiser steps taken.
        in_channels: colour channels of the training images (to rebuild the network).
        optimizer: the optimiser's state dict (for ``--resume``).
        momentum: the EMA network's state dict, for the momentum variant.
        metrics: the last validation-monitor record.
        reason: why it was written: ``"epoch"``, ``"end"`` or ``"interrupted"``
            (a finished run's checkpoint says ``"end"``).
    """

    config: dict[str, Any]
    model: dict[str, Any]
    step: int
    in_channels: int
    optimizer: dict[str, Any] | None = None
    momentum: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = "end"

    def save(self, path: str | Path) -> Path:
        state = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return save_checkpoint(state, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        state = load_checkpoint(path, map_location=map_location)
        missing = [k for k in ("step", "in_channels") if k not in state]
        if missing:
            raise ValueError(f"{path} is not an mmcr checkpoint: it has no {', '.join(missing)} entry")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})

    def recipe(self) -> PretrainConfig:
        """The configuration that trained it, validated as a recipe is."""
        return build_config(None, dict(self.config), source="the checkpoint's configuration")


def load_weights(
    network: nn.Module,
    state: dict[str, Any],
    source: str | Path,
    target: str = "the network its configuration builds",
) -> None:
    """Load ``state`` into ``network``; ``ValueError`` naming the keys if they do not fit."""
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).split("\n", 1)[-1].strip()
        raise ValueError(f"the weights in {source} do not fit {target}: {detail}") from None


def load_network(path: str | Path, device: str | torch.device = "cpu") -> tuple[MMCRNetwork, Checkpoint]:
    """The trained network of a checkpoint, in eval mode, with the checkpoint itself."""
    checkpoint = Checkpoint.load(path)
    network = build_network(checkpoint.recipe(), checkpoint.in_channels)
    load_weights(network, checkpoint.model, path)
    return network.to(device).eval(), checkpoint
