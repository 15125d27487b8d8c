"""The ``mmcr`` command line: pretrain, evaluate, measure geometry, run the analyses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmcr",
        description=(
            "Maximum Manifold Capacity Representations: pretrain image encoders with the "
            "MMCR objective (or a baseline), evaluate them (kNN, linear probe), measure the "
            "geometry of their embeddings, and run the analyses of Schaeffer et al. (2024)."
        ),
        epilog="Run 'mmcr COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def _version() -> str:
    from mmcr import __version__

    return f"mmcr {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        result: int = args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mmcr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
