"""Pretraining on paired image-text data: an image tower and a text tower, one objective.

Every modality is a view of the datum. Each step takes ``batch_size`` data; each datum
gives ``image_views`` augmented image views (through the image encoder and projector) and
``text_views`` captions (through the text Transformer and its projector). The projector
outputs are stacked, images first, as ``(B, K_img + K_txt, D)`` and go to the objective:
:class:`~mmcr.MMCRLoss` unchanged, or ``clip`` / ``siglip``, which read the first
``image_views`` views as images. The objective's own parameters (CLIP's logit scale,
SigLIP's temperature and bias) are trained with the towers, and its ``after_step`` hook
(CLIP's clamp) runs after every optimiser step.

The tokenizer is trained on the training split's captions at the start of a run; it lives
in the text tower's state dict, so the checkpoint carries it and ``--resume`` and
``mmcr eval`` reload it from there.

Reproducible by construction, as the image-only loop: the epoch's order comes from
``(seed, epoch)``, each step's image views from ``(seed, step)``, and each datum's captions
from ``(seed, epoch, index)``; no random state is saved, and a resumed run follows the
uninterrupted one exactly.

Data parallel under torchrun: every rank takes the rank-th contiguous ``batch_size / W``
slice of each global batch, its views drawn from the global batch's augmentation
parameters (so a datum's views, and with the objective's gather the whole step, do not
depend on W); the towers are wrapped in DistributedDataParallel and rank 0 alone writes.

``dataset = "webdataset"`` streams the training split from tar shards of images and
``.txt`` captions (:mod:`mmcr.data.stream.paired_shards`: each rank its shards, workers
decoding the crops, constant memory, exact resume at a step for the same W and
``num_workers``); the tokenizer is then trained on the first 200k captions of the shards
(:data:`~mmcr.data.stream.paired_shards.TOKENIZER_CAPTIONS`), and each step tokenizes the
captions it takes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from mmcr import distributed as mdist
from mmcr.build import (
    Checkpoint,
    build_loss,
    build_network,
    effective_lr,
    load_weights,
    loader_options,
    make_optimizer,
    resolve_device,
)
from mmcr.config import RESUMABLE_FIELDS, PretrainConfig, config_differences
from mmcr.data import AugmentConfig, MultiViewAugment, dataset_info, preset
from mmcr.data.augment.batched import apply_params
from mmcr.data.augment.sampling import AugmentParams, sample_params
from mmcr.data.paired import PairedDataset, PairedOptions, load_paired
from mmcr.data.stream.loader import PrecroppedAugment
from mmcr.data.stream.paired_shards import (
    TOKENIZER_CAPTIONS,
    PairedShards,
    paired_shard_batches,
    paired_shards,
    shard_captions,
)
from mmcr.models import MMCRNetwork, build_projector, convert_sync_batchnorm, to_channels_last
from mmcr.objectives.base import NonFiniteError
from mmcr.optim import lr_at, set_lr
from mmcr.records import CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, MetricsLog
from mmcr.training.step import STOP_MESSAGE, Schedule, end_of_epoch, epoch_order, step_generator

__all__ = [
    "PairedBatch",
    "PairedNetwork",
    "PairedState",
    "build_paired_network",
    "caption_choice",
    "load_paired_network",
    "paired_augment_config",
    "paired_options",
    "paired_train_step",
    "pairs_per_epoch",
    "pretrain_paired",
    "tokenizer_captions",
    "training_pairs",
]

#: Default side length of paired images when the recipe sets no image_size.
DEFAULT_IMAGE_SIZE = 32


class PairedNetwork(nn.Module):
    """The image tower, the text tower with its projector, and the objective's parameters.

    ``image`` is an :class:`~mmcr.models.MMCRNetwork` (encoder + projector); ``text`` a text
    tower (``prepare(texts)``, ``forward(tokens) -> (N, width)``); ``text_projector`` maps
    its features to the image projector's ``D``. ``objective`` is kept here so that its
    learned scale (CLIP, SigLIP) is saved and optimised with the towers.
    """

    def __init__(
        self, image: MMCRNetwork, text: nn.Module, text_projector: nn.Module, objective: nn.Module
    ) -> None:
        super().__init__()
        self.image = image
        self.text = text
        self.text_projector = text_projector
        self.objective = objective

    def embed_images(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, projections)`` of float images ``(N, C, S, S)``."""
        h, z = self.image(x)
        return h, z

    def embed_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projections ``(N, D)`` of token ids ``(N, L)``."""
        return self.text_projector(self.text(tokens))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.text.prepare(texts)  # type: ignore[operator]

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections of images ``x`` and of the text tower's inputs ``tokens``: one call, as
        DistributedDataParallel wraps it."""
        return self.embed_images(x)[1], self.embed_texts(tokens)


