"""Step time of the default recipe on 1 and 2 gloo processes, and the cost of the gather.

The default recipe (configs/fashion_mnist.toml: the small ConvNet, batch 256, K = 2 views,
Adam, channels-last) runs its training step (augment the local share of the global batch,
forward, MMCR loss on the global batch, backward with DDP's gradient all-reduce, optimiser
step) in each of these set-ups, with the total number of torch threads fixed:

- ``1x2``: one process, two intra-op threads (no process group, no DDP, no gather);
- ``2x1``: two gloo processes with one thread each, 128 images per process;
- ``1x1``: one process, one thread (a reference for the per-core work).

For every step the benchmark records the wall time of the step and of its phases, and the
time spent in :func:`mmcr.distributed.gather_with_grad`: its forward (an all-gather of the
batch sizes, then of the centroids) and the all-reduce in its backward, by wrapping both in
the benchmark's processes. Gather times include waiting for the slower rank: on a 2-core
machine the collective is where the two processes meet. The table shows medians over
``--steps`` steps after ``--warmup`` steps, pooled over ``--rounds`` rounds that alternate
the set-ups (the machine may be shared; compare ratios, not absolute times).

Images: the Fashion-MNIST training set if it is on this machine (see mmcr.data), else
synthetic 1 x 28 x 28 images.

    python benchmarks/ddp_scaling.py --json results/ddp_scaling.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mmcr.distributed as mdist
import mmcr.objectives.mmcr as mmcr_objective
from mmcr.build import augment_config
from mmcr.config import PretrainConfig, build_config
from mmcr.data import MultiViewAugment, load_dataset, synthetic_dataset
from mmcr.training import build_state, train_step
from mmcr.training.step import local_batches

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist.toml"
PHASES = ("augment", "forward", "backward", "optimizer", "gather_forward", "gather_backward", "cpu")
COLLECTIVE_TIMEOUT_S = 120.0
Records = list[dict[str, float]]  # one dict of seconds per step


@dataclass(frozen=True)
class Setup:
    """``world`` processes with ``threads`` intra-op threads each."""

    world: int
    threads: int

    @property
    def name(self) -> str:
        return f"{self.world}x{self.threads}"


def parse_setups(text: str) -> list[Setup]:
    setups = []
    for item in text.split(","):
        world, threads = (int(v) for v in item.lower().split("x"))
        if world < 1 or threads < 1:
            raise ValueError(f"set-up {item!r}: processes and threads must be >= 1")
        setups.append(Setup(world, threads))
    return setups


# ----------------------------------------------------------------------------- gather timing


class GatherTimer:
    """Seconds spent in gather_with_grad's forward and in its backward all-reduce, per step."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0

    def reset(self) -> None:
        self.forward = 0.0
        self.backward = 0.0

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the gather the MMCR loss calls, and the backward of its autograd Function."""
        real_gather = mmcr_objective.gather_with_grad
        real_backward = mdist._GatherWithGrad.backward

        def timed_gather(x: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            try:
                return real_gather(x)
            finally:
                self.forward += time.perf_counter() - start

        def timed_backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            try:
                return real_backward(ctx, grad)
            finally:
                self.backward += time.perf_counter() - start

        mmcr_objective.gather_with_grad = timed_gather
        mdist._GatherWithGrad.backward = staticmethod(timed_backward)  # type: ignore[method-assign]
        try:
            yield
        finally:
            mmcr_objective.gather_with_grad = real_gather
            mdist._GatherWithGrad.backward = staticmethod(real_backward)  # type: ignore[method-assign]


# ----------------------------------------------------------------------------- one process


def load_images(cfg: PretrainConfig, synthetic: bool) -> tuple[torch.Tensor, str]:
    """uint8 (N, 1, 28, 28): Fashion-MNIST's training images if present, else synthetic ones."""
    if not synthetic:
        try:
            return load_dataset(cfg.dataset, "train", cfg.data_dir).images, cfg.dataset
        except (FileNotFoundError, ValueError):
            pass
    data = synthetic_dataset(n=8192, channels=1, size=28, num_classes=10, seed=cfg.seed)
    return data.images, "synthetic 1x28x28"


def train_steps(cfg: PretrainConfig, images: torch.Tensor, total_steps: int) -> Records:
    """Run :func:`mmcr.training.train_step` ``total_steps`` times; per-step phase times (seconds)."""
    torch.manual_seed(cfg.seed)
    augment = MultiViewAugment(augment_config(cfg))
    state = build_state(cfg, images.shape[1], images.shape[0], torch.device("cpu"), augment)
    timer = GatherTimer()
    records: Records = []
    marks: dict[str, float] = {}

    def mark(phase: str) -> None:
        marks[phase] = time.perf_counter()

    state.network.train()
    with timer.installed():
        for local in itertools.islice(local_batches(state, images.shape[0]), total_steps):
            timer.reset()
            c0 = time.process_time()
            t0 = time.perf_counter()
            loss, _ = train_step(state, images[local], phases=mark)
            records.append(
                {
                    "step": marks["optimizer"] - t0,
                    "cpu": time.process_time() - c0,
                    "augment": marks["augment"] - t0,
                    "forward": marks["loss"] - marks["augment"],
                    "backward": marks["backward"] - marks["loss"],
                    "optimizer": marks["optimizer"] - marks["backward"],
                    "gather_forward": timer.forward,
                    "gather_backward": timer.backward,
                    "loss": float(loss),
                }
            )
    return records


