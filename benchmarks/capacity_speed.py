"""Time and values of ``manifold_capacity`` on the public mean-field code's README example.

The example: ``np.random.seed(0); X = [np.random.randn(5000, 50) for _ in range(100)]``,
100 manifolds of 50 Gaussian samples in 5,000 dimensions, analysed at ``kappa = 0`` with
``n_t = 200``. The public code takes each array as (features, samples); here the arrays are
transposed to (samples, features). Its README gives capacity 0.04, radius 1.47, dimension
36.17 and centre correlation 0.01, and it takes about two minutes on this machine (one QP
per Gaussian vector, in a Python loop).

The table repeats the analysis with several seeds of the Gaussian vectors (the data are
the same), so that the spread shows the Monte Carlo error, and reports the median time.
The ball approximation ``alpha_Ball(kappa, R_M, D_M)`` of the theory is printed beside the
capacity.

    python benchmarks/capacity_speed.py --json results/capacity_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.geometry.capacity import ball_capacity, manifold_capacity

README = {"capacity": 0.04, "radius": 1.47, "dimension": 36.17, "center_correlation": 0.01}
REFERENCE_SECONDS = 120.0  # the public code on this example, on a machine of this kind (about 2 min)


def readme_example() -> list[np.ndarray]:
    """The README's data, transposed to (samples, features)."""
    np.random.seed(0)  # noqa: NPY002 (the legacy global generator, as the README example uses)
    data = [np.random.randn(5000, 50) for _ in range(100)]  # noqa: NPY002
    return [x.T for x in data]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-t", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    manifolds = readme_example()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        start = time.perf_counter()
        with warnings.catch_warnings():  # 50 samples in 5,000 dimensions: every manifold is a simplex
            warnings.simplefilter("ignore", UserWarning)
            result = manifold_capacity(manifolds, 0.0, args.n_t, seed)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "seed": seed,
                "seconds": seconds,
                "capacity": result.capacity,
                "radius": result.radius,
                "dimension": result.dimension,
                "center_correlation": result.center_correlation,
                "center_components": result.center_components,
                "ball_capacity": ball_capacity(result.radius, max(1, round(result.dimension))),
                "unconverged": result.unconverged,
            }
        )
    keys = ("capacity", "radius", "dimension", "center_correlation")
    summary = {
        k: {"mean": statistics.mean(r[k] for r in rows), "spread": _spread([r[k] for r in rows])}
        for k in keys
    }
    median_seconds = statistics.median(r["seconds"] for r in rows)

    print(f"{'':>20} {'README (mftma)':>15} {'ours, mean':>12} {'+- (seeds)':>11}")
    for k in keys:
        print(f"{k:>20} {README[k]:>15.4g} {summary[k]['mean']:>12.4f} {summary[k]['spread']:>11.4f}")
    print(f"{'seconds':>20} {REFERENCE_SECONDS:>15.0f} {median_seconds:>12.2f}")
    print(f"speed-up over the public code: {REFERENCE_SECONDS / median_seconds:.0f}x")
    for r in rows:
        print(
            f"  seed {r['seed']}: {r['seconds']:.2f} s, capacity {r['capacity']:.4f} (ball approximation "
            f"{r['ball_capacity']:.4f}), radius {r['radius']:.4f}, dimension {r['dimension']:.2f}, "
            f"K = {r['center_components']}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "example": "np.random.seed(0); X = [np.random.randn(5000, 50) for _ in range(100)]; "
            "kappa 0, n_t 200",
            "readme": README,
            "reference_seconds": REFERENCE_SECONDS,
            "median_seconds": median_seconds,
            "speedup": REFERENCE_SECONDS / median_seconds,
            "summary": summary,
            "runs": rows,
            "machine": {
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    main()
