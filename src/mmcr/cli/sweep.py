"""The ``mmcr sweep``, ``mmcr fit`` and ``mmcr report`` subcommands.

``mmcr sweep double-descent`` and ``mmcr sweep scaling`` drive many short pretraining runs
from a sweep file (see :mod:`mmcr.experiments.spec` and :mod:`mmcr.experiments.sweep`);
``mmcr fit`` fits scaling laws to a scaling sweep (:mod:`mmcr.experiments.scaling_fit`);
``mmcr report`` redraws a sweep's figures from its stored results. :mod:`mmcr.cli` calls
:func:`register`. Heavy modules are imported when a command runs, not when the parser is
built.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]

_SWEEP_DESCRIPTION = """\
Sweeps of short MMCR pretraining runs (Schaeffer et al. 2024, arXiv 2406.09366).

  double-descent   a grid over batch size P and embedding dimension D: where does the
                   pretraining percent error (PPE) peak, and is it on the ridge P = D
                   that the theory of ideal embeddings predicts?
  scaling          one variable at a time (gradient steps, batch size, embedding
                   dimension, number of views) around a base point, plus an optional
                   joint grid, with compute counted in FLOPs and sample-views; then
                   `mmcr fit` fits power laws to it.

Every run writes OUT/runs/<name>/ (config.json, metrics.jsonl, last.pt, train.log,
result.json) and a line of OUT/results.jsonl. Sweeps are resumable: run the same command
again and finished runs are skipped, an interrupted run continues from its checkpoint.
`mmcr report OUT` redraws the figures from the stored results.
"""

_DD_DESCRIPTION = """\
Double descent of the MMCR pretraining percent error over batch size P and embedding
dimension D.

Trains one short run per (P, D, seed) of the sweep file's grid, all with the same budget
(max_steps and/or epochs), and records for each the train-batch PPE (averaged over the
last `ppe_last` logged steps) and the PPE of the validation monitor:

    PPE = (sqrt(P min(P, D)) - ||C||_*) / sqrt(P min(P, D))

The PPE is comparable across P and D; the raw loss -||C||_* is not (its optimum
sqrt(P min(P, D)) grows with P and D), so the analysis uses the PPE. Ideal embeddings
(aligned, uniform) have a PPE that peaks on the ridge P = D (1 - 8/(3 pi) = 0.151 there);
the sweep computes that theory on the same grid (Monte Carlo) and reports, for each D,
the P where the measured PPE peaks and whether it is at or near P = D.

Writes OUT/results.jsonl, OUT/ppe_heatmap.png (theory | measured, ridge P = D drawn),
OUT/ppe_heatmap_val.png, OUT/ppe_vs_P.png, OUT/ppe_vs_D.png, OUT/summary.json and
OUT/summary.md, and prints the statement of where the peak lies.

Sweep file (TOML):
  kind = "double-descent"
  base_recipe = "configs/fashion_mnist.toml"   # optional; or inline settings in [base]
  seeds = [0]
  ppe_last = 5
  [base]     dataset, augment, encoder, encoder_width, projector_hidden, lr, log_every, ...
  [budget]   max_steps = 150   (and/or epochs = 1)
  [grid]     P = [16, 32, 64, 128, 256]   D = [16, 32, 64, 128, 256]
  [theory]   trials = 32
Fashion-MNIST absent: the sweep falls back to scikit-learn's digits, with a message.
"""

_SCALING_DESCRIPTION = """\
Compute scaling of the MMCR pretraining percent error.

Around a base point (steps S, batch size B, embedding dimension D = projector_dim,
views K = num_views), sweeps one variable at a time over the values in [axes], plus an
optional Cartesian [joint] grid. Each run records its final train-batch PPE (the fit
target: positive and bounded), validation PPE and loss, and its compute:

  FLOPs        = 3 x F x B x K x S   (F: forward FLOPs of one view through encoder and
                                      projector, 2 per multiply-add of conv and linear
                                      layers; backward = 2 x forward)
  sample-views = B x K x S

Writes OUT/results.jsonl, OUT/scaling_axes.png, OUT/ppe_vs_compute.png, OUT/summary.json
and OUT/summary.md. Then fit the laws with `mmcr fit OUT`.

Sweep file (TOML):
  kind = "scaling"
  seeds = [0]
  [base]    dataset, encoder, encoder_width, lr, log_every, ...
  [point]   steps = 100  batch_size = 64  projector_dim = 64  num_views = 2
  [axes]    steps = [25, 50, 100, 200]  batch_size = [...]  projector_dim = [...]  num_views = [...]
  [joint]   steps = [50, 100, 200]  batch_size = [32, 64, 128]      # optional
"""

_SWEEP_EPILOG = """\
examples:
  mmcr sweep {kind} --config configs/sweeps/{file}.toml --out runs/{out} --dry-run
  mmcr sweep {kind} --config configs/sweeps/{file}.toml --out runs/{out}
  nohup mmcr sweep {kind} --config configs/sweeps/{file}.toml --out runs/{out} > {out}.log 2>&1 &
  mmcr report runs/{out}
