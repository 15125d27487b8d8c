"""The pretraining loop, top to bottom: data, views, network, objective, optimiser, logs, checkpoints.

Reproducibility is by construction: the epoch's sample order is drawn from a generator
seeded by ``(seed, epoch)`` and every step's views from one seeded by
``(seed, step, rank)``, so no random state needs saving and ``--resume`` from any
checkpoint (also mid-epoch, after an interruption) follows the trajectory of an
uninterrupted run exactly.

Under ``torchrun`` (``WORLD_SIZE > 1``) every process takes a contiguous share of each
global batch of ``batch_size`` images, the network is wrapped in
DistributedDataParallel, the objective sees the global batch (gathered with exact
gradients), and rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mmcr import distributed as mdist
from mmcr.data.datasets import ImageDataset, load_dataset, synthetic_dataset, train_val_split
from mmcr.data.views import AugmentConfig, MultiViewAugment, preset
from mmcr.evaluation.embed import batched_apply, batched_geometry, multiview_embeddings
from mmcr.evaluation.knn import knn_accuracy
from mmcr.geometry.metrics import effective_rank
from mmcr.geometry.mutual_information import mi_lower_bound
from mmcr.models import MMCRNetwork, build_encoder, build_projector, convert_sync_batchnorm, to_channels_last
from mmcr.models.momentum import MomentumEncoder, cosine_tau
from mmcr.objectives import build_objective
from mmcr.objectives.base import check_finite
from mmcr.checkpoint import load_checkpoint, save_checkpoint
from mmcr.config import PretrainConfig
from mmcr.optim import build_optimizer, lr_at, scale_lr, set_lr

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"


# ----------------------------------------------------------------------------- set-up


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", mdist.local_rank() if mdist.is_distributed() else 0)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def init_distributed() -> bool:
    """Initialise torch.distributed from torchrun's environment; False for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(mdist.local_rank())
    dist.init_process_group(backend=backend)
    return True


@dataclass
class Data:
    """The pretraining images and the labelled validation split used for monitoring."""

    train: ImageDataset  # pretraining images (labels may be -1)
    memory: ImageDataset  # labelled training images: the kNN monitor's memory bank
    val: ImageDataset  # held-out labelled images (model selection only)
    channels: int
    num_classes: int


def load_data(cfg: PretrainConfig) -> Data:
    """Load the training split and hold out a stratified validation split (fixed seed)."""
    if cfg.dataset == "synthetic":
        size = cfg.image_size or cfg.crop_size or 32
        labelled = synthetic_dataset(
            n=cfg.synthetic_size, channels=3, size=size, num_classes=10, seed=cfg.seed
        )
        extra = None
    else:
        labelled = load_dataset(cfg.dataset, "train", cfg.data_dir, image_size=cfg.image_size)
        extra = None
        if cfg.train_split not in ("train",):
            splits = cfg.train_split.split("+")
            if splits[0] != "train" or any(s == "train" for s in splits[1:]):
                raise ValueError(f"train_split must be 'train' or 'train+<other>', got {cfg.train_split!r}")
            extra = [
                load_dataset(cfg.dataset, s, cfg.data_dir, image_size=cfg.image_size) for s in splits[1:]
            ]
    train_idx, val_idx = train_val_split(labelled.labels, cfg.val_fraction, cfg.seed)
    memory = labelled.subset(train_idx)
    val = labelled.subset(val_idx)
    train = memory
    if extra:
        train = ImageDataset(
            images=torch.cat([memory.images, *[e.images for e in extra]]),
            labels=torch.cat([memory.labels, *[e.labels for e in extra]]),
            num_classes=memory.num_classes,
            name=memory.name,
            classes=memory.classes,
        )
    return Data(
        train=train, memory=memory, val=val, channels=labelled.channels, num_classes=labelled.num_classes
    )


def augment_config(cfg: PretrainConfig) -> AugmentConfig:
    config = preset(cfg.augment, crop_size=cfg.crop_size)
    if cfg.crop_scale is not None:
        config = dataclasses.replace(config, crop_scale=(cfg.crop_scale[0], cfg.crop_scale[1]))
    return config


