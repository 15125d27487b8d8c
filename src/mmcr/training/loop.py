"""The pretraining loop, top to bottom: build, resume, step, log, monitor, checkpoint.

Under ``torchrun`` (``WORLD_SIZE > 1``) every process takes a contiguous share of each
global batch of ``batch_size`` images, the network is wrapped in
DistributedDataParallel, the objective sees the global batch (gathered with exact
gradients), and rank 0 alone writes logs and checkpoints. ``--resume`` from any
checkpoint, also one written mid-epoch by an interruption, follows the trajectory of an
uninterrupted run exactly (see :mod:`mmcr.training.step`).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mmcr import distributed as mdist
from mmcr.build import (
    Checkpoint,
    Data,
    augment_config,
    choose_loader,
    load_data,
    load_weights,
    loader_options,
    resolve_device,
)
from mmcr.config import RESUMABLE_FIELDS, PretrainConfig, config_differences
from mmcr.data import MultiViewAugment, dataset_info
from mmcr.data.stream import CropDataset, PrecroppedAugment, make_loader, shard_batches, stream_batches
from mmcr.evaluation.monitor import ValidationMonitor
from mmcr.objectives.base import NonFiniteError
from mmcr.records import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    METRICS_NAME,
    TENSORBOARD_NAME,
    MetricsLog,
    TensorBoardSink,
    require_tensorboard,
)
from mmcr.training.paired import pretrain_paired
from mmcr.training.run_folder import claimed
from mmcr.training.step import (
    STOP_MESSAGE,
    TrainState,
    build_state,
    end_of_epoch,
    local_batches,
    train_step,
    uses_sample_indices,
)


def pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Run pretraining as configured; returns the path of the final checkpoint.

    With ``resume=True`` training continues from ``<out>/last.pt`` if it exists; a folder
    that holds another run is refused unless ``overwrite=True`` (see
    :mod:`mmcr.training.run_folder`). SIGTERM (what SLURM and Kubernetes send before a kill)
    is handled like Ctrl-C: the checkpoint is saved and the run can be resumed. A
    ``threads`` setting applies while training runs; the caller's torch thread count is
    restored afterwards (also on errors and interruption).
    """
    previous_threads = torch.get_num_threads()
    try:
        with _sigterm_as_interrupt():
            return _pretrain(cfg, resume, overwrite)
    finally:
        if cfg.threads is not None and torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


def _pretrain(cfg: PretrainConfig, resume: bool, overwrite: bool) -> Path:
    with contextlib.ExitStack() as stack:
        distributed = mdist.init_distributed()
        is_main = mdist.rank() == 0
        out = Path(cfg.out)
        refused: ValueError | None = None
        if is_main:  # rank 0 alone writes: it claims the folder before any work
            try:
                stack.enter_context(claimed(out, resume=resume, overwrite=overwrite))
            except ValueError as exc:
                refused = exc
        _refuse_together(refused, distributed)
        if cfg.tensorboard:
            require_tensorboard()
        if cfg.batch_size % mdist.world_size() != 0:
            raise ValueError(
                f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                f"{mdist.world_size()}"
            )
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.paired:  # image and text towers: their own data and step (mmcr.training.paired)
            return pretrain_paired(cfg, out, resume)
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        data = load_data(cfg)
        augment = MultiViewAugment(augment_config(cfg))
        # streamed batches come cropped by the workers: the step does the rest of the views
        streamed = data.stream is not None or data.shards is not None
        step_augment = PrecroppedAugment(augment.config) if streamed else augment
        state = build_state(
            cfg,
            data.channels,
            _images_per_epoch(cfg, data),
            device,
            step_augment,
            classes=_class_names(cfg, data),
            num_classes=data.num_classes,
            captions=_captions(cfg, data) if _graph_of_samples(cfg) else None,
        )
        if getattr(state.objective, "uses_labels", False) and data.stream is not None and cfg.skip_bad_images:
            raise ValueError(
                f"objective {cfg.objective!r} uses the images' labels, and skip_bad_images replaces an "
                "unreadable file by another image, whose label it would not get: set skip_bad_images = false"
            )
        ckpt_path = out / CHECKPOINT_NAME
        metrics: dict[str, float] = {}
        ended = False
        if resume:
            metrics, ended = _resume(state, ckpt_path, is_main, shards=data.shards is not None)
        if is_main:
            cfg.save(out / CONFIG_NAME)
            _announce(cfg, state, data)
        _train(state, data, augment, out, metrics, resume=resume, ended=ended, is_main=is_main)
        if distributed:
            dist.barrier()
        return ckpt_path


