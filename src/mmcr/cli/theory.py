"""The ``mmcr theory`` subcommand: analyses that need no training.

``mmcr theory ppe`` computes the pretraining percent error (PPE) of perfectly aligned and
uniform embeddings by Monte Carlo and by its Marchenko-Pastur limit (see
:mod:`mmcr.analysis.theory`). The lead's ``mmcr.cli`` calls :func:`register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run_ppe"]

_THEORY_DESCRIPTION = """\
Analyses of Schaeffer et al. (2024), arXiv 2406.09366, that need no training.

  ppe   the pretraining percent error of perfectly aligned and uniform embeddings,
        and its ridge at P = D (the "double descent" of the MMCR loss)
"""

_PPE_DESCRIPTION = """\
Pretraining percent error (PPE) of perfectly aligned and uniform embeddings.

MMCR maximises ||C||_*, the nuclear norm of the P x D matrix C of view centroids
(P = batch size, D = embedding dimension). It can be at most sqrt(P min(P, D)), so

    PPE = (sqrt(P min(P, D)) - ||C||_*) / sqrt(P min(P, D))

is how far a batch is from the optimum, as a fraction. Even ideal embeddings, every
view on the same point (aligned) and the points i.i.d. uniform on the sphere
(uniform), leave a PPE above 0, because a finite random sample is not exactly
isotropic. This command measures that floor by Monte Carlo and gives its large-size
limit from the Marchenko-Pastur law, which depends on r = min(P, D) / max(P, D) only:

  * the ridge: the PPE peaks at P = D, at 1 - 8/(3 pi) = 0.1512 (quarter-circle law);
  * it is symmetric in P/D <-> D/P: about 0.067 at ratio 2, 0.032 at ratio 4;
  * it falls like r/8 away from the ridge.

Training curves of the MMCR loss inherit this ridge: the loss is hardest to drive down
when the batch size equals the embedding dimension (double descent in P and D).
"""

_PPE_EPILOG = """\
examples:
  mmcr theory ppe --P 256 --D 256 --json
  mmcr theory ppe --P 16 32 64 128 256 512 1024 --D 64 256 1024 --out runs/ppe