"""

_FIT_DESCRIPTION = """\
Fit scaling laws to a scaling sweep (mmcr sweep scaling).

  * target vs compute, over every run:   L(C) = E + A C^-alpha
  * the same law fitted without the largest-compute runs (--holdout-frac), and its
    relative error in predicting them (does the law extrapolate?)
  * target vs each variable along its axis (the others at the base point)
  * the joint law over the variables that vary (steps, batch size, embedding
    dimension, views):   L = E + sum_i A_i x_i^-alpha_i

Fits are robust (Huber loss on log residuals, several starts, L-BFGS-B) with
percentile-bootstrap confidence intervals. The target must be positive: the train-batch
PPE (default) or the validation PPE; the raw loss -||C||_* is negative and cannot be
fitted. Writes SWEEP_DIR/fit.json, fit.md and fit_*.png, holdout_*.png, joint_parity.png
(measured points, fitted curve, extrapolation band); `mmcr report` redraws them.

A designed sweep (a [design] table: every (B, D, K) cell at every S, several seeds) gets
the predictive study instead: the laws, e.g.

    PPE = f(B, D) + A S^-alpha B^-beta D^-delta K^-gamma

with f(B, D) the PPE of ideal (aligned, uniform) embeddings, no training's floor, and its
alternatives (compute as sample-views or FLOPs; exponents per side of B = D; no floor; a
fitted floor) are fitted on the small-compute runs of all but the held-out cells, and
scored on the runs at 4-8x that compute and on the held-out cells. The form with the
lowest median hold-out error is refitted on every run and stored in
SWEEP_DIR/prediction.json (also prediction.md and predict_*.png). Then

    mmcr fit SWEEP_DIR --predict steps=4000,batch_size=512,projector_dim=128,num_views=4

prints the predicted PPE with its 95 % intervals and the steps and compute needed to
reach lower PPEs (--reach).
"""

_REPORT_DESCRIPTION = """\
Redraw every figure and the summary of a sweep from its stored results alone (no
training): OUT/sweep.json says whether it is a double-descent or a scaling sweep, and
OUT/results.jsonl holds one line per finished run. For a double-descent sweep: the
heatmaps (theory | measured, ridge P = D), PPE vs P and vs D, summary.json/.md with the
peak statement. For a scaling sweep: PPE along each axis and against compute, and, if
`mmcr fit` has run, its fit figures from fit.json.
"""


_RAW = argparse.RawDescriptionHelpFormatter
# kind, help, description, sweep file under configs/sweeps, default output under runs/
_KINDS = (
    (
        "double-descent",
        "grid over batch size P and embedding dimension D: where does the PPE peak?",
        _DD_DESCRIPTION,
        "double_descent",
        "dd",
    ),
    (
        "scaling",
        "steps, batch size, embedding dimension, views around a base point, with FLOPs",
        _SCALING_DESCRIPTION,
        "scaling",
        "scaling",
    ),
)


def register(subparsers: Any) -> None:
    """Add ``sweep`` (double-descent, scaling), ``fit`` and ``report`` to argparse subparsers.

    Every parser added sets ``func``, a callable(args) -> exit code, with set_defaults.
    """
    _add_sweep(subparsers)
    _add_fit(subparsers)
    _add_report(subparsers)


def _add_sweep(subparsers: Any) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="sweeps of short runs: double descent over (P, D), compute scaling",
        description=_SWEEP_DESCRIPTION,
        formatter_class=_RAW,
    )
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="SWEEP")

    def show_sweep_help(args: argparse.Namespace) -> int:
        sweep.print_help()
        return 0

    sweep.set_defaults(func=show_sweep_help)
    for kind, help_text, description, file, out in _KINDS:
        p = sweep_sub.add_parser(
            kind,
            help=help_text,
            description=description,
            epilog=_SWEEP_EPILOG.format(kind=kind, file=file, out=out),
            formatter_class=_RAW,
        )
        p.add_argument("--config", required=True, metavar="FILE", help="the sweep file (TOML)")
        p.add_argument(
            "--out",
            default=None,
            metavar="DIR",
            help=f"sweep directory (default: the file's `out`, else runs/{out})",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="list the runs and whether each is done, partial or to train; train nothing",
        )
        p.add_argument(
            "--max-runs",
            type=int,
            default=None,
            metavar="N",
            help="train at most N new runs now, then draw the report (run again to go on)",
        )
        p.add_argument(
            "--shard",
            type=_shard,
            default=None,
            metavar="K/N",
            help="train only every N-th run, from the K-th (0 <= K < N). Without it, N plain "
            "commands at once on one --out also share the work: each skips the runs another "
            "is training and takes the next free one (each run has its own threads)",
        )
        p.add_argument(
            "--verbose",
            action="store_true",
            help="show pretrain's own output (else it goes to OUT/runs/<name>/train.log); "
            "its progress bar shows when [base] sets progress = true",
        )
        p.set_defaults(func=_run_sweep, sweep_kind=kind, default_out=f"runs/{out}")


def _add_fit(subparsers: Any) -> None:
    fit = subparsers.add_parser(
        "fit",
        help="fit scaling laws L = E + A C^-alpha (and the joint form) to a scaling sweep",
        description=_FIT_DESCRIPTION,
        epilog=(
            "examples:\n  mmcr fit runs/scaling\n"
            "  mmcr fit runs/scaling --compute sample_views --target val_ppe\n"
            "  mmcr fit runs/scaling_predict\n"
            "  mmcr fit runs/scaling_predict \\\n"
            "      --predict steps=1600,batch_size=128,projector_dim=16,num_views=2\n"
            "  mmcr fit runs/scaling_predict --predict steps=400,batch_size=64,projector_dim=8,num_views=4 "
            "--reach 0.08"
        ),
        formatter_class=_RAW,
    )
    fit.add_argument("sweep_dir", metavar="SWEEP_DIR", type=Path, help="directory of a scaling sweep")
    fit.add_argument(
        "--target",
        choices=("ppe", "val_ppe"),
        default="ppe",
        help="quantity fitted: train-batch PPE (default) or validation PPE",
    )
    fit.add_argument(
        "--compute",
        choices=("flops", "sample_views"),
        default="flops",
        help="compute axis: FLOPs of forward+backward (default) or sample-views B x K x S",
    )
    fit.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap resamples for the CIs (default: 200)",
    )
    fit.add_argument(
        "--holdout-frac",
        type=float,
        default=0.2,
        metavar="F",
        help="share of the largest-compute runs held out to test extrapolation (default: 0.2)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    fit.add_argument(
        "--predict",
        default=None,
        metavar="steps=S,batch_size=B,projector_dim=D,num_views=K",
        help="designed sweeps: print the stored law's PPE at this point (fits first if needed)",
    )
    fit.add_argument(
        "--reach",
        type=float,
        nargs="+",
        default=None,
        metavar="PPE",
        help="with --predict: the steps and compute needed to reach these PPEs at its B, D, K "
        "(default: halve and quarter the excess over the floor)",
    )
    fit.add_argument(
        "--fit-factor",
        type=int,
        default=8,
        metavar="F",
        help="designed sweeps: fit on S <= max S / F of each cell, predict S >= 4x that "
        "(default: 8, so a grid up to 800 steps fits S <= 100 and predicts 400 and 800)",
    )
    fit.add_argument(
        "--holdout-cells",
        default=None,
        metavar="CELLS",
        help="designed sweeps: cells left out of the fit, e.g. B64_D16_K2,B16_D128_K2 "
        "(default: on each side of B = D, the cell nearest the middle of that side's cells)",
    )
    fit.set_defaults(func=_run_fit)


def _add_report(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report",
        help="redraw a sweep's figures and summary from its stored results (no training)",
        description=_REPORT_DESCRIPTION,
        epilog="examples:\n  mmcr report runs/dd\n  mmcr report runs/scaling",
        formatter_class=_RAW,
    )
    report.add_argument("sweep_dir", metavar="SWEEP_DIR", type=Path, help="directory of a sweep")
    report.set_defaults(func=_run_report)


def _shard(text: str) -> tuple[int, int]:
    """``K/N`` of --shard."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 0/2; got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N; got {text!r}")
    return k, n