def _worker(rank: int, setup: Setup, spec: dict[str, Any], store_path: str, result_dir: str) -> None:
    """Body of every benchmark process: join the group (W > 1), train, save this rank's times."""
    torch.set_num_threads(setup.threads)
    if setup.world > 1:
        dist.init_process_group(
            backend="gloo",
            store=dist.FileStore(store_path, setup.world),
            rank=rank,
            world_size=setup.world,
            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
        )
    try:
        cfg = build_config(spec["recipe"], spec["overrides"])
        images, _ = load_images(cfg, spec["synthetic"])
        records = train_steps(cfg, images, spec["warmup"] + spec["steps"])
    finally:
        if setup.world > 1:
            dist.destroy_process_group()
    target = Path(result_dir) / f"rank{rank}.json"
    target.write_text(json.dumps(records))


def run_setup(setup: Setup, spec: dict[str, Any], timeout: float) -> list[Records]:
    """Spawn ``setup.world`` processes; returns each rank's per-step records."""
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        context = mp.start_processes(
            _worker,
            args=(setup, spec, str(Path(tmp) / "store"), tmp),
            nprocs=setup.world,
            join=False,
            daemon=True,
            start_method="spawn",
        )
        assert context is not None
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic())), grace_period=5):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"set-up {setup.name} did not finish within {timeout:.0f} s")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
                    process.join(5)
        return [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(setup.world)]


# ----------------------------------------------------------------------------- report


def summarise(setup: Setup, rounds: list[list[Records]], warmup: int, batch: int) -> dict[str, Any]:
    """Medians over the timed steps of every round; rank 0's phases, the slowest rank's step."""
    steps: list[float] = []
    timed_step_walls: list[float] = []
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for ranks in rounds:
        timed = [records[warmup:] for records in ranks]
        for i in range(len(timed[0])):
            steps.append(max(records[i]["step"] for records in timed))
            timed_step_walls.append(timed[0][i]["step"])
            for name in PHASES:
                phases[name].append(timed[0][i][name])
    step = statistics.median(steps)
    pairs = zip(phases["gather_forward"], phases["gather_backward"], strict=True)
    gather = statistics.median([forward + backward for forward, backward in pairs])
    return {
        "setup": setup.name,
        "processes": setup.world,
        "threads_per_process": setup.threads,
        "steps_timed": len(steps),
        "step_s_median": step,
        "step_s_quartiles": statistics.quantiles(steps, n=4) if len(steps) >= 2 else [step] * 3,
        "images_per_s": batch / step,
        **{f"{name}_s_median": statistics.median(values) for name, values in phases.items()},
        "gather_s_median": gather,
        "gather_share": gather / step,
        # CPU seconds of rank 0's process (all its threads) per wall second of its steps: at
        # most the thread count; less means its threads waited for a core (a shared machine)
        "cpu_per_wall": sum(phases["cpu"]) / sum(timed_step_walls),
        "first_step_loss": rounds[0][0][0]["loss"],
    }


def format_table(rows: list[dict[str, Any]], baseline: str) -> str:
    base = next((r for r in rows if r["setup"] == baseline), rows[0])
    header = (
        f"{'set-up':>7} {'step ms':>8} {'img/s':>7} {'speed-up':>8} {'augment':>8} {'fwd+loss':>8} "
        f"{'backward':>8} {'optim':>6} {'gather fwd':>10} {'gather bwd':>10} {'gather %':>8} {'cpu/wall':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['setup']:>7} {1e3 * r['step_s_median']:8.1f} {r['images_per_s']:7.0f} "
            f"{base['step_s_median'] / r['step_s_median']:7.2f}x {1e3 * r['augment_s_median']:8.1f} "
            f"{1e3 * r['forward_s_median']:8.1f} {1e3 * r['backward_s_median']:8.1f} "
            f"{1e3 * r['optimizer_s_median']:6.1f} {1e3 * r['gather_forward_s_median']:10.2f} "
            f"{1e3 * r['gather_backward_s_median']:10.2f} {100 * r['gather_share']:7.1f}% "
            f"{r['cpu_per_wall']:8.2f}"
        )
    lines.append(
        f"(set-up: processes x threads each; speed-up: step time of {base['setup']} / that of the row; "
        "times in ms, medians; cpu/wall: rank 0's CPU seconds per second of its steps)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_RECIPE, help="recipe (default: fashion_mnist)")
    parser.add_argument("--setups", default="1x2,2x1,1x1", help="processes x threads, comma separated")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating the set-ups")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default: the recipe's)")
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic images even if Fashion-MNIST is here"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per set-up and round")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    setups = parse_setups(args.setups)
    overrides: dict[str, Any] = {"progress": False}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    cfg = build_config(args.config, overrides)
    for setup in setups:
        if cfg.batch_size % setup.world:
            raise SystemExit(f"batch_size {cfg.batch_size} is not divisible by {setup.world} processes")
    _, source = load_images(cfg, args.synthetic)
    spec = {
        "recipe": str(args.config),
        "overrides": overrides,
        "synthetic": args.synthetic,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    print(
        f"recipe {args.config.name}: {cfg.encoder}, batch {cfg.batch_size}, K = {cfg.num_views}, "
        f"{cfg.optimizer}; images: {source}; {args.rounds} rounds x {args.steps} steps "
        f"(+{args.warmup} warm-up) per set-up; {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    collected: dict[str, list[list[Records]]] = {s.name: [] for s in setups}
    for round_index in range(args.rounds):
        for setup in setups:
            start = time.perf_counter()
            collected[setup.name].append(run_setup(setup, spec, args.timeout))
            print(
                f"round {round_index + 1}: {setup.name} done in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
    rows = [summarise(s, collected[s.name], args.warmup, cfg.batch_size) for s in setups]
    print(format_table(rows, baseline=setups[0].name))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "ddp_scaling",
            "recipe": str(args.config),
            "config": cfg.to_dict(),
            "images": source,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
            },
            "results": rows,
            "raw": collected,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
