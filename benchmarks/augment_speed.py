"""Throughput of multi-view augmentation: batched MultiViewAugment vs a per-image loop vs kornia.

All three run the same operations (the ``cifar`` preset: random resized crop 32 px, scale
0.08-1, horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2,
normalisation) on uint8 images of 3 x 32 x 32, making K = 2 views of each.

Throughput is counted in output views per second and reported as images/s: a batch of
256 images with K = 2 makes 512 augmented images. Each timing includes the random
parameter draws and the uint8 -> float conversion; the figure is the median of
``--repeats`` runs after one warm-up run.

    PYTHONPATH=src python benchmarks/augment_speed.py --json /tmp/augment_speed.json

On a machine whose cores are shared with other busy processes, OpenMP's default
spin-waiting makes every multi-threaded kernel wait for a descheduled worker thread, which
slows the batched paths (many kernels) far more than the per-image loop (tiny,
single-threaded kernels). ``OMP_WAIT_POLICY=PASSIVE`` in the environment, or
``--threads 1``, avoids it; the JSON records the policy, the load average and the CPU
time next to the wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmcr.data import MultiViewAugment, preset

# The per-image pipeline is the tests' reference path (the oracle of the batched one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.augment_reference import augment_one

NUM_VIEWS = 2
IMAGE_SIZE = 32


def _measure(fn: Callable[[], torch.Tensor], repeats: int) -> dict[str, float]:
    """Median and best wall-clock seconds of ``repeats`` runs, and the median CPU seconds
    of this process (on a shared machine, CPU time shows how much of the wall time was
    waiting for a core)."""
    fn()  # warm-up: first-call allocations and dispatch caches
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_seconds": statistics.median(wall),
        "min_seconds": min(wall),
        "median_cpu_seconds": statistics.median(cpu),
    }


def _batched(augment: MultiViewAugment, images: torch.Tensor) -> Callable[[], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return lambda: augment(images, NUM_VIEWS, generator)


def _per_image_loop(augment: MultiViewAugment, images: torch.Tensor) -> Callable[[], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def run() -> torch.Tensor:
        params = augment.sample_params(images, NUM_VIEWS, generator)
        views = [
            torch.stack(
                [augment_one(images[n], params, augment.config, (n, k)) for k in range(NUM_VIEWS)]
            )
            for n in range(images.shape[0])
        ]
        return torch.stack(views)

    return run


def _kornia(images: torch.Tensor) -> Callable[[], torch.Tensor] | None:
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    config = preset("cifar")
    assert config.mean is not None and config.std is not None
    pipeline = torch.nn.Sequential(
        K.RandomResizedCrop(
            (config.crop_size, config.crop_size), scale=config.crop_scale, ratio=config.crop_ratio
        ),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.Normalize(mean=torch.tensor(config.mean), std=torch.tensor(config.std)),
    )
    n = images.shape[0]

    def run() -> torch.Tensor:
        x = images.float().div_(255.0).repeat_interleave(NUM_VIEWS, dim=0)
        out: torch.Tensor = pipeline(x)
        return out.view(n, NUM_VIEWS, *out.shape[1:])

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=str, default=None, help="write the results here")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    parser.add_argument(
        "--loop-repeats",
        type=int,
        default=3,
        help="timed runs for the (slow) per-image loop",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.loop_repeats < 1:
        parser.error("--repeats and --loop-repeats must be >= 1")

    torch.set_num_threads(args.threads)
    augment = MultiViewAugment(preset("cifar"))
    generator = torch.Generator().manual_seed(1234)
    rows: list[dict[str, Any]] = []
    for batch in args.batches:
        images = torch.randint(
            0, 256, (batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator
        )
        methods: list[tuple[str, Callable[[], torch.Tensor] | None, int]] = [
            ("batched (mmcr)", _batched(augment, images), args.repeats),
            ("per-image loop (mmcr)", _per_image_loop(augment, images), args.loop_repeats),
            ("batched (kornia)", _kornia(images), args.repeats),
        ]
        for name, fn, repeats in methods:
            if fn is None:
                continue
            timing = _measure(fn, repeats)
            rows.append(
                {
                    "method": name,
                    "batch_images": batch,
                    "num_views": NUM_VIEWS,
                    "output_images": batch * NUM_VIEWS,
                    **timing,
                    "images_per_second": batch * NUM_VIEWS / timing["median_seconds"],
                    "best_images_per_second": batch * NUM_VIEWS / timing["min_seconds"],
                    "repeats": repeats,
                }
            )

    print(
        f"augmentation throughput, {IMAGE_SIZE}x{IMAGE_SIZE}x3 uint8 -> K={NUM_VIEWS} views, "
        f"torch {torch.__version__}, {args.threads} thread(s); images/s = output views/s "
        "(median of repeats; best = fastest repeat; speed-ups from medians)"
    )
    header = f"{'method':<24}{'batch':>7}{'views':>7}{'ms':>10}{'images/s':>12}{'best':>10}"
    header += f"{'cpu ms':>9}{'vs loop':>9}{'vs kornia':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        same = [r for r in rows if r["batch_images"] == row["batch_images"]]
        loop = next((r for r in same if r["method"].startswith("per-image")), None)
        kornia = next((r for r in same if "kornia" in r["method"]), None)
        row["speedup_vs_loop"] = (
            row["images_per_second"] / loop["images_per_second"] if loop else None
        )
        row["speedup_vs_kornia"] = (
            row["images_per_second"] / kornia["images_per_second"] if kornia else None
        )
        vs_loop = f"{row['speedup_vs_loop']:.1f}x" if loop else "-"
        vs_kornia = f"{row['speedup_vs_kornia']:.2f}x" if kornia else "-"
        print(
            f"{row['method']:<24}{row['batch_images']:>7}{row['output_images']:>7}"
            f"{row['median_seconds'] * 1e3:>10.1f}{row['images_per_second']:>12.0f}"
            f"{row['best_images_per_second']:>10.0f}{row['median_cpu_seconds'] * 1e3:>9.1f}"
            f"{vs_loop:>9}{vs_kornia:>11}"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    result: dict[str, Any] = {
        "benchmark": "augment_speed",
        "unit": "images_per_second counts output views (batch_images x num_views) per second",
        "ops": "RRC(32, 0.08-1), flip 0.5, jitter(0.4,0.4,0.4,0.1) p 0.8, gray 0.2, normalise",
        "image_size": IMAGE_SIZE,
        "channels": 3,
        "num_views": NUM_VIEWS,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(load) if load is not None else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "results": rows,
    }
    try:
        import kornia

        result["kornia"] = kornia.__version__
    except ImportError:
        result["kornia"] = None
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
