"""MMCR (one and two captions) against CLIP and SigLIP on image-text pairs, over the batch size.

The command line of :mod:`mmcr.experiments.image_text`, whose docstring states the protocol:
for each objective and batch size, an lr search at the first seed on validation retrieval
(mean recall@1/5/10, both directions), the other seeds at the chosen lr, every run scored by
``mmcr eval`` (test retrieval, zero-shot, the image tower's kNN), then the step time of each
objective with the loss's share of it, and the time of a 10k x 10k retrieval evaluation.
Writes results.json, table.md and recall_vs_batch.png to ``--out``. The base recipe is
``configs/emoji_image_text.toml``, read at run time.

Runs live in ``--work-dir``/<method>_B<B>_lr<lr>_s<seed>/; finished runs are skipped and an
interrupted one resumes from its checkpoint, so the study can be relaunched until it
completes. ``--parallel 2`` runs two 1-thread training processes at once (on a 2-core
machine that is about 1.4x the throughput of one 2-thread process).

    python benchmarks/compare_image_text.py                  # the whole study
    python benchmarks/compare_image_text.py --dry-run        # the plan
    python benchmarks/compare_image_text.py --report-only    # tables from the runs finished so far
    python benchmarks/compare_image_text.py --timing-only    # the same, and the step-time table
    python benchmarks/compare_image_text.py --methods mmcr,clip --batch-sizes 64 --seeds 0 --lrs 2e-3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmcr.config import coerce
from mmcr.experiments.image_text import METHODS, ImageTextOptions, run_image_text, worker_main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "emoji_image_text.toml"


def _numbers(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="the paired base recipe of every run")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key for every run (repeatable), e.g. --set image_size=24",
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--batch-sizes", default="32,64,128,256", help="the batch sizes B")
    p.add_argument("--seeds", default="0,1,2", help="seeds; the first one runs the lr search")
    p.add_argument("--lrs", default="1e-3,3e-3", help="learning rates of the search")
    p.add_argument("--epochs", type=int, default=6, help="epochs of every run (the budget: same pairs seen)")
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "compare_image_text"), help="the run folders")
    p.add_argument("--out", default=str(ROOT / "results" / "compare_image_text"), help="results folder")
    p.add_argument("--parallel", type=int, default=2, help="training processes at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--no-timing", action="store_true", help="skip the step-time and retrieval timing")
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="report the finished runs, train nothing, measure the timing",
    )
    p.add_argument("--timing-threads", type=int, default=2, help="torch threads of the timing")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--report-only", action="store_true", help="report the finished runs; train nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sets: dict[str, Any] = {}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        sets[key.strip()] = coerce(key.strip(), value)
    options = ImageTextOptions(
        config=args.config,
        work_dir=args.work_dir,
        out=args.out,
        sets=sets,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        batch_sizes=_numbers(args.batch_sizes, int),
        seeds=_numbers(args.seeds, int),
        lrs=_numbers(args.lrs, float),
        epochs=args.epochs,
        parallel=args.parallel,
        threads=args.threads,
        report_only=args.report_only or args.timing_only,
        dry_run=args.dry_run,
        timing=not args.no_timing,
        timing_only=args.timing_only,
        timing_threads=args.timing_threads,
    )
    run_image_text(options)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    sys.exit(main())
