"""Forward + backward time of ``MMCRLoss`` against the plain svdvals formula.

The plain formula is what the reference code computes: L2-normalise the views, take
``torch.linalg.svdvals`` of the centroid matrix, and (for lmbda > 0) batched
``svdvals`` of the per-sample ``D x K`` view matrices. Both run in the same process on
the same inputs; the table reports median times, the speed-up ratio, the relative
differences of the loss and of the gradient with respect to ``z`` between the two, and
each one's gradient error against the plain formula run in float64 (the truth both
approximate in float32).

Inputs mimic training: every sample has a random direction and its K views are that
direction plus noise, so views of one sample are correlated as after some training.
A near-collapse row follows the table (not in its geometric mean): every view of every
sample is one direction plus noise of relative size 3e-6, as with a collapsed projector
at initialisation. The centroids then have one large singular value and small real
ones, on which the whole gradient rests; the row reports speed and both gradient errors.

    python benchmarks/loss_speed.py --json results/loss_speed.json
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmcr import MMCRLoss

CASES = [(32, 40, 128), (256, 2, 128), (256, 8, 128), (512, 2, 512), (2048, 2, 512), (256, 4, 2048)]
LAMBDAS = [0.0, 0.005]
NEAR_COLLAPSE = [(256, 2, 128, 3e-6)]
"""(B, K, D, relative spread) of the near-collapse rows."""


def plain_loss(z: torch.Tensor, lmbda: float) -> torch.Tensor:
    views = z / z.norm(dim=-1, keepdim=True)
    centroids = views.mean(dim=1)
    loss = -torch.linalg.svdvals(centroids).sum()
    if lmbda > 0:
        loss = loss + lmbda * torch.linalg.svdvals(views.transpose(1, 2)).sum(-1).mean()
    return loss


def make_views(b: int, k: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(b, 1, d, generator=g)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    noise = torch.randn(b, k, d, generator=g) / math.sqrt(d)
    return directions + 0.5 * noise


def make_near_collapse(b: int, k: int, d: int, spread: float, seed: int) -> torch.Tensor:
    """Views of one unit direction plus Gaussian noise of relative size ``spread``."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    direction = direction / direction.norm()
    return direction + spread * torch.randn(b, k, d, generator=g) / math.sqrt(d)