"""


def register(subparsers: Any) -> None:
    """Add ``theory`` (with its ``ppe`` analysis) to an argparse subparsers object.

    Every parser added sets ``func``, a callable(args) -> exit code, with set_defaults.
    """
    theory = subparsers.add_parser(
        "theory",
        help="analyses without training: the PPE floor of ideal embeddings and its P = D ridge",
        description=_THEORY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    theory_sub = theory.add_subparsers(dest="theory_command", metavar="ANALYSIS")

    def show_theory_help(args: argparse.Namespace) -> int:
        theory.print_help()
        return 0

    theory.set_defaults(func=show_theory_help)

    ppe = theory_sub.add_parser(
        "ppe",
        help="pretraining percent error of aligned + uniform embeddings (Monte Carlo and limit)",
        description=_PPE_DESCRIPTION,
        epilog=_PPE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ppe.add_argument(
        "--P",
        dest="P",
        type=int,
        nargs="+",
        default=[256],
        metavar="P",
        help="batch size(s), the number of centroids (default: 256); several values make a grid",
    )
    ppe.add_argument(
        "--D",
        dest="D",
        type=int,
        nargs="+",
        default=[256],
        metavar="D",
        help="embedding dimension(s) (default: 256); several values make a grid",
    )
    ppe.add_argument(
        "--trials",
        type=int,
        default=32,
        help="Monte-Carlo repetitions per (P, D) (default: 32)",
    )
    ppe.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    ppe.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="level of the Student-t confidence interval of the mean (default: 0.95)",
    )
    ppe.add_argument(
        "--device",
        default="cpu",
        help="torch device for the sampling and eigenvalues, e.g. cpu or cuda (default: cpu)",
    )
    ppe.add_argument("--json", action="store_true", help="print the results as JSON")
    ppe.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write ppe_grid.json, ppe_vs_P.png and ppe_heatmap.png into DIR",
    )
    ppe.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="hide the progress bar over grid cells (shown on a terminal by default)",
    )
    ppe.set_defaults(func=run_ppe)


def _single_cell(args: argparse.Namespace) -> dict[str, Any]:
    from mmcr.analysis.theory import (
        marchenko_pastur_ratio,
        ppe_at_equal_size,
        ppe_marchenko_pastur,
        ppe_small_ratio,
        ppe_uniform_monte_carlo,
    )

    P, D = args.P[0], args.D[0]
    mc = ppe_uniform_monte_carlo(P, D, args.trials, args.seed, args.device, args.confidence)
    ratio = marchenko_pastur_ratio(P, D)
    result: dict[str, Any] = {
        "P": P,
        "D": D,
        "ratio": ratio,
        "monte_carlo": {
            k: mc[k]
            for k in (
                "mean",
                "std",
                "stderr",
                "ci",
                "ci_half_width",
                "confidence",
                "trials",
                "seed",
            )
        },
        "marchenko_pastur_limit": ppe_marchenko_pastur(P, D),
        "small_ratio_asymptote": ppe_small_ratio(ratio, order=2),
    }
    if P == D:
        result["closed_form_equal_size"] = ppe_at_equal_size()
    return result


def _check_before_work(args: argparse.Namespace) -> None:
    """The device and the output folder are checked before any sampling, not after it."""
    import torch

    try:
        torch.device(args.device)
    except RuntimeError:
        raise ValueError(
            f"--device {args.device!r} is not a torch device; use cpu, cuda or cuda:N"
        ) from None
    if args.out is not None:
        from mmcr.records import output_folder

        output_folder(args.out)  # refuses an empty name or a file, and makes the folder


def run_ppe(args: argparse.Namespace) -> int:
    """Run ``mmcr theory ppe``: one cell, or a grid when several P or D are given or --out."""
    _check_before_work(args)
    grid_mode = len(args.P) > 1 or len(args.D) > 1 or args.out is not None
    if not grid_mode:
        result = _single_cell(args)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            mc = result["monte_carlo"]
            low, high = mc["ci"]
            print(f"P = {result['P']}, D = {result['D']}, ratio min/max = {result['ratio']:.4g}")
            print(
                f"  Monte Carlo ({mc['trials']} trials):  PPE = {mc['mean']:.5f}  "
                f"({mc['confidence']:.0%} CI {low:.5f} .. {high:.5f})"
            )
            print(f"  Marchenko-Pastur limit:        PPE = {result['marchenko_pastur_limit']:.5f}")
            if "closed_form_equal_size" in result:
                print(
                    f"  closed form at P = D, 1 - 8/(3 pi) = {result['closed_form_equal_size']:.5f}"
                )
        return 0

    from mmcr.analysis.theory import ppe_grid

    grid = ppe_grid(
        args.P, args.D, args.trials, args.seed, args.device, args.confidence, args.progress
    )
    written: dict[str, str] = {}
    if args.out is not None:
        from mmcr.analysis.plots import plot_ppe_heatmap, plot_ppe_vs_P

        out_dir = Path(args.out)  # made by _check_before_work
        written["grid"] = str(grid.save_json(out_dir / "ppe_grid.json"))
        written["ppe_vs_P"] = str(plot_ppe_vs_P(grid, out_dir / "ppe_vs_P.png"))
        written["heatmap"] = str(plot_ppe_heatmap(grid, out_dir / "ppe_heatmap.png"))
    if args.json:
        print(json.dumps({**grid.to_dict(), "written": written}, indent=2))
    else:
        header = f"{'P':>6} {'D':>6}  {'PPE (MC)':>9}  {'CI +-':>8}  {'MP limit':>9}"
        print(header)
        for i, P in enumerate(grid.Ps):
            for j, D in enumerate(grid.Ds):
                mean, half, limit = grid.mean[i, j], grid.ci_half_width[i, j], grid.mp_limit[i, j]
                marker = "  <- ridge (P = D)" if P == D else ""
                print(f"{P:>6} {D:>6}  {mean:9.5f}  {half:8.5f}  {limit:9.5f}{marker}")
        for name, path in written.items():
            print(f"wrote {name}: {path}", file=sys.stderr)
    return 0
