"""The ``mmcr`` command line: pretrain, evaluate, measure geometry, run the analyses."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

DESCRIPTION = """\
Maximum Manifold Capacity Representations (MMCR): pretrain image encoders with the MMCR
objective (or a baseline), evaluate them (kNN, linear probe), measure the geometry of
their embeddings, and run the analyses of Schaeffer et al. (2024).

The main job on the default data (Fashion-MNIST, small ConvNet, 2 CPU cores):
  mmcr pretrain --config configs/fashion_mnist.toml --out runs/fmnist
  mmcr eval runs/fmnist/last.pt
"""


# Each module defines register(subparsers), adding its subcommands.
SUBCOMMAND_MODULES = (
    "mmcr.cli.theory",
    "mmcr.cli.sweep",
    "mmcr.cli.export",
    "mmcr.cli.embed",
    "mmcr.cli.geometry",
    "mmcr.cli.data",
    "mmcr.cli.paired",
)


def _pretrain(args: argparse.Namespace) -> int:
    from mmcr.config import build_config, overrides_from_args
    from mmcr.training import pretrain

    cfg = build_config(args.config, overrides_from_args(args))
    path = pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    print(f"checkpoint: {path}")
    return 0


def _add_pretrain(sub: argparse._SubParsersAction, full: bool) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder with MMCR or a baseline objective",
        description=(
            "Pretrain an encoder + projector on K augmented views per image. Settings come from "
            "the defaults, then the recipe file (--config, TOML or YAML: key = value for any field "
            "below), then the flags. The resolved configuration is printed and saved as "
            "OUT/config.json; metrics go to OUT/metrics.jsonl; the checkpoint to OUT/last.pt "
            "(atomic, resumable with --resume). Launch with torchrun --nproc_per_node=W for "
            "data parallelism: the loss and gradients equal those of one process with the "
            "whole batch."
        ),
    )
    if not full:  # the options need the registries (torch): only for `mmcr pretrain ...` itself
        return
    from mmcr.config import add_config_arguments

    p.add_argument("--config", help="recipe file (TOML or YAML), e.g. configs/fashion_mnist.toml")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    resume.add_argument(
        "--overwrite", action="store_true", help="replace the run that OUT holds (otherwise it is refused)"
    )
    add_config_arguments(p)
    p.set_defaults(func=_pretrain)


def _eval(args: argparse.Namespace) -> int:
    from mmcr.evaluate import EvalOptions, evaluate

    results = evaluate(
        EvalOptions(
            checkpoint=args.checkpoint,
            config=args.config,
            out=args.out,
            random_init=args.random_init,
            raw_pixels=args.raw_pixels,
            data_dir=args.data_dir,
            device=args.device,
            probe=not args.no_probe,
            probe_weight_decays=tuple(args.probe_l2),
            probe_max_iter=args.probe_max_iter,
        )
    )
    print(_eval_line(results))
    return 0


def _eval_line(results: dict[str, Any]) -> str:
    """The one-line summary of an evaluation: what it measured (paired data may have no labels)."""
    parts = []
    if "retrieval" in results:
        r = results["retrieval"]
        parts.append(
            f"recall@1 image-to-text {100 * r['image_to_text']['recall@1']:.2f} %, "
            f"text-to-image {100 * r['text_to_image']['recall@1']:.2f} %"
        )
    if "knn" in results:
        parts.append(f"kNN test accuracy {100 * results['knn']['test_accuracy']:.2f} %")
    if "linear_probe" in results:
        parts.append(f"linear-probe test accuracy {100 * results['linear_probe']['test_accuracy']:.2f} %")
    return f"{results['mode']}: " + (", ".join(parts) or "no scores (see eval.json)")


def _add_eval(sub: argparse._SubParsersAction, full: bool) -> None:
    p = sub.add_parser(
        "eval",
        help="kNN, linear probe and geometry of a checkpoint",
        description=(
            "Evaluate a checkpoint on its data set: kNN (k and temperature chosen on the "
            "validation split), a linear probe on frozen backbone features (L2 weight chosen "
            "on the validation split, refit on train+val), and the geometry of K-view test "
            "embeddings (alignment, uniformity, effective rank, PPE, MI bound). The test split "
            "is used only for the final numbers. Writes eval.json and report.md with plots. "
            "--random-init and --raw-pixels score the untrained architecture and the pixels "
            "with the same code, as references."
        ),
    )
    if not full:
        return
    from mmcr.evaluation.linear_probe import PROBE_WEIGHT_DECAYS

    p.add_argument("checkpoint", nargs="?", help="a checkpoint written by mmcr pretrain (OUT/last.pt)")
    p.add_argument("--config", help="recipe for --random-init / --raw-pixels without a checkpoint")
    p.add_argument("--out", help="output directory (default: OUT/eval beside the checkpoint)")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--random-init", action="store_true", help="score the architecture at initialisation")
    ref.add_argument("--raw-pixels", action="store_true", help="score the pixels themselves")
    p.add_argument("--data-dir", help="where the data set lies, if not where it was for training")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe (kNN and geometry only)")
    p.add_argument(
        "--probe-l2",
        type=float,
        nargs="+",
        default=list(PROBE_WEIGHT_DECAYS),
        metavar="L2",
        help="the probe's L2 grid; the weight with the best validation accuracy is refit on train+val",
    )
    p.add_argument("--probe-max-iter", type=int, default=200, help="L-BFGS iterations per probe fit")
    p.set_defaults(func=_eval)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mmcr`` parser; the options of ``pretrain`` and ``eval`` only when ``command`` is one.

    Their options come from the registries, which import torch; ``mmcr --help`` and the
    other commands stay fast without them.
    """
    parser = argparse.ArgumentParser(
        prog="mmcr",
        description=DESCRIPTION,
        epilog="Run 'mmcr COMMAND --help' for the options of one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_pretrain(sub, full=command == "pretrain")
    _add_eval(sub, full=command == "eval")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _version() -> str:
    from mmcr import __version__

    return f"mmcr {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # output piped into e.g. head, which has closed
        sys.stderr.close()
        return 0
    except (ValueError, OSError) as exc:  # bad input, missing or unreadable files: a sentence
        print(f"mmcr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result