def _images_per_epoch(cfg: PretrainConfig, data: Data) -> int:
    """The images an epoch's steps take: all of them, or, from shards, what every rank can read."""
    if data.shards is None:
        return len(data.train)
    world = mdist.world_size()
    return data.shards.steps_per_epoch(world, cfg.batch_size // world) * cfg.batch_size


def _class_names(cfg: PretrainConfig, data: Data) -> list[str] | None:
    """The training data's class names by label: the split's own, else its registry entry's."""
    if data.train.classes is not None:
        return list(data.train.classes)
    names = dataset_info(cfg.dataset).class_names
    return None if names is None else list(names)


def _graph_of_samples(cfg: PretrainConfig) -> bool:
    """Whether the recipe's objective takes sample indices (X-CLR's caption graph)."""
    from mmcr.build import build_loss

    return uses_sample_indices(build_loss(cfg))


def _captions(cfg: PretrainConfig, data: Data) -> list[list[str]]:
    """The captions of each training image, in ``data.train``'s order (the graph's rows)."""
    captions = getattr(data.train, "captions", None)
    if captions is not None and len(captions) == len(data.train):
        return [list(texts) for texts in captions]
    if data.stream is not None or data.shards is not None:
        why = "the training images are streamed from files, which carry no captions"
    elif cfg.train_split != "train":
        why = f"train_split {cfg.train_split!r} adds images without captions"
    elif choose_loader(cfg) == "cache":
        why = 'loader = "cache" keeps the pixels and labels only; use loader = "memory"'
    else:
        why = f"data set {cfg.dataset!r} gives its images without captions"
    raise ValueError(
        f'objective {cfg.objective!r} with graph = "captions" needs each training image\'s captions, '
        f'but {why}. Use an image-text data set read into memory (dataset = "emoji-images"), '
        'or a class graph (graph = "class-names")'
    )


def _refuse_together(refused: ValueError | None, distributed: bool) -> None:
    """Raise rank 0's refusal of the output folder on every rank (no rank waits for the others)."""
    message = None if refused is None else str(refused)
    if distributed:
        shared = [message]
        dist.broadcast_object_list(shared, src=0)
        message = shared[0]
    if refused is not None:
        raise refused
    if message is not None:
        raise ValueError(message)


def _train(
    state: TrainState,
    data: Data,
    augment: MultiViewAugment,
    out: Path,
    metrics: dict[str, float],
    *,
    resume: bool,
    ended: bool = False,
    is_main: bool,
) -> None:
    """The loop: steps, logs, the monitor after each epoch, checkpoints, stopping.

    ``ended``: the resumed checkpoint is the run's end (its final monitor and checkpoint
    were done). A checkpoint written at the last step before those (an interrupt between
    them) is finished here: the final monitor runs and the checkpoint says ``"end"``.
    """
    cfg, schedule, device = state.cfg, state.schedule, state.device
    ckpt_path = out / CHECKPOINT_NAME
    resume_step = state.step if resume else None
    sinks = [TensorBoardSink(out / TENSORBOARD_NAME, resume_step)] if cfg.tensorboard and is_main else []
    log = MetricsLog(out / METRICS_NAME, enabled=is_main, resume_step=resume_step, sinks=sinks)
    monitor = ValidationMonitor(
        data.memory,
        data.val,
        augment,
        num_views=cfg.num_views,
        points=cfg.batch_size,
        knn_k=cfg.knn_k,
        knn_temperature=cfg.knn_temperature,
        size=cfg.monitor_size,
        seed=cfg.seed,
    )
    progress = _progress_bar(cfg, state) if is_main else None

    def save(reason: str) -> None:
        if is_main:
            _save(_checkpoint(state, data, metrics, reason), ckpt_path)

    def end_epoch(epoch: int) -> bool:
        """An epoch ended (or the run did): monitor, checkpoint; True to stop here."""
        nonlocal metrics, ended
        last = state.step == schedule.total_steps
        if is_main and ((cfg.eval_every and epoch % cfg.eval_every == 0) or last):
            metrics = monitor(state.network, device)
            log.write({"kind": "epoch", "step": state.step, "epoch": _epoch(state), **metrics})
            if progress is not None:
                progress.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        reason, stop = end_of_epoch(cfg, epoch, last)
        if reason is not None:
            save(reason)
        ended = ended or last
        if stop and is_main:
            print(STOP_MESSAGE.format(epoch), file=sys.stderr)
        return stop

    state.network.train()
    timer = _Rate(cfg.batch_size, state.step)
    skipped: set[int] = set()
    batches = _batches(state, data, skipped)
    # only an objective that uses labels (X-CLR) gets the batch's labels (or, with a graph of
    # the samples, their indices) with its views
    uses_labels = getattr(state.objective, "uses_labels", False)
    by_index = uses_sample_indices(state.objective)
    try:
        for images, labels, indices in batches:
            if by_index:
                if indices is None:
                    raise ValueError(
                        f"objective {cfg.objective!r} needs the batch's sample indices, which "
                        "webdataset shards do not give: read the data into memory"
                    )
                loss, lr = train_step(state, images.to(device, non_blocking=True), indices=indices)
            elif not uses_labels:
                loss, lr = train_step(state, images.to(device, non_blocking=True))
            else:
                loss, lr = train_step(state, images.to(device, non_blocking=True), labels=labels)
            if state.step % cfg.log_every == 0 or state.step == schedule.total_steps:
                record = _step_record(state, loss, lr, timer)
                log.write(record)
                if progress is not None:
                    progress.set_postfix(_postfix(record))
            if progress is not None:
                progress.update(1)
            if cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0:
                save("steps")
            epoch = schedule.epoch_ended(state.step)
            if epoch is not None and end_epoch(epoch):
                break
        if state.step == schedule.total_steps and not ended:
            # resumed from a checkpoint of the last step written before the run's end
            end_epoch(-(-state.step // schedule.steps_per_epoch))
    except KeyboardInterrupt:
        save("interrupted")
        if is_main:
            message = f"interrupted at step {state.step}: checkpoint saved to {ckpt_path}"
            print(f"\n{message}; continue with --resume", file=sys.stderr)
        raise
    except NonFiniteError:
        raise  # the weights of this step are suspect: the last good checkpoint stays
    except Exception:
        # a failure in monitoring, logging or I/O must not cost the training done so far
        save("interrupted")
        raise
    finally:
        batches.close()  # stops the DataLoader workers of the streaming path
        log.close()
        if progress is not None:
            progress.close()
        if skipped and is_main:
            print(f"skipped {len(skipped)} unreadable image files (skip_bad_images)", file=sys.stderr)


def _batches(
    state: TrainState, data: Data, skipped: set[int]
) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], None, None]:
    """This rank's uint8 images, their labels and their indices ``(B / W,)`` in ``data.train``
    of each step from ``state.step`` on (indices ``None`` from shards, which have no rows).

    In memory: rows of ``data.train.images`` ``(B / W, C, H, W)``. Streamed: DataLoader
    workers read the same rows' files and cut their K crops, ``(B / W, K, C, S, S)``, with
    boxes seeded by (seed, epoch, image). From shards: each rank's workers read its shards
    in turn (:func:`~mmcr.data.stream.shard_batches`), also as K crops. The index entries
    of files skipped as unreadable go into ``skipped``.
    """
    cfg, per_epoch = state.cfg, state.schedule.steps_per_epoch
    if data.shards is not None:
        world = mdist.world_size()
        for images, labels in shard_batches(
            data.shards,
            augment_config(cfg),
            num_views=cfg.num_views,
            seed=cfg.seed,
            rank=mdist.rank(),
            world=world,
            local_batch=cfg.batch_size // world,
            start_step=state.step,
            total_steps=state.schedule.total_steps,
            options=loader_options(cfg),
            skipped=skipped,
            shuffle_buffer=cfg.shuffle_buffer,
        ):
            yield images, labels, None
        return
    if data.stream is None:
        for local in local_batches(state, len(data.train)):
            yield data.train.images[local], data.train.labels[local], local
        return

    def keys() -> Iterator[list[tuple[int, int]]]:
        step = state.step
        for local in local_batches(state, len(data.train)):
            yield [(step // per_epoch, i) for i in local.tolist()]
            step += 1

    dataset = CropDataset(data.stream, augment_config(cfg), cfg.num_views, cfg.seed, cfg.skip_bad_images)
    rows = local_batches(state, len(data.train))
    for images in stream_batches(make_loader(dataset, keys(), loader_options(cfg)), skipped):
        local = next(rows)
        yield images, data.train.labels[local], local


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while training runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save(checkpoint: Checkpoint, path: Path) -> None:
    """Write the checkpoint unless its weights or buffers are not finite (the last good one stays)."""
    bad = [k for k, v in checkpoint.model.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        print(
            f"not saving the checkpoint of step {checkpoint.step}: {len(bad)} tensors are not finite "
            f"(e.g. {bad[0]}); {path} keeps the last finite state",
            file=sys.stderr,
        )
        return
    checkpoint.save(path)


# ----------------------------------------------------------------------------- the loop's parts


def _resume(
    state: TrainState, ckpt_path: Path, is_main: bool, *, shards: bool = False
) -> tuple[dict[str, float], bool]:
    """Load ``ckpt_path`` into ``state`` if it exists; returns its last monitor record, and
    whether it is the end of the run (written by the run's end at its last step).

    ``shards``: the run reads webdataset shards, whose sample order depends on ``num_workers``.
    """
    if not ckpt_path.exists():
        if is_main:
            print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)
        return {}, False
    checkpoint = Checkpoint.load(ckpt_path, map_location=state.device)
    changed = config_differences(checkpoint.config, state.cfg.to_dict(), may_differ=RESUMABLE_FIELDS)
    if changed:
        raise ValueError(
            "cannot resume: the checkpoint was trained with a different configuration for "
            + ", ".join(changed)
        )
    load_weights(state.network, checkpoint.model, ckpt_path)
    if checkpoint.optimizer is None:
        raise ValueError(f"cannot resume from {ckpt_path}: it holds no optimiser state")
    state.optimizer.load_state_dict(checkpoint.optimizer)
    if state.momentum is not None and checkpoint.momentum is not None:
        state.momentum.load_state_dict(checkpoint.momentum)
    state.step = checkpoint.step
    if is_main:
        print(f"resuming from {ckpt_path} at step {state.step}/{state.schedule.total_steps}", file=sys.stderr)
        workers = checkpoint.config.get("num_workers", state.cfg.num_workers)
        if shards and workers != state.cfg.num_workers:
            print(
                f"note: the checkpoint's run read its shards with num_workers = {workers} and this one "
                f"with {state.cfg.num_workers}: each worker reads its own shards, so from step "
                f"{state.step} on the images come in another order than that run's",
                file=sys.stderr,
            )
        before = _planned_steps(checkpoint.config, state)
        if before != state.schedule.total_steps:
            print(
                f"note: the checkpoint's run was planned for {before} steps and this one for "
                f"{state.schedule.total_steps}: the learning-rate schedule is re-spanned, so from step "
                f"{state.step} on it differs from that run's",
                file=sys.stderr,
            )
    return dict(checkpoint.metrics), checkpoint.reason == "end" and state.step == state.schedule.total_steps


def _planned_steps(saved: dict[str, Any], state: TrainState) -> int:
    """The total steps the checkpoint's own configuration planned."""
    epochs = int(saved.get("epochs", state.cfg.epochs))
    total = epochs * state.schedule.steps_per_epoch
    max_steps = saved.get("max_steps", state.cfg.max_steps)
    return min(total, int(max_steps)) if max_steps is not None else total


def _checkpoint(state: TrainState, data: Data, metrics: dict[str, float], reason: str) -> Checkpoint:
    return Checkpoint(
        config=state.cfg.to_dict(),
        model=state.network.state_dict(),
        step=state.step,
        in_channels=data.channels,
        optimizer=state.optimizer.state_dict(),
        momentum=state.momentum.state_dict() if state.momentum is not None else None,
        metrics=metrics,
        reason=reason,
    )


def _epoch(state: TrainState) -> float:
    return state.step / state.schedule.steps_per_epoch


class _Rate:
    """Images per second since the previous reading, and seconds since the start."""

    def __init__(self, batch_size: int, step: int) -> None:
        self.batch_size = batch_size
        self.start = self.window_start = time.perf_counter()
        self.window_step = step

    def read(self, step: int) -> tuple[float, float]:
        now = time.perf_counter()
        rate = (step - self.window_step) * self.batch_size / max(now - self.window_start, 1e-9)
        self.window_start, self.window_step = now, step
        return rate, now - self.start


def _step_record(state: TrainState, loss: torch.Tensor, lr: float, timer: _Rate) -> dict[str, Any]:
    rate, elapsed = timer.read(state.step)
    record: dict[str, Any] = {
        "kind": "step",
        "step": state.step,
        "epoch": _epoch(state),
        "loss": float(loss),
        "lr": lr,
        "images_per_s": rate,
        "time": elapsed,
    }
    for name, value in getattr(state.objective, "components", {}).items():
        if name not in ("loss", "batch_size"):
            v = float(value)
            record[name] = None if math.isnan(v) else v
    return record


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    postfix = {"loss": f"{record['loss']:.4f}", "img/s": f"{record['images_per_s']:.0f}"}
    if record.get("ppe") is not None:
        postfix["ppe"] = f"{record['ppe']:.4f}"
    return postfix


def _progress_bar(cfg: PretrainConfig, state: TrainState) -> Any:
    if not cfg.progress:
        return None
    from tqdm import tqdm

    total = state.schedule.total_steps
    return tqdm(total=total, initial=state.step, desc="pretrain", unit="step", dynamic_ncols=True)


def _announce(cfg: PretrainConfig, state: TrainState, data: Data) -> None:
    world = mdist.world_size()
    print(json.dumps({"config": cfg.to_dict(), "world_size": world, "device": str(state.device)}))
    params = sum(p.numel() for p in state.network.parameters()) / 1e6
    print(
        f"{len(data.train)} training images ({len(data.val)} held out for validation), "
        f"{state.schedule.steps_per_epoch} steps/epoch, {state.schedule.total_steps} steps, "
        f"{cfg.num_views} views, network {params:.2f}M parameters",
        file=sys.stderr,
    )
    if data.train.sources:
        print(f"data read from: {', '.join(data.train.sources)}", file=sys.stderr)
    if cfg.bf16 and state.device.type == "cpu" and not _native_cpu_bf16():
        print(
            "note: bf16 autocast on a CPU without native bf16 (no AVX512-BF16 or AMX) is emulated "
            "and can be ten times slower than float32 here; consider --bf16 false (other numbers)",
            file=sys.stderr,
        )


def _native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (Linux flags; unknown elsewhere counts as yes)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags
