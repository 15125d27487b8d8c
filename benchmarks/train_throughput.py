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
import sys
import time
from pathlib import Path

import torch
from loss_speed import plain_loss  # the same plain formula as the loss benchmark (same folder)

from mmcr.build import augment_config, resolve_device
from mmcr.config import build_config
from mmcr.data import MultiViewAugment, dataset_info, load_dataset
from mmcr.training import build_state, train_step

# The per-image pipeline is the tests' reference path (the oracle of the batched one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.augment_reference import augment_one

PHASES = ("data", "augment", "forward", "loss", "backward+step")


def load_images(dataset: str, n: int, channels: int, size: int) -> torch.Tensor:
    try:
        return load_dataset(dataset, "train").images[:n]
    except (FileNotFoundError, ValueError):
        return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


class PerImageAugment(MultiViewAugment):
    """The same views, made one image and one view at a time (the obvious alternative)."""

    def forward(
        self, images: torch.Tensor, num_views: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        params = self.sample_params(images, num_views, generator)
        return torch.stack(
            [
                torch.stack([augment_one(images[n], params, self.config, (n, v)) for v in range(num_views)])
                for n in range(images.shape[0])
            ]
        )


def run(recipe: str, steps: int, warmup: int, alternative: bool, threads: int) -> dict[str, float]:
    """Median seconds of each phase of :func:`mmcr.training.train_step` over ``steps`` steps."""
    torch.set_num_threads(threads)
    cfg = build_config(recipe, {"progress": False, "device": "cpu"})
    augment = (PerImageAugment if alternative else MultiViewAugment)(augment_config(cfg))
    images = load_images(cfg.dataset, 8192, dataset_info(cfg.dataset).channels, augment.config.crop_size)
    torch.manual_seed(cfg.seed)
    state = build_state(cfg, images.shape[1], images.shape[0], resolve_device(cfg.device), augment)
    if alternative:
        state.objective = lambda z: plain_loss(z, cfg.lmbda)
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    gen = torch.Generator().manual_seed(0)
    marks: dict[str, float] = {}

    def mark(phase: str) -> None:
        marks[phase] = time.perf_counter()

    for step in range(warmup + steps):
        t0 = time.perf_counter()
        batch = images[torch.randint(0, images.shape[0], (cfg.batch_size,), generator=gen)]
        mark("data")
        train_step(state, batch, phases=mark)
        if step >= warmup:
            ends = [marks["data"], marks["augment"], marks["forward"], marks["loss"], marks["optimizer"]]
            starts = [t0, *ends[:-1]]
            for name, start, end in zip(PHASES, starts, ends, strict=True):
                times[name].append(end - start)
    medians = {p: statistics.median(v) for p, v in times.items()}
    total = sum(medians.values())
    result = {f"{p}_ms": 1e3 * medians[p] for p in PHASES}
    result["step_ms"] = 1e3 * total
    result["images_per_s"] = cfg.batch_size / total
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