def build_network(cfg: PretrainConfig, in_channels: int) -> MMCRNetwork:
    kwargs: dict[str, Any] = dict(cfg.encoder_args)
    if cfg.encoder_width is not None:
        kwargs["width"] = cfg.encoder_width
    if cfg.maxpool is not None:
        kwargs["maxpool"] = cfg.maxpool
    encoder = build_encoder(cfg.encoder, in_channels=in_channels, **kwargs)
    feature_dim = int(encoder.feature_dim)  # type: ignore[arg-type]
    projector = build_projector(feature_dim, cfg.projector_hidden, cfg.projector_dim)
    return MMCRNetwork(encoder, projector)


def build_loss(cfg: PretrainConfig) -> nn.Module:
    kwargs = dict(cfg.objective_args)
    if cfg.objective == "mmcr":
        kwargs.setdefault("lmbda", cfg.lmbda)
    elif cfg.lmbda:
        raise ValueError(f"lmbda is an MMCR option; objective {cfg.objective!r} takes objective_args")
    if cfg.momentum_encoder and cfg.objective != "mmcr":
        raise ValueError("momentum_encoder is implemented for the MMCR objective only")
    return build_objective(cfg.objective, **kwargs)


def effective_lr(cfg: PretrainConfig) -> float:
    """LARS follows the linear scaling rule lr x B / 256; the other optimisers take lr as given."""
    return scale_lr(cfg.lr, cfg.batch_size) if cfg.optimizer == "lars" else cfg.lr


# ----------------------------------------------------------------------------- logging


