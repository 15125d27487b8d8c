"""The ``mmcr geometry`` subcommand: manifold capacity, radius and dimension through the depth of checkpoints.

The lead's ``mmcr.cli`` calls :func:`register`; the job is :mod:`mmcr.manifolds`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_DESCRIPTION = """\
Measure the geometry that gives MMCR its name, at every depth of one or more checkpoints.

A manifold is the point cloud of one object. Two kinds are measured, on the test split of
each checkpoint's data set:

  exemplar  P test images, each in M augmented views (the training augmentation)
  class     P classes (at most the data set's), M test images of each

at the input, after each encoder stage, at the pooled features and at the projector
output. For each, the replica mean-field theory (Chung, Lee, Sompolinsky 2018; Cohen et
al. 2020) gives:

  capacity   alpha_M: the most manifolds per dimension that a linear readout can still
             separate for random labels (higher = more separable; 2 for points)
  radius     R_M: the manifold's size relative to its centre's distance from the others
  dimension  D_M: the number of directions in which it spreads, seen by a readout
  center_correlation: how aligned the manifolds' centres are (before removing what they share)

MMCR should raise capacity and shrink radius and dimension with depth more than other
objectives. Layers wider than --max-features are mapped to that many dimensions by a
seeded random projection (distances kept to about 1/sqrt(k); the same projection for
every checkpoint). With M samples spanning M - 1 dimensions the capacity is that of the
samples, an over-estimate of the manifold's: geometry.json gives its trend over M at the
last depth, and comparisons are fair at equal M.

Writes OUT/geometry.json and OUT/geometry_exemplar.png, OUT/geometry_class.png (capacity,
radius and dimension against depth, one line per checkpoint).
"""

_EPILOG = """\
examples:
  mmcr geometry runs/fmnist/last.pt
  mmcr geometry runs/compare/*/last.pt --out runs/compare/geometry     # one line per objective
  mmcr geometry runs/fmnist/last.pt --kinds exemplar --manifolds 100 --views 32 --kappa 0.5
"""


def register(subparsers: Any) -> None:
    """Add ``geometry`` to an argparse subparsers object (sets ``func``, a callable(args) -> exit code)."""
    p = subparsers.add_parser(
        "geometry",
        help="manifold capacity, radius and dimension at every depth of one or more checkpoints",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints written by mmcr pretrain")
    p.add_argument("--out", default="geometry", help="output folder (default: geometry)")
    p.add_argument(
        "--manifolds", type=int, default=50, help="P: test images, or at most this many classes (50)"
    )
    p.add_argument(
        "--views", type=int, default=20, help="M of exemplar manifolds: augmented views per image (20)"
    )
    p.add_argument("--images-per-class", type=int, default=50, help="M of class manifolds (50)")
    p.add_argument("--kinds", nargs="+", default=["exemplar", "class"], choices=["exemplar", "class"])
    p.add_argument(
        "--kappa", type=float, default=0.0, help="margin, in units of each manifold's centre norm (0)"
    )
    p.add_argument(
        "--n-t", type=int, default=100, help="Gaussian vectors per manifold of the mean-field theory (100)"
    )
    p.add_argument(
        "--max-features", type=int, default=512, help="randomly project wider layers to this (512)"
    )
    p.add_argument(
        "--max-center-components",
        type=int,
        default=10,
        help="most shared centre directions tried for removal before the analysis (10)",
    )
    p.add_argument("--restarts", type=int, default=2, help="random starts of each centre optimisation (2)")
    p.add_argument("--seed", type=int, default=0, help="seeds the images, views, projections and vectors (0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (cpu)")
    p.add_argument("--data-dir", help="where the data set lies, if not where it was for training")
    p.add_argument("--no-plots", action="store_true", help="write geometry.json only")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mmcr.manifolds import GeometryOptions, measure_geometry

    results = measure_geometry(
        GeometryOptions(
            checkpoints=list(args.checkpoints),
            out=args.out,
            manifolds=args.manifolds,
            views=args.views,
            images_per_class=args.images_per_class,
            kappa=args.kappa,
            n_t=args.n_t,
            max_features=args.max_features,
            max_center_components=args.max_center_components,
            restarts=args.restarts,
            kinds=tuple(args.kinds),
            seed=args.seed,
            device=args.device,
            data_dir=args.data_dir,
            plots=not args.no_plots,
        )
    )
    header = f"{'checkpoint':<40} {'kind':<9} {'depth':<10} {'capacity':>9} {'radius':>8} {'dimension':>9}"
    print(header)
    for entry in results["checkpoints"]:
        for kind in ("exemplar", "class"):
            for depth, values in entry.get(kind, {}).items():
                print(
                    f"{entry['label'][:40]:<40} {kind:<9} {depth:<10} {values['capacity']:>9.4f} "
                    f"{values['radius']:>8.3f} {values['dimension']:>9.2f}"
                )
    return 0
