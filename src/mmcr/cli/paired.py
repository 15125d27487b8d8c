"""The ``mmcr paired info NAME`` subcommand: load a paired image-text data set and describe it.

For the emoji set this also renders it into the cache on first use, so later runs start
without rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

_DESCRIPTION = """\
Load the splits of a paired image-text data set (building the emoji cache if needed) and
print what they hold: data, captions per datum, groups, labels, left-out rows, and the
files read. NAME is "emoji" (Noto Color Emoji with Unicode CLDR names; the Debian packages
fonts-noto-color-emoji and unicode-cldr-core) or "csv" (a folder of tables
<split>.tsv with columns filepath and title, given with --data-dir).
"""


def register(subparsers: Any) -> None:
    """Add ``paired`` (with its ``info`` subcommand) to argparse subparsers."""
    p = subparsers.add_parser(
        "paired", help="paired image-text data: build the emoji cache, describe a data set"
    )
    sub = p.add_subparsers(dest="paired_command", metavar="COMMAND", required=True)
    info = sub.add_parser(
        "info",
        help="load a paired data set's splits and describe them",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mmcr paired info emoji --image-size 32\n"
        "  mmcr paired info csv --data-dir corpus/ --splits train test --skip-bad-rows",
    )
    info.add_argument("name", metavar="NAME", help="a paired data set: emoji or csv")
    info.add_argument("--data-dir", default=None, help="the table folder (csv) or the emoji files' folder")
    info.add_argument("--splits", nargs="+", default=None, help="splits to load (default: train val test)")
    info.add_argument("--image-size", type=int, default=None, help="side length in pixels (default: 64)")
    info.add_argument("--languages", default="en", help="emoji caption languages, comma-separated, or 'all'")
    info.add_argument("--no-keywords", action="store_true", help="emoji: names only, no keyword captions")
    info.add_argument(
        "--skip-bad-rows", action="store_true", help="csv: leave out bad rows (they are counted)"
    )
    info.add_argument("--csv-img-key", default="filepath", help="csv: the image path column")
    info.add_argument("--csv-caption-key", default="title", help="csv: the caption column")
    info.add_argument("--csv-separator", default="\t", help="csv: the field separator (default: a tab)")
    info.add_argument(
        "--cache-dir", default=None, help="the cache folder (default: $MMCR_CACHE_DIR or ~/.cache/mmcr)"
    )
    info.add_argument(
        "--examples", type=int, default=3, metavar="N", help="print the captions of N data per split"
    )
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    info.set_defaults(func=_run_info)


def describe(data: Any) -> dict[str, Any]:
    """Plain-value facts about one loaded :class:`~mmcr.data.paired.PairedDataset`."""
    counts = data.caption_counts()
    return {
        "data": len(data),
        "image_shape": list(data.images.shape[1:]),
        "captions": int(counts.sum()),
        "captions_per_datum": {"min": int(counts.min()), "mean": round(float(counts.float().mean()), 3),
                               "max": int(counts.max())},
        "groups": None if data.groups is None else len(set(data.groups)),
        "labels": {kind: {"classes": len(data.label_names[kind]),
                          "unlabeled": int((values < 0).sum())} for kind, values in data.labels.items()},
        "skipped": len(data.skipped),
        "sources": list(data.sources),
    }


def _run_info(args: argparse.Namespace) -> int:
    from mmcr.data import dataset_info
    from mmcr.data.paired import PairedOptions, load_paired

    try:
        options = PairedOptions(
            languages=tuple(lang.strip() for lang in args.languages.split(",") if lang.strip()),
            keywords=not args.no_keywords,
            csv_img_key=args.csv_img_key,
            csv_caption_key=args.csv_caption_key,
            csv_separator=args.csv_separator,
            skip_bad_rows=args.skip_bad_rows,
            cache_dir=args.cache_dir,
        )
        entry = dataset_info(args.name)
        splits = args.splits or [s for s in ("train", "val", "test") if entry.accepts_split(s)]
        report: dict[str, Any] = {"name": entry.name, "splits": {}}
        examples: dict[str, list[list[str]]] = {}
        for split in splits:
            start = time.perf_counter()
            try:
                data = load_paired(
                    args.name, split, args.data_dir, image_size=args.image_size, options=options
                )
            except FileNotFoundError:
                if args.splits is None and split == "val":
                    continue  # an optional split, not asked for
                raise
            report["splits"][split] = {**describe(data), "seconds": round(time.perf_counter() - start, 2)}
            examples[split] = data.captions[: max(args.examples, 0)]
    except (FileNotFoundError, ValueError) as err:
        print(f"mmcr paired info: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(f"paired data set {report['name']}")
    for split, facts in report["splits"].items():
        per = facts["captions_per_datum"]
        print(
            f"  {split}: {facts['data']} data, images {tuple(facts['image_shape'])}, "
            f"{facts['captions']} captions "
            f"({per['min']}-{per['max']}, mean {per['mean']} per datum), "
            f"{facts['groups'] if facts['groups'] is not None else '-'} groups, "
            f"{facts['skipped']} left out, {facts['seconds']} s"
        )
        for kind, label in facts["labels"].items():
            print(f"    label {kind}: {label['classes']} classes, {label['unlabeled']} unlabeled")
        for texts in examples[split]:
            print(f"    e.g. {' | '.join(texts)}")
    first = next(iter(report["splits"].values()), None)
    if first:
        print("  read from: " + ", ".join(first["sources"]))
    return 0