class MetricsLog:
    """JSON-lines metrics, written by rank 0 only, truncated to ``step`` on resume."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        kept: list[str] = []
        if resume_step is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by the interruption
                if record.get("step", 0) <= resume_step:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _float(x: torch.Tensor | float) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


# ----------------------------------------------------------------------------- monitoring


@torch.no_grad()
def monitor(
    network: MMCRNetwork,
    data: Data,
    augment: MultiViewAugment,
    cfg: PretrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """Validation kNN accuracy of backbone features and the geometry of projected val views."""
    was_training = network.training
    network.eval()
    encoder = network.encoder
    memory_size = min(len(data.memory), 10000)
    memory_idx = torch.randperm(len(data.memory), generator=torch.Generator().manual_seed(cfg.seed))[
        :memory_size
    ]
    memory = data.memory.subset(memory_idx)
    feats_mem = batched_apply(encoder, memory.images, augment.config, device=device)
    feats_val = batched_apply(encoder, data.val.images, augment.config, device=device)
    out: dict[str, float] = {}
    if len(data.val) > 0:
        out["knn_val_acc"] = knn_accuracy(
            feats_mem,
            memory.labels,
            feats_val,
            data.val.labels,
            k=cfg.knn_k,
            temperature=cfg.knn_temperature,
            num_classes=data.num_classes,
        )
    images = data.val.images if len(data.val) >= 2 else memory.images
    images = images[: cfg.monitor_size]
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed + 7)
    z_all = multiview_embeddings(network, images, augment, cfg.num_views, generator=generator, device=device)
    geometry = batched_geometry(z_all, cfg.batch_size)
    geometry.pop("batch_points")
    out.update({f"val_{key}": value for key, value in geometry.items()})
    if z_all.shape[1] >= 2:
        mi = mi_lower_bound(z_all)
        out["val_mi_lower_bound"] = mi["bound"]
        out["val_mi_entropy"] = mi["entropy"]
    out["val_feature_effective_rank"] = effective_rank((feats_val if len(feats_val) else feats_mem)[:4096])
    network.train(was_training)
    return out


# ----------------------------------------------------------------------------- training


def _step_generator(cfg: PretrainConfig, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 1009 + rank)


def _epoch_order(cfg: PretrainConfig, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))


def pretrain(cfg: PretrainConfig, resume: bool = False) -> Path:
    """Run pretraining as configured; returns the path of the final checkpoint.

    With ``resume=True`` training continues from ``<out>/last.pt`` if it exists. A
    ``threads`` setting applies while training runs; the caller's torch thread count is
    restored afterwards (also on errors and interruption).
    """
    previous_threads = torch.get_num_threads()
    try:
        return _pretrain(cfg, resume)
    finally:
        if cfg.threads is not None and torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


def _pretrain(cfg: PretrainConfig, resume: bool) -> Path:
    distributed = init_distributed()
    rank, world = mdist.rank(), mdist.world_size()
    is_main = rank == 0
    if cfg.batch_size % world != 0:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    data = load_data(cfg)
    aug_cfg = augment_config(cfg)
    augment = MultiViewAugment(aug_cfg)
    network = build_network(cfg, data.channels).to(device)
    if cfg.channels_last:
        network = to_channels_last(network)  # type: ignore[assignment]
    if distributed and cfg.sync_batchnorm:
        if device.type == "cpu":
            # torch's SyncBatchNorm runs on GPUs only; say so rather than fail mid-step
            if rank == 0:
                print("sync_batchnorm ignored on CPU: each process normalises its own batch", file=sys.stderr)
        else:
            network = convert_sync_batchnorm(network)  # type: ignore[assignment]
    momentum_net = MomentumEncoder(network) if cfg.momentum_encoder else None
    loss_fn = build_loss(cfg).to(device)
    optimizer = build_optimizer(
        cfg.optimizer, network, lr=effective_lr(cfg), weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )

    local_batch = cfg.batch_size // world
    steps_per_epoch = len(data.train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(data.train)} training images")
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps)

    step = 0
    last_metrics: dict[str, float] = {}
    ckpt_path = out / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        _check_resume_config(state["config"], cfg)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if momentum_net is not None and "momentum" in state:
            momentum_net.load_state_dict(state["momentum"])
        step = int(state["step"])
        last_metrics = dict(state.get("metrics", {}))
        if is_main:
            print(f"resuming from {ckpt_path} at step {step}/{total_steps}", file=sys.stderr)
    elif resume and is_main:
        print(f"no checkpoint at {ckpt_path}: starting from scratch", file=sys.stderr)

    model: nn.Module = network
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    log = MetricsLog(out / METRICS_NAME, enabled=is_main, resume_step=step if resume else None)
    if is_main:
        cfg.save(out / CONFIG_NAME)
        print(json.dumps({"config": cfg.to_dict(), "world_size": world, "device": str(device)}, indent=None))
        print(
            f"{len(data.train)} training images ({len(data.val)} held out for validation), "
            f"{steps_per_epoch} steps/epoch, {total_steps} steps, {cfg.num_views} views, "
            f"network {sum(p.numel() for p in network.parameters()) / 1e6:.2f}M parameters",
            file=sys.stderr,
        )

    def save(reason: str) -> None:
        if not is_main:
            return
        state = {
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": step / steps_per_epoch,
            "config": cfg.to_dict(),
            "metrics": last_metrics,
            "reason": reason,
            "num_classes": data.num_classes,
            "in_channels": data.channels,
        }
        if momentum_net is not None:
            state["momentum"] = momentum_net.state_dict()
        save_checkpoint(state, ckpt_path)

    progress = None
    if is_main and cfg.progress:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)
    autocast_dtype = torch.bfloat16 if cfg.bf16 else None
    network.train()
    t_start = time.perf_counter()
    images_seen = 0
    window_start, window_images = time.perf_counter(), 0
    try:
        while step < total_steps:
            epoch, offset = divmod(step, steps_per_epoch)
            order = _epoch_order(cfg, epoch, len(data.train))
            for pos in range(offset, steps_per_epoch):
                if step >= total_steps:
                    break
                batch = order[pos * cfg.batch_size : (pos + 1) * cfg.batch_size]
                local = batch[rank * local_batch : (rank + 1) * local_batch]
                images = data.train.images[local].to(device, non_blocking=True)
                with torch.no_grad():
                    views = augment(images, cfg.num_views, generator=_step_generator(cfg, step, rank))
                b, k = views.shape[:2]
                x = views.flatten(0, 1)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = lr_at(
                    step,
                    schedule=cfg.schedule,
                    total_steps=total_steps,
                    base_lr=effective_lr(cfg),
                    warmup_steps=warmup_steps,
                )
                set_lr(optimizer, lr)
                with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=cfg.bf16):
                    _, z = model(x)
                    z_m = momentum_net(x)[1] if momentum_net is not None else None
                z = z.float().reshape(b, k, -1)
                check_finite(z, name="projector outputs", step=step)
                if z_m is not None:
                    loss = loss_fn(z, z_m.float().reshape(b, k, -1))
                else:
                    loss = loss_fn(z)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if momentum_net is not None:
                    tau = (
                        cosine_tau(step, total_steps, cfg.momentum_tau)
                        if cfg.momentum_tau_schedule == "cosine"
                        else cfg.momentum_tau
                    )
                    momentum_net.update(network, tau)
                step += 1
                images_seen += cfg.batch_size
                window_images += cfg.batch_size
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    rate = window_images / max(now - window_start, 1e-9)
                    window_start, window_images = now, 0
                    components = getattr(loss_fn, "components", {})
                    record: dict[str, Any] = {
                        "kind": "step",
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "loss": _float(loss),
                        "lr": lr,
                        "images_per_s": rate,
                        "time": now - t_start,
                    }
                    for name, value in components.items():
                        if name not in ("loss", "batch_size"):
                            v = _float(value)
                            record[name] = None if math.isnan(v) else v
                    log.write(record)
                    if progress is not None:
                        postfix = {"loss": f"{record['loss']:.4f}", "img/s": f"{rate:.0f}"}
                        if record.get("ppe") is not None:
                            postfix["ppe"] = f"{record['ppe']:.4f}"
                        progress.set_postfix(postfix)
                if progress is not None:
                    progress.update(1)
                epoch_done = step % steps_per_epoch == 0 or step == total_steps
                if epoch_done:
                    done_epochs = math.ceil(step / steps_per_epoch)
                    last = step == total_steps
                    if is_main and ((cfg.eval_every and done_epochs % cfg.eval_every == 0) or last):
                        last_metrics = monitor(network, data, augment, cfg, device)
                        log.write(
                            {"kind": "epoch", "step": step, "epoch": step / steps_per_epoch, **last_metrics}
                        )
                        if progress is not None:
                            progress.write(
                                f"epoch {done_epochs}: "
                                + ", ".join(f"{k} {v:.4f}" for k, v in last_metrics.items())
                            )
                    stop = cfg.stop_at_epoch is not None and done_epochs >= cfg.stop_at_epoch
                    if last or stop or (cfg.checkpoint_every and done_epochs % cfg.checkpoint_every == 0):
                        save("end" if last else "epoch")
                    if stop and not last:
                        if is_main:
                            print(
                                f"stopping after epoch {done_epochs} (stop_at_epoch); continue with --resume",
                                file=sys.stderr,
                            )
                        return _finish(distributed, ckpt_path, progress)
        if step == total_steps and not ckpt_path.exists():
            save("end")
    except KeyboardInterrupt:
        save("interrupted")
        if is_main:
            print(
                f"\ninterrupted at step {step}: checkpoint saved to {ckpt_path}; continue with --resume",
                file=sys.stderr,
            )
        raise
    return _finish(distributed, ckpt_path, progress)


def _finish(distributed: bool, ckpt_path: Path, progress: Any) -> Path:
    if progress is not None:
        progress.close()
    if distributed:
        dist.barrier()
    return ckpt_path


# Fields that may differ between a checkpoint and the run resuming it.
_RESUME_SAFE = {
    "stop_at_epoch",
    "epochs",
    "max_steps",
    "out",
    "progress",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "threads",
    "device",
    "data_dir",
    "monitor_size",
}


def _check_resume_config(saved: dict[str, Any], cfg: PretrainConfig) -> None:
    current = cfg.to_dict()
    changed = [k for k, v in saved.items() if k not in _RESUME_SAFE and current.get(k) != v]
    if changed:
        raise ValueError(
            "cannot resume: the checkpoint was trained with a different configuration for "
            + ", ".join(f"{k} ({saved[k]!r} -> {current.get(k)!r})" for k in changed)
        )
