"""A 10k x 10k retrieval evaluation, chunked vs full-matrix, and the step time of the image-text losses.

1. Retrieval: ``N`` images and ``N`` captions (D = 128, random unit vectors plus matched
   noise), both directions of the 1:1 protocol. The chunked
   :func:`mmcr.evaluation.retrieval.retrieval_metrics` (query chunks against all keys,
   counting ranks, 64 MiB blocks) against the obvious alternative: the full ``N x N``
   similarity matrix, ``argsort`` of every row, the position of the correct key.
   Both give the same ranks on these inputs (no ties); the peak extra memory of the
   full matrix is ``N^2`` floats plus ``N^2`` int64 indices.
2. Losses: forward + backward of ``mmcr``, ``clip`` and ``siglip`` on ``(B, 2, D)`` stacked
   image and caption embeddings (D = 128), at a few batch sizes.

Figures are medians of ``--repeats`` runs after a warm-up. Writes a table to stdout and
JSON (default ``results/retrieval_speed.json``).

    PYTHONPATH=src nice python benchmarks/retrieval_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmcr.evaluation.retrieval import retrieval_metrics
from mmcr.objectives import build_objective


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def full_matrix_ranks(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The obvious way: the whole similarity matrix, every row sorted, where the diagonal lands."""
    q = torch.nn.functional.normalize(queries, dim=1)
    k = torch.nn.functional.normalize(keys, dim=1)
    order = (q @ k.T).argsort(dim=1, descending=True)
    return (order == torch.arange(q.shape[0])[:, None]).nonzero()[:, 1].double() + 1


def retrieval_benchmark(n: int, dim: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, dim, generator=g)
    captions = images + 1.5 * torch.randn(n, dim, generator=g)

    def chunked() -> dict[str, Any]:
        return retrieval_metrics(images, captions, curve_ks=None)

    def full() -> tuple[torch.Tensor, torch.Tensor]:
        return full_matrix_ranks(images, captions), full_matrix_ranks(captions, images)

    metrics = chunked()
    i2t, t2i = full()
    same = (
        abs(metrics["image_to_text"]["recall@1"] - float((i2t <= 1).double().mean())) < 1e-12
        and abs(metrics["text_to_image"]["median_rank"] - float(t2i.median())) <= 0.5
    )
    t_chunked = median_time(chunked, repeats)
    t_full = median_time(full, repeats)
    return {
        "n": n,
        "dim": dim,
        "chunked_s": t_chunked,
        "full_matrix_argsort_s": t_full,
        "speedup_full_over_chunked": t_full / t_chunked,
        "chunked_block_mib": (1 << 24) * 4 / 2**20,
        "full_matrix_extra_mib": n * n * (4 + 8) / 2**20,
        "same_results": bool(same),
        "recall@1_image_to_text": metrics["image_to_text"]["recall@1"],
    }


def loss_benchmark(batch_sizes: list[int], dim: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for b in batch_sizes:
        g = torch.Generator().manual_seed(b)
        z = torch.randn(b, 2, dim, generator=g)
        for name in ("mmcr", "clip", "siglip"):
            objective = build_objective(name)
            x = z.clone().requires_grad_(True)

            def step(objective: Any = objective, x: torch.Tensor = x) -> None:
                x.grad = None
                objective.zero_grad(set_to_none=True)
                objective(x).backward()

            step_ms = 1e3 * median_time(step, repeats)
            rows.append({"objective": name, "batch_size": b, "dim": dim, "step_ms": step_ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("results/retrieval_speed.json"))
    args = parser.parse_args()
    retrieval = retrieval_benchmark(args.n, args.dim, args.repeats)
    losses = loss_benchmark(args.batch_sizes, args.dim, max(args.repeats, 5))
    print(f"retrieval, {args.n} x {args.n}, D = {args.dim}, both directions")
    print(f"  chunked (query chunks x all keys)  {retrieval['chunked_s']:8.2f} s")
    print(f"  full matrix + argsort              {retrieval['full_matrix_argsort_s']:8.2f} s")
    print(f"  ratio full / chunked               {retrieval['speedup_full_over_chunked']:8.2f}")
    print(f"  same results: {retrieval['same_results']}")
    print("\nloss step (forward + backward), (B, 2, D) stacked image + caption embeddings")
    print(f"  {'objective':<8} {'B':>6} {'ms':>9}")
    for row in losses:
        print(f"  {row['objective']:<8} {row['batch_size']:>6} {row['step_ms']:>9.2f}")
    out = {
        "retrieval": retrieval,
        "losses": losses,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