def paired_options(cfg: PretrainConfig) -> PairedOptions:
    return PairedOptions(
        languages=tuple(cfg.caption_languages),
        keywords=cfg.caption_keywords,
        skip_bad_rows=cfg.skip_bad_images,
        cache_dir=cfg.cache_dir,
    )


def image_size(cfg: PretrainConfig) -> int:
    return cfg.image_size or DEFAULT_IMAGE_SIZE


def paired_augment_config(cfg: PretrainConfig) -> AugmentConfig:
    """The image views: the recipe's preset (default ``"emoji"``: no flips), at the image size."""
    import dataclasses

    config = preset(cfg.augment or "emoji", crop_size=cfg.crop_size or image_size(cfg))
    if cfg.crop_scale is not None:
        low, high = cfg.crop_scale
        config = dataclasses.replace(config, crop_scale=(float(low), float(high)))
    return config


def build_paired_network(
    cfg: PretrainConfig, in_channels: int, device: str | torch.device = "cpu"
) -> PairedNetwork:
    """The towers and the objective of a paired recipe.

    The text tower is ``cfg.text_encoder`` from :data:`~mmcr.models.TEXT_ENCODERS`, given the
    recipe's ``text_*`` fields that it takes: ``"transformer"`` (built without a tokenizer
    yet) or ``"locked_minilm"`` (the frozen sentence model, loaded here on ``device``, and a
    trainable ``Linear`` of width ``text_width``; without its optional package this raises
    :class:`~mmcr.objectives.graphs.MissingTextModelError` saying what to install).
    """
    import inspect

    from mmcr.models import TEXT_ENCODERS, build_text_encoder

    options: dict[str, object] = {
        "vocab_size": cfg.text_vocab_size,
        "context_length": cfg.text_context_length,
        "width": cfg.text_width,
        "layers": cfg.text_layers,
        "heads": cfg.text_heads,
        "device": str(device),
    }
    taken = inspect.signature(TEXT_ENCODERS[cfg.text_encoder]).parameters
    text = build_text_encoder(cfg.text_encoder, **{k: v for k, v in options.items() if k in taken})
    feature_dim = text.feature_dim
    if not isinstance(feature_dim, int):
        raise TypeError(f"text tower {cfg.text_encoder!r} has no integer attribute feature_dim")
    projector = build_projector(feature_dim, cfg.projector_hidden, cfg.projector_dim)
    return PairedNetwork(build_network(cfg, in_channels), text, projector, build_loss(cfg))


def load_paired_network(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[PairedNetwork, Checkpoint]:
    """The trained towers of a paired checkpoint (tokenizer included), in eval mode.

    A locked text tower's frozen model is not in the checkpoint (it holds the projection
    only): it is loaded again from its package.
    """
    checkpoint = Checkpoint.load(path)
    cfg = checkpoint.recipe()
    if not cfg.paired:
        raise ValueError(f"{path} holds an image-only run (paired = false)")
    network = build_paired_network(cfg, checkpoint.in_channels, device)
    load_weights(network, checkpoint.model, path)
    return network.to(device).eval(), checkpoint


def caption_choice(seed: int, epoch: int, index: int, count: int, views: int) -> list[int]:
    """Which of datum ``index``'s ``count`` captions the epoch's step uses, ``views`` of them.

    Seeded by ``(seed, epoch, index)``: a random order of the captions, repeated (in fresh
    orders) when ``views`` exceeds ``count``.
    """
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)
    chosen: list[int] = []
    while len(chosen) < views:
        chosen.extend(torch.randperm(count, generator=generator).tolist())
    return chosen[:views]


