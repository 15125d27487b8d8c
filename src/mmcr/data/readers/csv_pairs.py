"""Image-text tables in the open_clip layout: ``DIR/train.tsv``, ``DIR/test.tsv`` (``val.tsv``).

Each table is UTF-8 text, one row a line, fields separated by ``csv_separator`` (default a
tab; a field may be double-quoted to hold the separator), with a header row naming the
columns. Two columns are read: the image path (``csv_img_key``, default ``filepath``) and
the caption (``csv_caption_key``, default ``title``); other columns are ignored. A
relative image path is relative to the table's folder. Rows naming the same image make one
datum with several captions, in row order (COCO-style tables with five captions per
image). Images are read with Pillow as RGB, centre-cropped to a square and resized
(bilinear) to ``image_size`` (default 64), all into memory: for corpora too large for
memory use webdataset shards.

The table for split ``s`` is ``DIR/s.tsv``, else ``DIR/s.csv``.

Bad input raises ``ValueError`` naming the table and the line (the header is line 1): a
missing column, a row with too few fields, bytes that are not UTF-8, an empty caption, an
image that is missing or cannot be decoded. With ``skip_bad_rows`` the bad rows (not a bad
header) are left out instead; a warning gives their count and the first reasons, and
:attr:`~mmcr.data.paired.PairedDataset.skipped` lists them all.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from mmcr.data.dataset import ImageDataset
from mmcr.data.paired import PairedDataset, PairedOptions, PairedRequest, decode_caption, report_skipped
from mmcr.data.readers.imagefolder import read_image
from mmcr.data.registry import DatasetInfo, DatasetRequest

__all__ = ["CSV_PAIRS", "DEFAULT_SIZE", "find_table", "load_csv", "load_csv_pairs", "read_table"]

DEFAULT_SIZE = 64
_SUFFIXES = (".tsv", ".csv")


def find_table(data_dir: str | Path | None, split: str) -> Path:
    """The table of ``split`` in ``data_dir``.

    Raises:
        ValueError: no ``data_dir``.
        FileNotFoundError: neither ``<split>.tsv`` nor ``<split>.csv`` is there.
    """
    if data_dir is None:
        raise ValueError(
            "the 'csv' data set needs data_dir (--data-dir), the folder holding train.tsv and "
            "test.tsv (columns filepath and title, tab-separated)"
        )
    root = Path(data_dir).expanduser()
    for suffix in _SUFFIXES:
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    present = sorted(p.name for p in root.glob("*") if p.suffix in _SUFFIXES) if root.is_dir() else []
    raise FileNotFoundError(
        f"no table for split {split!r}: {root / (split + '.tsv')} does not exist "
        f"(tables in {root}: {', '.join(present) or 'none'})"
    )


def _lines(table: Path) -> list[bytes]:
    data = table.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def read_table(table: Path, options: PairedOptions) -> tuple[list[tuple[int, str, str]], list[str]]:
    """The rows ``(line, image path, caption)`` of ``table``, and the bad rows skipped.

    Raises:
        ValueError: a bad header, or (without ``skip_bad_rows``) a bad row.
    """
    lines = _lines(table)
    if not lines:
        raise ValueError(f"{table} is empty; expected a header row with columns "
                         f"{options.csv_img_key!r} and {options.csv_caption_key!r}")
    try:
        header_text = lines[0].decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise ValueError(f"{table} line 1 (the header): bytes that are not UTF-8 ({err.reason})") from err
    header = next(csv.reader([header_text], delimiter=options.csv_separator))
    columns = [name.strip() for name in header]
    missing = [key for key in (options.csv_img_key, options.csv_caption_key) if key not in columns]
    if missing:
        raise ValueError(
            f"{table} line 1 (the header): no column {' or '.join(repr(m) for m in missing)}; "
            f"the header has columns {columns} (separator {options.csv_separator!r}). Set "
            "csv_img_key / csv_caption_key / csv_separator to match the table"
        )
    img_col, cap_col = columns.index(options.csv_img_key), columns.index(options.csv_caption_key)
    rows: list[tuple[int, str, str]] = []
    skipped: list[str] = []
    for number, raw in enumerate(lines[1:], start=2):
        where = f"{table} line {number}"
        try:
            if not raw.strip():
                continue  # blank lines are not rows
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.end].hex(" ")
                raise ValueError(
                    f"{where}: bytes that are not UTF-8 (byte {bad} at column {err.start + 1})"
                ) from err
            try:
                fields = next(csv.reader([text], delimiter=options.csv_separator))
            except csv.Error as err:
                raise ValueError(f"{where}: not a table row ({err})") from err
            if len(fields) <= max(img_col, cap_col):
                raise ValueError(
                    f"{where}: {len(fields)} field(s), but the header has {len(columns)} "
                    f"(separator {options.csv_separator!r})"
                )
            path = fields[img_col].strip()
            if not path:
                raise ValueError(f"{where}: the {options.csv_img_key!r} field is empty")
            caption = decode_caption(fields[cap_col], f"{where} (column {options.csv_caption_key!r})")
        except ValueError as err:
            if not options.skip_bad_rows:
                raise
            skipped.append(str(err))
            continue
        rows.append((number, path, caption))
    return rows, skipped


def load_csv_pairs(request: PairedRequest) -> PairedDataset:
    """The pairs of ``data_dir/<split>.tsv``: one datum per distinct image, its captions in
    row order, images uint8 ``(N, 3, image_size, image_size)``."""
    options = request.options
    table = find_table(request.request.data_dir, request.request.split)
    side = request.request.image_size or DEFAULT_SIZE
    rows, skipped = read_table(table, options)
    keys: list[str] = []
    captions: dict[str, list[str]] = {}
    images: dict[str, np.ndarray] = {}
    bad_images: dict[str, str] = {}
    for number, path, caption in rows:
        if path in captions:
            captions[path].append(caption)
            continue
        where = f"{table} line {number}"
        if path in bad_images:
            skipped.append(f"{where}: {bad_images[path]}")
            continue
        file = Path(path) if Path(path).is_absolute() else table.parent / path
        try:
            if not file.is_file():
                raise ValueError(f"image {path!r} not found (looked for {file})")
            try:
                pixels = read_image(file, side)
            except ValueError as err:
                raise ValueError(f"image {path!r} cannot be decoded ({err})") from err
        except ValueError as err:
            if not options.skip_bad_rows:
                raise ValueError(f"{where}: {err}") from err
            bad_images[path] = str(err)
            skipped.append(f"{where}: {err}")
            continue
        keys.append(path)
        captions[path] = [caption]
        images[path] = pixels
    if not keys:
        raise ValueError(
            f"{table}: no usable rows ({len(skipped)} bad row(s) skipped"
            + (f"; first: {skipped[0]}" if skipped else "")
            + ")"
        )
    report_skipped(skipped, str(table))
    return PairedDataset(
        images=torch.from_numpy(np.stack([images[k] for k in keys])),
        captions=[captions[k] for k in keys],
        name=request.info.name,
        keys=keys,
        sources=(f"{table} ({len(rows)} rows, {len(keys)} images)",),
        skipped=tuple(skipped),
    )


def load_csv(request: DatasetRequest) -> ImageDataset:
    """The images of a table, unlabeled (label ``-1``), for image-only use."""
    return load_csv_pairs(PairedRequest(request)).image_dataset()


CSV_PAIRS = DatasetInfo(
    "csv",
    3,
    None,
    None,
    ("train", "val", "test", "<any table name>"),
    "a folder of tables <split>.tsv with an image path and a caption per row",
    aliases=("tsv", "image-text-table"),
    augment="imagenet",
    loader=load_csv,
)
