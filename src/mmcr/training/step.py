"""One optimiser step, the one definition of it: views -> network -> objective -> update.

:func:`train_step` is what the training loop runs and what the throughput benchmarks time
(through its ``phases`` hook). :class:`TrainState` holds everything a step touches;
:func:`build_state` makes it from a recipe.

Reproducibility is by construction: the epoch's sample order comes from a generator seeded
by ``(seed, epoch)`` and each step's views from one seeded by ``(seed, step, rank)``, so no
random state needs saving, and resuming from any step follows the uninterrupted trajectory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from mmcr import distributed as mdist
from mmcr.build import build_loss, build_network, effective_lr, make_optimizer
from mmcr.config import PretrainConfig
from mmcr.data import MultiViewAugment
from mmcr.models import MMCRNetwork, MomentumEncoder, convert_sync_batchnorm, cosine_tau, to_channels_last
from mmcr.objectives import Objective
from mmcr.objectives.base import NonFiniteError
from mmcr.optim import lr_at, set_lr

#: ``phases(name)`` is called as each phase of a step ends: augment, forward, loss, backward, optimizer.
PhaseHook = Callable[[str], None]


@dataclass(frozen=True)
class Schedule:
    """Step counts of a run: its length, its epochs and its warm-up."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, cfg: PretrainConfig, num_images: int) -> Schedule:
        steps_per_epoch = num_images // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the {num_images} training images")
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        return cls(steps_per_epoch, total, min(round(cfg.warmup_epochs * steps_per_epoch), total))

    def epoch_ended(self, step: int) -> int | None:
        """The epoch (from 1) that the step count ``step`` completes, or None mid-epoch.

        The run's last step ends an epoch too, even where ``max_steps`` cuts it short.
        """
        if step % self.steps_per_epoch and step != self.total_steps:
            return None
        return -(-step // self.steps_per_epoch)


def end_of_epoch(cfg: PretrainConfig, epoch: int, last: bool) -> tuple[str | None, bool]:
    """What the end of ``epoch`` asks of a training loop: ``(checkpoint reason or None, stop)``.

    A checkpoint at the run's end (``"end"``), at ``stop_at_epoch`` and every
    ``checkpoint_every`` epochs (``"epoch"``); ``stop`` when ``stop_at_epoch`` is reached
    before the run's end.
    """
    stop = cfg.stop_at_epoch is not None and epoch >= cfg.stop_at_epoch and not last
    due = last or stop or bool(cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0)
    return ("end" if last else "epoch") if due else None, stop


#: What a loop prints when it stops at ``stop_at_epoch`` (formatted with the epoch).
STOP_MESSAGE = "stopping after epoch {} (stop_at_epoch); continue with --resume"


@dataclass
class TrainState:
    """What a step reads and updates.

    ``network`` is the module whose weights are saved; ``model`` is what the forward pass
    calls (the network, or its DistributedDataParallel wrapper). ``augment`` and
    ``objective`` may be any callables with the same signatures (the benchmarks swap in
    the plain alternatives).
    """

    cfg: PretrainConfig
    schedule: Schedule
    device: torch.device
    network: MMCRNetwork
    model: nn.Module
    objective: Objective | Callable[..., torch.Tensor]
    optimizer: torch.optim.Optimizer
    augment: MultiViewAugment | Callable[..., torch.Tensor]
    momentum: MomentumEncoder | None = None
    step: int = 0


def build_state(
    cfg: PretrainConfig,
    in_channels: int,
    num_images: int,
    device: torch.device,
    augment: MultiViewAugment,
    *,
    classes: Sequence[str | None] | None = None,
    num_classes: int | None = None,
    captions: Sequence[Sequence[str]] | None = None,
) -> TrainState:
    """The network, objective, optimiser and (if asked for) momentum copy of a recipe, on ``device``.

    An objective that uses labels (``uses_labels``, e.g. X-CLR) receives the training data's
    class names ``classes`` and their count ``num_classes`` here, once
    (:meth:`~mmcr.objectives.Objective.bind_classes`); one whose graph is of the samples
    (``uses_sample_indices``: X-CLR with ``graph = "captions"``) receives the training
    images' ``captions`` instead (``bind_samples``). The other objectives ignore them.
    """
    network = build_network(cfg, in_channels).to(device)
    if cfg.channels_last:
        network = to_channels_last(network)  # type: ignore[assignment]
    distributed = mdist.is_distributed()
    if distributed and cfg.sync_batchnorm:
        if device.type == "cpu":
            # torch's SyncBatchNorm runs on GPUs only; say so rather than fail mid-step
            if mdist.rank() == 0:
                print("sync_batchnorm ignored on CPU: each process normalises its own batch", file=sys.stderr)
        else:
            network = convert_sync_batchnorm(network)  # type: ignore[assignment]
    model: nn.Module = network
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    objective = build_loss(cfg)
    if uses_sample_indices(objective):
        objective.bind_samples(captions, dataset=cfg.dataset)  # type: ignore[operator]
    elif objective.uses_labels:
        if num_classes is None:
            raise ValueError(
                f"objective {cfg.objective!r} uses the labels of the training images: "
                "build_state needs num_classes (and the class names, classes)"
            )
        objective.bind_classes(classes, num_classes, dataset=cfg.dataset)
    return TrainState(
        cfg=cfg,
        schedule=Schedule.of(cfg, num_images),
        device=device,
        network=network,
        model=model,
        objective=objective.to(device),
        optimizer=make_optimizer(cfg, network),
        augment=augment,
        momentum=MomentumEncoder(network) if cfg.momentum_encoder else None,
    )


def uses_sample_indices(objective: object) -> bool:
    """Whether ``objective`` takes each batch's sample indices (rows of its graph of the training split)."""
    return bool(getattr(objective, "uses_sample_indices", False))


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one step's views on one rank."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order of one epoch (the same on every rank)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def local_batches(state: TrainState, num_images: int) -> Iterator[torch.Tensor]:
    """Indices of this rank's share of each global batch, from ``state.step`` to the end.

    Every rank takes a contiguous slice of ``batch_size / world_size`` images of the
    global batch; the last incomplete batch of an epoch is dropped.
    """
    cfg, schedule = state.cfg, state.schedule
    rank, world = mdist.rank(), mdist.world_size()
    local = cfg.batch_size // world
    step = state.step
    while step < schedule.total_steps:
        epoch, offset = divmod(step, schedule.steps_per_epoch)
        order = epoch_order(cfg.seed, epoch, num_images)
        for pos in range(offset, schedule.steps_per_epoch):
            if step >= schedule.total_steps:
                return
            batch = order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
            yield batch[rank * local : (rank + 1) * local]
            step += 1


def learning_rate(state: TrainState) -> float:
    cfg, schedule = state.cfg, state.schedule
    return lr_at(
        state.step,
        schedule=cfg.schedule,
        total_steps=schedule.total_steps,
        base_lr=effective_lr(cfg),
        warmup_steps=schedule.warmup_steps,
    )


class StepOutput(NamedTuple):
    loss: torch.Tensor  # detached scalar
    lr: float  # the learning rate the step used


def train_step(
    state: TrainState,
    images: torch.Tensor,
    phases: PhaseHook | None = None,
    labels: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
) -> StepOutput:
    """One optimiser step on this rank's uint8 images ``(B / W, C, H, W)``.

    ``labels`` ``(B / W,)`` are the images' classes, which only an objective with
    ``uses_labels`` receives (with the views, ``objective(z, labels=...)``); ``indices``
    ``(B / W,)`` are the images' rows in the training split, which an objective with
    ``uses_sample_indices`` receives instead (``objective(z, indices=...)``); for the others
    they are not used. The objective checks its input is finite; a failure is re-raised
    naming the step.
    """
    cfg = state.cfg
    mark = phases or (lambda phase: None)
    by_index = uses_sample_indices(state.objective)
    uses_labels = getattr(state.objective, "uses_labels", False) and not by_index
    if by_index and indices is None:
        raise ValueError(
            f"objective {cfg.objective!r} uses the batch's sample indices: pass train_step(..., indices=...)"
        )
    if uses_labels and labels is None:
        raise ValueError(
            f"objective {cfg.objective!r} uses the batch's labels: pass train_step(..., labels=...)"
        )
    with torch.no_grad():
        generator = step_generator(cfg.seed, state.step, mdist.rank())
        views = state.augment(images, cfg.num_views, generator=generator)
    b, k = views.shape[:2]
    x = views.flatten(0, 1)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mark("augment")
    lr = learning_rate(state)
    set_lr(state.optimizer, lr)
    with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        _, z = state.model(x)
        z_momentum = state.momentum(x)[1] if state.momentum is not None else None
    z = z.float().reshape(b, k, -1)
    mark("forward")
    try:
        if by_index:
            assert indices is not None
            loss = state.objective(z, indices=indices.to(z.device, non_blocking=True))
        elif uses_labels:
            assert labels is not None
            loss = state.objective(z, labels=labels.to(z.device, non_blocking=True))
        elif z_momentum is None:
            loss = state.objective(z)
        else:
            loss = state.objective(z, z_momentum.float().reshape(b, k, -1))
    except NonFiniteError as exc:
        raise exc.at(step=state.step, name="projector outputs") from None
    mark("loss")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    mark("backward")
    state.optimizer.step()
    if state.momentum is not None:
        tau = cfg.momentum_tau
        if cfg.momentum_tau_schedule == "cosine":
            tau = cosine_tau(state.step, state.schedule.total_steps, cfg.momentum_tau)
        state.momentum.update(state.network, tau)
    mark("optimizer")
    state.step += 1
    return StepOutput(loss.detach(), lr)