def _run_sweep(args: argparse.Namespace) -> int:
    from mmcr.experiments.spec import load_sweep
    from mmcr.experiments.sweep import run_sweep

    spec = load_sweep(args.config, kind=args.sweep_kind)
    out = args.out or spec.out or args.default_out
    run_sweep(spec, out, dry_run=args.dry_run, max_runs=args.max_runs, verbose=args.verbose, shard=args.shard)
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    from mmcr.experiments.results import load_meta
    from mmcr.experiments.scaling_fit import fit_sweep
    from mmcr.experiments.scaling_predict import PREDICTION_FILE, parse_point, predict_point, predictive_study

    point = parse_point(args.predict) if args.predict is not None else None
    if args.reach is not None and point is None:
        raise ValueError("--reach needs --predict (the point whose B, D, K it plans for).")
    meta = load_meta(args.sweep_dir)
    if meta.get("spec", {}).get("cells"):
        if point is None or not (args.sweep_dir / PREDICTION_FILE).exists():
            cells = None if args.holdout_cells is None else [c for c in args.holdout_cells.split(",") if c]
            predictive_study(
                args.sweep_dir,
                target=args.target,
                fit_factor=args.fit_factor,
                holdout_cells=cells,
                bootstrap=args.bootstrap,
                seed=args.seed,
            )
        if point is not None:
            predict_point(args.sweep_dir, point, reach=args.reach)
        return 0
    if point is not None or args.holdout_cells is not None:
        raise ValueError(
            f"--predict and --holdout-cells need a designed scaling sweep ([design] cells); "
            f"{args.sweep_dir} has none."
        )
    fit_sweep(
        args.sweep_dir,
        target=args.target,
        compute=args.compute,
        bootstrap=args.bootstrap,
        holdout_frac=args.holdout_frac,
        seed=args.seed,
    )
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from mmcr.experiments.sweep import report_sweep

    report_sweep(args.sweep_dir)
    return 0
