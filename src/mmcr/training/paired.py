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
uninterrupted one exactly. Paired pretraining runs in one process.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcr import distributed as mdist
from mmcr.build import (
    Checkpoint,
    build_loss,
    build_network,
    effective_lr,
    load_weights,
    make_optimizer,
    resolve_device,
)
from mmcr.config import RESUMABLE_FIELDS, PretrainConfig, config_differences
from mmcr.data import AugmentConfig, MultiViewAugment, preset
from mmcr.data.paired import PairedDataset, PairedOptions, load_paired
from mmcr.models import MMCRNetwork, build_projector
from mmcr.objectives.base import NonFiniteError
from mmcr.optim import lr_at, set_lr
from mmcr.records import CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, MetricsLog
from mmcr.training.step import Schedule, epoch_order, step_generator

__all__ = [
    "PairedNetwork",
    "PairedState",
    "build_paired_network",
    "caption_choice",
    "load_paired_network",
    "paired_augment_config",
    "paired_options",
    "paired_train_step",
    "pretrain_paired",
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


class PairedState:
    """What a paired step reads and updates."""

    def __init__(
        self,
        cfg: PretrainConfig,
        network: PairedNetwork,
        train: PairedDataset,
        tokens: torch.Tensor,
        offsets: list[int],
        device: torch.device,
    ) -> None:
        self.cfg = cfg
        self.network = network
        self.train = train
        self.tokens = tokens  # (all captions, L): the training captions, tokenized once
        self.offsets = offsets  # datum i's captions are rows offsets[i] .. offsets[i + 1] - 1
        self.device = device
        self.schedule = Schedule.of(cfg, len(train))
        self.augment = MultiViewAugment(paired_augment_config(cfg))
        self.optimizer = make_optimizer(cfg, network)
        self.step = 0

    def batches(self) -> Iterator[torch.Tensor]:
        """The data indices of each step from ``self.step`` to the end."""
        cfg, schedule = self.cfg, self.schedule
        step = self.step
        while step < schedule.total_steps:
            epoch, offset = divmod(step, schedule.steps_per_epoch)
            order = epoch_order(cfg.seed, epoch, len(self.train))
            for pos in range(offset, schedule.steps_per_epoch):
                if step >= schedule.total_steps:
                    return
                yield order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
                step += 1

    def caption_tokens(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B * text_views, L)`` token ids of the captions the current step takes."""
        epoch = self.step // self.schedule.steps_per_epoch
        rows: list[int] = []
        for i in indices.tolist():
            start, end = self.offsets[i], self.offsets[i + 1]
            rows.extend(
                start + j for j in caption_choice(self.cfg.seed, epoch, i, end - start, self.cfg.text_views)
            )
        return self.tokens[torch.tensor(rows, dtype=torch.long)]


def paired_train_step(state: PairedState, indices: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One optimiser step on the data ``indices``: returns the detached loss and the learning rate."""
    cfg, network = state.cfg, state.network
    b = len(indices)
    with torch.no_grad():
        generator = step_generator(cfg.seed, state.step, 0)
        views = state.augment(state.train.images[indices], cfg.image_views, generator=generator)
    tokens = state.caption_tokens(indices).to(state.device)
    lr = lr_at(
        state.step,
        schedule=cfg.schedule,
        total_steps=state.schedule.total_steps,
        base_lr=effective_lr(cfg),
        warmup_steps=state.schedule.warmup_steps,
    )
    set_lr(state.optimizer, lr)
    x = views.flatten(0, 1).to(state.device)
    with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        _, z_image = network.embed_images(x)
        z_text = network.embed_texts(tokens)
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


def _flat_tokens(network: PairedNetwork, train: PairedDataset) -> tuple[torch.Tensor, list[int]]:
    """The text tower's inputs for every training caption, once, with each datum's first row.

    Token ids for the Transformer; for the locked tower its frozen embeddings (the frozen model
    runs here once per caption, never in a step). Computed in chunks to bound peak memory.
    """
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
    train = load_paired(
        cfg.dataset, cfg.train_split, cfg.data_dir, image_size=image_size(cfg), options=paired_options(cfg)
    )
    network = build_paired_network(cfg, int(train.images.shape[1]), device)
    fit_tokenizer = getattr(network.text, "fit_tokenizer", None)
    if checkpoint is not None:
        load_weights(network, checkpoint.model, "the checkpoint")
    elif callable(fit_tokenizer):
        fit_tokenizer(train.flat_captions()[0])
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
        in_channels=int(state.train.images.shape[1]),
        optimizer=state.optimizer.state_dict(),
        reason=reason,
    )


def pretrain_paired(cfg: PretrainConfig, out: Path, resume: bool) -> Path:
    """Train the towers as configured into ``out`` (already claimed); returns the checkpoint path."""
    if mdist.world_size() > 1:
        raise ValueError("paired pretraining runs in one process: start it without torchrun")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    ckpt_path = out / CHECKPOINT_NAME
    checkpoint = None
    if resume and ckpt_path.exists():
        checkpoint = Checkpoint.load(ckpt_path, map_location=device)
        changed = config_differences(checkpoint.config, cfg.to_dict(), may_differ=RESUMABLE_FIELDS)
        if changed:
            raise ValueError(
                "cannot resume: the checkpoint was trained with a different configuration for "
                + ", ".join(changed)
            )
    elif resume:
        print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)
    state = build_paired_state(cfg, device, checkpoint)
    cfg.save(out / CONFIG_NAME)
    schedule = state.schedule
    params = sum(p.numel() for p in state.network.parameters()) / 1e6
    print(
        f"{len(state.train)} training pairs, {len(state.tokens)} captions, {schedule.steps_per_epoch} "
        f"steps/epoch, {schedule.total_steps} steps, {cfg.image_views} image + {cfg.text_views} text "
        f"views, objective {cfg.objective}, towers {params:.2f}M parameters",
        file=sys.stderr,
    )
    log = MetricsLog(out / METRICS_NAME, enabled=True, resume_step=state.step if resume else None)
    state.network.train()
    import time

    start = time.perf_counter()
    try:
        for indices in state.batches():
            loss, lr = paired_train_step(state, indices)
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
                if cfg.progress:
                    print(f"step {state.step}/{schedule.total_steps} loss {float(loss):.4f}", file=sys.stderr)
            if cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
                _checkpoint(state, "steps").save(ckpt_path)
            if state.step % schedule.steps_per_epoch and state.step != schedule.total_steps:
                continue
            epoch = math.ceil(state.step / schedule.steps_per_epoch)
            last = state.step == schedule.total_steps
            stop = cfg.stop_at_epoch is not None and epoch >= cfg.stop_at_epoch
            if last or stop or (cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0):
                _checkpoint(state, "end" if last else "epoch").save(ckpt_path)
            if stop and not last:
                print(
                    f"stopping after epoch {epoch} (stop_at_epoch); continue with --resume", file=sys.stderr
                )
                break
        if state.step == schedule.total_steps and not ckpt_path.exists():
            _checkpoint(state, "end").save(ckpt_path)
    except KeyboardInterrupt:
        _checkpoint(state, "interrupted").save(ckpt_path)
        print(
            f"\ninterrupted at step {state.step}: checkpoint saved to {ckpt_path}; continue with --resume",
            file=sys.stderr,
        )
        raise
    finally:
        log.close()
    return ckpt_path