class PairedBatch(NamedTuple):
    """One rank's share of a step's data.

    ``images``: uint8 ``(b, C, H, W)`` (in memory: the step draws the views) or
    ``(b, K_img, C, S, S)`` (streamed shards: the workers' random-resized crops);
    ``texts``: the text tower's inputs ``(b * K_txt, ...)`` of the chosen captions, datum by datum.
    """

    images: torch.Tensor
    texts: torch.Tensor


class PairedState:
    """What a paired step reads and updates.

    ``train`` is a :class:`~mmcr.data.paired.PairedDataset` held in memory (``tokens``:
    every training caption through ``network.tokenize`` once, datum ``i``'s rows
    ``offsets[i] .. offsets[i + 1] - 1``) or :class:`~mmcr.data.stream.PairedShards`
    streamed (``tokens`` empty: each step tokenizes the captions it takes). ``model`` is what
    the forward pass calls: the network, or its DistributedDataParallel wrapper under
    torchrun.
    """

    def __init__(
        self,
        cfg: PretrainConfig,
        network: PairedNetwork,
        train: PairedDataset | PairedShards,
        tokens: torch.Tensor,
        offsets: list[int],
        device: torch.device,
    ) -> None:
        self.cfg = cfg
        self.network = network
        self.train = train
        self.tokens = tokens  # (all captions, ...): the training captions' text-tower inputs, once
        self.offsets = offsets  # datum i's captions are rows offsets[i] .. offsets[i + 1] - 1
        self.device = device
        self.rank, self.world = mdist.rank(), mdist.world_size()
        self.local_batch = cfg.batch_size // self.world
        self.schedule = Schedule.of(cfg, pairs_per_epoch(cfg, train, self.world))
        config = paired_augment_config(cfg)
        self.augment = (
            PrecroppedAugment(config) if isinstance(train, PairedShards) else MultiViewAugment(config)
        )
        if cfg.channels_last:
            to_channels_last(network.image)
        if mdist.is_distributed() and cfg.sync_batchnorm and device.type != "cpu":
            # the batch norms see the global batch (torch's SyncBatchNorm runs on GPUs only)
            network.image = convert_sync_batchnorm(network.image)  # type: ignore[assignment]
            network.text_projector = convert_sync_batchnorm(network.text_projector)
        self.optimizer = make_optimizer(cfg, network)
        self.model: nn.Module = network
        if mdist.is_distributed():
            self.model = nn.parallel.DistributedDataParallel(
                network, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.skipped: set[int] = set()  # shards: index entries of bad samples replaced (skip_bad_images)
        self.step = 0

    def batches(self) -> Generator[PairedBatch, None, None]:
        """This rank's :class:`PairedBatch` of each step from ``self.step`` to the end."""
        if isinstance(self.train, PairedShards):
            yield from self._shard_batches(self.train)
            return
        cfg, schedule = self.cfg, self.schedule
        start, end = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        step = self.step
        while step < schedule.total_steps:
            epoch, offset = divmod(step, schedule.steps_per_epoch)
            order = epoch_order(cfg.seed, epoch, len(self.train))
            for pos in range(offset, schedule.steps_per_epoch):
                if step >= schedule.total_steps:
                    return
                local = order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size][start:end]
                yield PairedBatch(self.train.images[local], self.caption_tokens(local, epoch))
                step += 1

    def _shard_batches(self, train: PairedShards) -> Generator[PairedBatch, None, None]:
        cfg = self.cfg
        per_epoch = self.schedule.steps_per_epoch
        batches = paired_shard_batches(
            train.split,
            self.augment.config,
            num_views=cfg.image_views,
            seed=cfg.seed,
            rank=self.rank,
            world=self.world,
            local_batch=self.local_batch,
            start_step=self.step,
            total_steps=self.schedule.total_steps,
            options=loader_options(cfg),
            skipped=self.skipped,
            shuffle_buffer=cfg.shuffle_buffer,
        )
        step = self.step
        try:
            for batch in batches:
                epoch = step // per_epoch
                texts: list[str] = []
                for position, captions in zip(batch.positions.tolist(), batch.captions, strict=True):
                    chosen = caption_choice(cfg.seed, epoch, position, len(captions), cfg.text_views)
                    texts.extend(captions[j] for j in chosen)
                yield PairedBatch(batch.crops, self.network.tokenize(texts))
                step += 1
        finally:
            batches.close()  # ends the DataLoader workers

    def caption_tokens(self, indices: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """``(len(indices) * text_views, ...)`` text-tower inputs of the captions a step takes.

        In memory only; ``epoch`` defaults to the current step's.
        """
        if epoch is None:
            epoch = self.step // self.schedule.steps_per_epoch
        rows: list[int] = []
        for i in indices.tolist():
            start, end = self.offsets[i], self.offsets[i + 1]
            rows.extend(
                start + j for j in caption_choice(self.cfg.seed, epoch, i, end - start, self.cfg.text_views)
            )
        return self.tokens[torch.tensor(rows, dtype=torch.long)]

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """The step's float image views ``(b, K_img, C, S, S)`` of this rank's ``images``, on the device.

        In memory the augmentation parameters are drawn for the whole global batch from the
        ``(seed, step)`` generator and each rank applies its rows: a datum's views do not
        depend on the number of processes. Streamed crops get the rest of the augmentation
        from the ``(seed, step, rank)`` generator, as the image-only shard path does.
        """
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)  # augmented where the towers run
        if isinstance(self.train, PairedShards):
            return self.augment(
                images, cfg.image_views, generator=step_generator(cfg.seed, self.step, self.rank)
            )
        generator = step_generator(cfg.seed, self.step, 0)
        size = (int(images.shape[2]), int(images.shape[3]))
        params = sample_params(
            self.augment.config,
            cfg.batch_size,
            cfg.image_views,
            size,
            generator=generator,
            device=images.device,
        )
        start = self.rank * self.local_batch
        return apply_params(images, _rows(params, start, start + len(images)), self.augment.config)