def time_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median times of ``a`` and ``b``, interleaved so both see the same machine load."""
    a()
    t0 = time.perf_counter()
    b()
    # millisecond-scale cases get more repeats, so their medians are not timer noise
    repeats = max(repeats, min(200, int(0.25 / max(time.perf_counter() - t0, 1e-6))))
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times_a), statistics.median(times_b)


def forward_backward(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor
) -> tuple[float, torch.Tensor]:
    x = z.clone().requires_grad_(True)
    loss = loss_fn(x)
    loss.backward()
    assert x.grad is not None
    return float(loss.detach()), x.grad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per case and round (at least)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all cases (median ratio reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=Path("results/loss_speed.json"), help="output JSON path")
    parser.add_argument(
        "--case", action="append", metavar="B,K,D", help="run only this case (repeatable); default: all six"
    )
    args = parser.parse_args()
    cases: list[tuple[int, ...]] = list(CASES)
    if args.case:
        try:
            cases = [tuple(int(v) for v in c.split(",")) for c in args.case]
        except ValueError:
            parser.error(f"--case takes B,K,D with three integers, got {args.case}")
        if any(len(c) != 3 or min(c) < 1 for c in cases):
            parser.error(f"--case takes B,K,D with three positive integers, got {args.case}")
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats must be at least 1")
    torch.set_num_threads(args.threads)

    # Every (case, lmbda) pair is timed in several rounds spread over the whole run, so a
    # slow spell of a shared machine hits a round of every case, not all rounds of one;
    # the speed-up reported is the median of the rounds' ratios.
    Timed = Callable[[], object]
    setups: list[tuple[dict[str, Any], Timed, Timed, list[tuple[float, float]]]] = []
    inputs: list[tuple[tuple[int, ...], float | None, torch.Tensor]] = [
        ((b, k, d), None, make_views(b, k, d, seed=b * 7 + k * 3 + d)) for b, k, d in cases
    ]
    if not args.case:
        inputs += [
            ((b, k, d), spread, make_near_collapse(b, k, d, spread, seed=b + k + d))
            for b, k, d, spread in NEAR_COLLAPSE
        ]
    for (b, k, d), spread, z in inputs:
        for lmbda in LAMBDAS:
            ours = MMCRLoss(lmbda=lmbda, distributed=False)
            plain = functools.partial(plain_loss, lmbda=lmbda)
            loss_ours, grad_ours = forward_backward(ours, z)
            loss_plain, grad_plain = forward_backward(plain, z)
            _, grad_f64 = forward_backward(plain, z.double())
            row: dict[str, Any] = {
                "B": b,
                "K": k,
                "D": d,
                "lmbda": lmbda,
                "spread": spread,
                "loss_rel_diff": abs(loss_ours - loss_plain) / abs(loss_plain),
                "grad_rel_diff": float((grad_ours - grad_plain).norm() / grad_plain.norm()),
                "plain_grad_err_vs_float64": float((grad_plain.double() - grad_f64).norm() / grad_f64.norm()),
                "mmcr_grad_err_vs_float64": float((grad_ours.double() - grad_f64).norm() / grad_f64.norm()),
            }
            timed_plain = functools.partial(forward_backward, plain, z)
            setups.append((row, timed_plain, functools.partial(forward_backward, ours, z), []))
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds}", flush=True)
        for _, plain_fn, ours_fn, timings in setups:
            timings.append(time_pair(plain_fn, ours_fn, args.repeats))

    header = (
        f"{'B':>5} {'K':>3} {'D':>5} {'lmbda':>6} {'plain ms':>9} {'mmcr ms':>8} {'speed-up':>8} "
        f"{'loss rel':>9} {'grad rel':>9} {'plain err':>9} {'mmcr err':>9}"
    )
    rows: list[dict[str, Any]] = []
    near_collapse_rows: list[dict[str, Any]] = []
    for row, _, _, timings in setups:
        row["plain_ms"] = statistics.median(t for t, _ in timings) * 1e3
        row["mmcr_ms"] = statistics.median(t for _, t in timings) * 1e3
        row["speedup"] = statistics.median(t_plain / t_ours for t_plain, t_ours in timings)
        row["round_speedups"] = [t_plain / t_ours for t_plain, t_ours in timings]
        (rows if row["spread"] is None else near_collapse_rows).append(row)

    def print_row(row: dict[str, Any]) -> None:
        print(
            f"{row['B']:>5} {row['K']:>3} {row['D']:>5} {row['lmbda']:>6} {row['plain_ms']:>9.2f} "
            f"{row['mmcr_ms']:>8.2f} {row['speedup']:>7.2f}x {row['loss_rel_diff']:>9.1e} "
            f"{row['grad_rel_diff']:>9.1e} {row['plain_grad_err_vs_float64']:>9.1e} "
            f"{row['mmcr_grad_err_vs_float64']:>9.1e}"
        )

    print(header)
    print("-" * len(header))
    for row in rows:
        print_row(row)
    geo = math.exp(sum(math.log(r["speedup"]) for r in rows) / len(rows))
    slowest = min(r["speedup"] for r in rows)
    print("-" * len(header))
    print(f"geometric-mean speed-up {geo:.2f}x over {len(rows)} cases; smallest {slowest:.2f}x")
    for row in near_collapse_rows:
        print(f"near collapse, relative spread {row['spread']:.0e}:")
        print_row(row)
    result = {
        "benchmark": "loss_speed",
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "rows": rows,
        "near_collapse_rows": near_collapse_rows,
        "geometric_mean_speedup": geo,
        "min_speedup": slowest,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
