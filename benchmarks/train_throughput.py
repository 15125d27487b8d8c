"""Images/s of a full pretraining step, split into its phases.

Runs the step of a recipe (default: configs/fashion_mnist.toml) on this machine and
times each phase: data (index the stored images), augmentation (K views, batched),
forward (encoder + projector), loss, backward + optimiser step. It then runs the same
step with the obvious alternatives in the same process: the plain ``svdvals`` loss and a
per-image augmentation loop, so the share of the step our batched augmentation and
fast loss save is measured, not assumed.

    python benchmarks/train_throughput.py --json results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from loss_speed import plain_loss  # the same plain formula as the loss benchmark (same folder)

from mmcr.data.views import MultiViewAugment, augment_one
from mmcr.config import build_config
from mmcr.optim import build_optimizer
from mmcr.training.pretrain import augment_config, build_loss, build_network, effective_lr

PHASES = ("data", "augment", "forward", "loss", "backward+step")


def load_images(dataset: str, n: int, channels: int, size: int) -> torch.Tensor:
    try:
        from mmcr.data.datasets import load_dataset

        return load_dataset(dataset, "train").images[:n]
    except (FileNotFoundError, ValueError):
        return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def per_image_augment(augment: MultiViewAugment, images: torch.Tensor, k: int) -> torch.Tensor:
    params = augment.sample_params(images, k)
    return torch.stack(
        [
            torch.stack([augment_one(images[n], params, augment.config, (n, v)) for v in range(k)])
            for n in range(images.shape[0])
        ]
    )


def run(recipe: str, steps: int, warmup: int, alternative: bool, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    cfg = build_config(recipe, {"progress": False})
    aug = MultiViewAugment(augment_config(cfg))
    channels = 1 if cfg.augment in ("fashion-mnist", "digits") else 3
    images = load_images(cfg.dataset, 8192, channels, aug.config.crop_size)
    network = build_network(cfg, images.shape[1])
    if cfg.channels_last:
        network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loss_fn: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda z: plain_loss(z, cfg.lmbda)) if alternative else build_loss(cfg)
    )
    optimizer = build_optimizer(cfg.optimizer, network, lr=effective_lr(cfg), weight_decay=cfg.weight_decay)
    b, k = cfg.batch_size, cfg.num_views
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    gen = torch.Generator().manual_seed(0)
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, images.shape[0], (b,), generator=gen)
        batch = images[idx]
        t1 = time.perf_counter()
        with torch.no_grad():
            views = per_image_augment(aug, batch, k) if alternative else aug(batch, k, generator=gen)
        x = views.flatten(0, 1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t2 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            _, z = network(x)
        z = z.float().reshape(b, k, -1)
        t3 = time.perf_counter()
        loss = loss_fn(z)
        t4 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t5 = time.perf_counter()
        if step >= warmup:
            for name, (a, c) in zip(PHASES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)], strict=True):
                times[name].append(c - a)
    medians = {p: statistics.median(v) for p, v in times.items()}
    total = sum(medians.values())
    result = {f"{p}_ms": 1e3 * medians[p] for p in PHASES}
    result["step_ms"] = 1e3 * total
    result["images_per_s"] = b / total
    result["augment_plus_loss_share"] = (medians["augment"] + medians["loss"]) / total
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/fashion_mnist.toml", help="recipe to time")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median per phase)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-alternative", action="store_true", help="skip the svdvals + per-image run")
    parser.add_argument("--json", type=Path, default=Path("results/train_throughput.json"))
    args = parser.parse_args()

    rows = {"mmcr": run(args.config, args.steps, args.warmup, False, args.threads)}
    if not args.no_alternative:
        rows["svdvals + per-image augmentation"] = run(
            args.config, max(3, args.steps // 3), 1, True, args.threads
        )
    header = (
        f"{'pipeline':<34}" + "".join(f"{p + ' ms':>18}" for p in PHASES) + f"{'img/s':>9}{'aug+loss':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(
            f"{name:<34}"
            + "".join(f"{r[p + '_ms']:>18.1f}" for p in PHASES)
            + f"{r['images_per_s']:>9.0f}{100 * r['augment_plus_loss_share']:>9.1f}%"
        )
    if len(rows) == 2:
        ours, alt = rows["mmcr"], rows["svdvals + per-image augmentation"]
        print(f"step speed-up over the alternative: {alt['step_ms'] / ours['step_ms']:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "recipe": args.config,
                "torch": torch.__version__,
                "threads": args.threads,
                "machine": platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