def _rows(params: AugmentParams, start: int, end: int) -> AugmentParams:
    """The augmentation parameters of images ``start .. end - 1`` of a batch."""
    rows = {
        f.name: getattr(params, f.name)[start:end]
        for f in dataclasses.fields(params)
        if isinstance(getattr(params, f.name), torch.Tensor)
    }
    return dataclasses.replace(params, **rows)


def pairs_per_epoch(cfg: PretrainConfig, train: PairedDataset | PairedShards, world: int) -> int:
    """The pairs an epoch's steps take: all of them, or, from shards, what every rank can read."""
    if isinstance(train, PairedShards):
        return train.split.steps_per_epoch(world, cfg.batch_size // world) * cfg.batch_size
    return len(train)


def paired_train_step(state: PairedState, batch: PairedBatch) -> tuple[torch.Tensor, float]:
    """One optimiser step on this rank's ``batch``: returns the detached loss and the learning rate.

    Under torchrun the objective gathers the projector outputs of the global batch (with
    exact gradients) and DistributedDataParallel averages the gradients over the ranks.
    """
    cfg, network = state.cfg, state.network
    b = len(batch.images)
    with torch.no_grad():
        views = state.views(batch.images)
    lr = lr_at(
        state.step,
        schedule=cfg.schedule,
        total_steps=state.schedule.total_steps,
        base_lr=effective_lr(cfg),
        warmup_steps=state.schedule.warmup_steps,
    )
    set_lr(state.optimizer, lr)
    x = views.flatten(0, 1).to(state.device, non_blocking=True)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    tokens = batch.texts.to(state.device, non_blocking=True)
    with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        z_image, z_text = state.model(x, tokens)
    z = torch.cat(
        [z_image.float().reshape(b, cfg.image_views, -1), z_text.float().reshape(b, cfg.text_views, -1)], 1
    )
    try:
        loss = network.objective(z)
    except NonFiniteError as exc:
        raise exc.at(step=state.step, name="projector outputs") from None
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    after = getattr(network.objective, "after_step", None)
    if callable(after):
        after()  # CLIP's clamp of the logit scale
    state.step += 1
    return loss.detach(), lr


def training_pairs(cfg: PretrainConfig) -> PairedDataset | PairedShards:
    """The training split: shards streamed (:mod:`~mmcr.data.stream.paired_shards`), or in memory."""
    if dataset_info(cfg.dataset).name == "webdataset":
        if cfg.data_dir is None:
            raise ValueError(
                "paired webdataset shards need data_dir (--data-dir): a folder root/<split>/*.tar "
                "(or root/*.tar for the train split) of <key>.jpg and <key>.txt samples"
            )
        return paired_shards(cfg.data_dir, cfg.train_split, cache_dir=cfg.cache_dir)
    return load_paired(
        cfg.dataset, cfg.train_split, cfg.data_dir, image_size=image_size(cfg), options=paired_options(cfg)
    )


def tokenizer_captions(cfg: PretrainConfig, train: PairedDataset | PairedShards) -> list[str]:
    """The captions the tokenizer is trained on: every training caption, or the shards' first 200k."""
    if isinstance(train, PairedShards):
        return shard_captions(train.root, train.name, limit=TOKENIZER_CAPTIONS, skip_bad=cfg.skip_bad_images)
    return train.flat_captions()[0]


def _flat_tokens(
    network: PairedNetwork, train: PairedDataset | PairedShards
) -> tuple[torch.Tensor, list[int]]:
    """The text tower's inputs for every training caption, once, with each datum's first row.

    Token ids for the Transformer; for the locked tower its frozen embeddings (the frozen model
    runs here once per caption, never in a step). Computed in chunks to bound peak memory.
    """
    if isinstance(train, PairedShards):  # streamed: each step tokenizes its own captions
        return torch.zeros(0, dtype=torch.int64), [0]
    offsets = [0]
    texts: list[str] = []
    for captions in train.captions:
        texts.extend(captions)
        offsets.append(len(texts))
    chunk = 8192
    parts = [network.tokenize(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    return (torch.cat(parts) if parts else network.tokenize(texts)), offsets


def build_paired_state(
    cfg: PretrainConfig, device: torch.device, checkpoint: Checkpoint | None = None
) -> PairedState:
    """Data, towers (tokenizer trained on the training captions, or the checkpoint's), optimiser.

    A locked text tower trains no tokenizer: its frozen model embeds the training captions
    once (``state.tokens`` are then those embeddings), and the optimiser holds the trainable
    parameters only (the frozen model is no submodule).
    """
    train = training_pairs(cfg)
    network = build_paired_network(cfg, train.channels, device)
    fit_tokenizer = getattr(network.text, "fit_tokenizer", None)
    if checkpoint is not None:
        load_weights(network, checkpoint.model, "the checkpoint")
    elif callable(fit_tokenizer):
        fit_tokenizer(tokenizer_captions(cfg, train))
    network = network.to(device)
    tokens, offsets = _flat_tokens(network, train)
    state = PairedState(cfg, network, train, tokens, offsets, device)
    if checkpoint is not None:
        if checkpoint.optimizer is None:
            raise ValueError("cannot resume: the checkpoint holds no optimiser state")
        state.optimizer.load_state_dict(checkpoint.optimizer)
        state.step = checkpoint.step
    return state


def _checkpoint(state: PairedState, reason: str) -> Checkpoint:
    return Checkpoint(
        config=state.cfg.to_dict(),
        model=state.network.state_dict(),
        step=state.step,
        in_channels=state.train.channels,
        optimizer=state.optimizer.state_dict(),
        reason=reason,
    )


def _same_tokenizer(state: PairedState) -> None:
    """Under torchrun: every rank uses rank 0's tokenizer (each trained one on the same captions)."""
    text = state.network.text
    if not mdist.is_distributed() or not callable(getattr(text, "fit_tokenizer", None)):
        return  # one process, or a tower without a tokenizer of its own (the locked one)
    get, put = text.get_extra_state, text.set_extra_state
    import torch.distributed as dist

    shared = [get().cpu() if mdist.rank() == 0 else None]
    dist.broadcast_object_list(shared, src=0)
    mine = get().cpu()
    if shared[0] is not None and not torch.equal(shared[0], mine):
        put(shared[0])
        if isinstance(state.train, PairedDataset):
            state.tokens, state.offsets = _flat_tokens(state.network, state.train)


def _resume_from(
    cfg: PretrainConfig, path: Path, device: torch.device, *, announce: bool
) -> Checkpoint | None:
    """The checkpoint to resume from (None where there is none yet); refused if the recipe changed."""
    if not path.exists():
        if announce:
            print(f"no checkpoint at {path}: starting from scratch", file=sys.stderr)
        return None
    checkpoint = Checkpoint.load(path, map_location=device)
    changed = config_differences(checkpoint.config, cfg.to_dict(), may_differ=RESUMABLE_FIELDS)
    if changed:
        raise ValueError(
            "cannot resume: the checkpoint was trained with a different configuration for "
            + ", ".join(changed)
        )
    return checkpoint


def _announce(state: PairedState) -> None:
    """The run's one-line summary: data, steps, views, objective, towers, processes."""
    cfg, schedule = state.cfg, state.schedule
    params = sum(p.numel() for p in state.network.parameters()) / 1e6
    streamed = isinstance(state.train, PairedShards)
    captions = "captions streamed" if streamed else f"{len(state.tokens)} captions"
    print(
        f"{len(state.train)} training pairs{' in shards' if streamed else ''}, {captions}, "
        f"{schedule.steps_per_epoch} steps/epoch, {schedule.total_steps} steps, "
        f"{cfg.image_views} image + {cfg.text_views} text views, objective {cfg.objective}, "
        f"towers {params:.2f}M parameters, {state.world} process(es)",
        file=sys.stderr,
    )


def pretrain_paired(cfg: PretrainConfig, out: Path, resume: bool) -> Path:
    """Train the towers as configured into ``out`` (claimed by rank 0); returns the checkpoint path.

    Under torchrun every rank takes its ``batch_size / W`` share of each global batch (in
    memory: the rank-th contiguous slice of the global order; shards: its own shards), the
    towers are wrapped in DistributedDataParallel, the objective sees the global batch, and
    rank 0 alone writes the configuration, the metrics and the checkpoints.
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    is_main = mdist.rank() == 0
    ckpt_path = out / CHECKPOINT_NAME
    checkpoint = _resume_from(cfg, ckpt_path, device, announce=is_main) if resume else None
    state = build_paired_state(cfg, device, checkpoint)
    _same_tokenizer(state)
    schedule = state.schedule
    if is_main:
        cfg.save(out / CONFIG_NAME)
        _announce(state)
    log = MetricsLog(out / METRICS_NAME, enabled=is_main, resume_step=state.step if resume else None)

    def save(reason: str) -> None:
        if is_main:
            _checkpoint(state, reason).save(ckpt_path)

    state.network.train()
    import time

    start = time.perf_counter()
    batches = state.batches()
    # a checkpoint of the last step written before the run's end (an interrupt between
    # them) is finished below: it is saved again as the run's end
    ended = checkpoint is not None and checkpoint.reason == "end" and state.step == schedule.total_steps
    try:
        for batch in batches:
            loss, lr = paired_train_step(state, batch)
            if state.step % cfg.log_every == 0 or state.step == schedule.total_steps:
                record: dict[str, Any] = {
                    "kind": "step",
                    "step": state.step,
                    "epoch": state.step / schedule.steps_per_epoch,
                    "loss": float(loss),
                    "lr": lr,
                    "time": time.perf_counter() - start,
                }
                log.write(record)
                if cfg.progress and is_main:
                    print(f"step {state.step}/{schedule.total_steps} loss {float(loss):.4f}", file=sys.stderr)
            if cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
                save("steps")
            epoch = schedule.epoch_ended(state.step)
            if epoch is None:
                continue
            reason, stop = end_of_epoch(cfg, epoch, state.step == schedule.total_steps)
            if reason is not None:
                save(reason)
                ended = reason == "end"
            if stop:
                if is_main:
                    print(STOP_MESSAGE.format(epoch), file=sys.stderr)
                break
        if state.step == schedule.total_steps and not ended:
            save("end")
    except KeyboardInterrupt:
        save("interrupted")
        if is_main:
            print(
                f"\ninterrupted at step {state.step}: checkpoint saved to {ckpt_path}; "
                "continue with --resume",
                file=sys.stderr,
            )
        raise
    finally:
        batches.close()  # stops the DataLoader workers of the shard path
        log.close()
        if state.skipped:
            print(
                f"rank {state.rank}: replaced {len(state.skipped)} bad samples of the shards "
                "(skip_bad_images: an undecodable image, or a caption that is empty or not UTF-8)",
                file=sys.stderr,
            )
    if mdist.is_distributed():
        import torch.distributed as dist

        dist.barrier()
    return ckpt_path
