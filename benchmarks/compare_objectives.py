"""MMCR against SimCLR, Barlow Twins and VICReg in the same harness, measured side by side.

The command line of :mod:`mmcr.experiments.compare`, whose docstring states the protocol:
an lr search per method on validation kNN accuracy (seed 0, ``--search-steps``), then
``--seeds`` final runs per method at the chosen lr and the full budget
(``--budget-epochs``, capped by ``--max-train-images``), each scored by ``mmcr eval`` (kNN,
an L-BFGS linear probe over ``--probe-weight-decays`` with ``--probe-max-iter``
iterations, geometry), and results.json and table.md (mean +- std over seeds) in ``--out``.
The base recipe is ``configs/fashion_mnist.toml`` by default, read at run time.

Runs live in ``--work-dir``/<method>_lr<lr>_s<seed>[_search]/; a run whose summary.json
exists is skipped, and an interrupted one resumes from its checkpoint, so the whole
comparison can be re-launched until it completes. ``--parallel 2`` runs two training
processes at once, each with one torch thread (two-thread processes slow down badly
on a shared 2-core machine).

    python benchmarks/compare_objectives.py --parallel 2
    python benchmarks/compare_objectives.py --dry-run
    python benchmarks/compare_objectives.py --report-only   # tables from the runs finished so far

A finished run whose saved configuration differs from the planned one (the recipe
changed) is an error, not silently reused; each invocation that runs saves the recipe it
read as WORK/recipe.yaml (JSON, which YAML reads), so ``--config runs/compare/recipe.yaml
--report-only`` re-reports a finished comparison after the recipe has moved on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmcr.experiments.compare import run_comparison
from mmcr.experiments.compare_plan import METHODS, CompareOptions
from mmcr.experiments.compare_runs import worker_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "fashion_mnist.toml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="base recipe shared by every method")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key for every run (repeatable), e.g. --set dataset=digits",
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the final runs")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="learning rates of the search")
    p.add_argument(
        "--budget-epochs",
        type=float,
        default=0.2,
        help="full budget in epochs of the training split (may be fractional; rounded to whole steps)",
    )
    p.add_argument(
        "--max-train-images",
        type=int,
        default=None,
        help="cap on the images seen per final run (steps = this // B); applied on top of --budget-epochs",
    )
    p.add_argument("--search-steps", type=int, default=20, help="steps of each lr-search run (seed 0)")
    p.add_argument("--parallel", type=int, default=2, help="training processes at once (1 thread each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument(
        "--probe-weight-decays",
        default="1e-4,1e-3,1e-2",
        help="L2 grid of the linear probe (chosen on validation), the same for every method",
    )
    p.add_argument("--probe-max-iter", type=int, default=50, help="L-BFGS iterations of the linear probe")
    p.add_argument(
        "--geometry-images",
        type=int,
        default=2048,
        help="test images whose K-view embeddings give the effective rank and PPE",
    )
    p.add_argument("--work-dir", default="runs/compare", help="where the runs go (resumable)")
    p.add_argument("--out", default="results/compare_objectives", help="folder of results.json and table.md")
    p.add_argument("--json", default=None, help="path of the results JSON (default: OUT/results.json)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without running")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write results.json and table.md from the runs already finished",
    )
    return p.parse_args(argv)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace(" ", "").split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def options_from_args(args: argparse.Namespace) -> CompareOptions:
    """The comparison's settings from the parsed command line."""
    return CompareOptions(
        config=args.config,
        sets=_parse_sets(args.sets),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        seeds=_ints(args.seeds),
        lrs=_floats(args.lrs),
        budget_epochs=args.budget_epochs,
        max_train_images=args.max_train_images,
        search_steps=args.search_steps,
        parallel=args.parallel,
        threads=args.threads,
        probe_weight_decays=_floats(args.probe_weight_decays),
        probe_max_iter=args.probe_max_iter,
        geometry_images=args.geometry_images,
        work_dir=args.work_dir,
        out=args.out,
        json=args.json,
        dry_run=args.dry_run,
        report_only=args.report_only,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_comparison(options_from_args(parse_args(argv)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    main()
    sys.exit(0)
