"""The ``mmcr data`` subcommands: ``mmcr data pack SRC DEST`` writes webdataset shards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Write webdataset tar shards from an image folder or a TSV of captioned images.

SRC is an image-folder tree (SRC/<split>/<class>/*.jpg, or SRC/<class>/*.jpg): each
sample is the image file's bytes as <key>.jpg|png|webp and its class index as <key>.cls,
with the class names in DEST/classes.json. Or SRC is a tab-separated file with a header
and columns filepath and title (paths relative to the file): each sample is an image
and its captions as <key>.txt, one per line (rows naming the same image make one sample),
the paired shards that `paired = true` streams. Shards are DEST/shard-000000.tar, ..., of --shard-size
samples each, every one written to a temporary name and renamed when complete.
"""


def register(subparsers: Any) -> None:
    """Add ``data`` (with its ``pack`` subcommand) to argparse subparsers."""
    p = subparsers.add_parser("data", help="data tools: pack an image folder or a TSV into webdataset shards")
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    pack = sub.add_parser(
        "pack",
        help="write webdataset tar shards from an image folder or a TSV",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  mmcr data pack /data/imagenet100 /data/imagenet100-shards --shard-size 5000",
    )
    pack.add_argument("src", type=Path, metavar="SRC", help="an image-folder root or a .tsv file")
    pack.add_argument("dest", type=Path, metavar="DEST", help="the folder the shards go to")
    pack.add_argument(
        "--shard-size", type=int, default=1000, metavar="N", help="samples per shard (default: 1000)"
    )
    pack.add_argument("--split", default="train", help="the image folder's split folder (default: train)")
    pack.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pack.set_defaults(func=_run_pack)


def _run_pack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mmcr.data.stream.index import folder_index
    from mmcr.data.stream.shards import caption_samples, folder_samples, pack_shards, tsv_rows

    if args.shard_size < 1:
        print(f"mmcr data pack: --shard-size must be >= 1, got {args.shard_size}", file=sys.stderr)
        return 2
    src: Path = args.src
    if src.is_file():
        samples, classes = caption_samples(tsv_rows(src)), None
    else:
        index = folder_index(src, args.split)
        samples, classes = folder_samples(index), list(index.classes)
    with tqdm(total=len(samples), unit="image", desc="pack", disable=args.no_progress) as bar:
        shards = pack_shards(
            samples, args.dest, shard_size=args.shard_size, classes=classes, progress=bar.update
        )
    print(f"wrote {len(samples)} samples in {len(shards)} shards to {args.dest}")
    return 0
