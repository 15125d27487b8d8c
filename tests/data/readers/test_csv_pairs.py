"""Image-text tables (``dataset = "csv"``) on tiny trees the tests write, bad input included."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmcr.data import PairedOptions, dataset_info, load_dataset, load_paired

COLOURS = {"red.png": (220, 20, 20), "green.png": (20, 200, 20), "blue.png": (20, 20, 230)}


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        pixels = np.zeros((24, 40, 3), dtype=np.uint8)
        pixels[:] = colour
        Image.fromarray(pixels).save(folder / name)


def write_table(path: Path, lines: list[str | bytes], header: str = "filepath\ttitle") -> Path:
    rows = [header.encode()] + [line if isinstance(line, bytes) else line.encode() for line in lines]
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp/corpus/{train,test}.tsv`` and ``images/*.png``; red has two captions."""
    root = tmp_path / "corpus"
    write_images(root / "images")
    write_table(
        root / "train.tsv",
        [
            "images/red.png\ta red square",
            "images/green.png\ta green square",
            "images/red.png\tsomething red",
            str(root / "images" / "blue.png") + "\ta blue square",  # absolute paths work too
        ],
    )
    write_table(root / "test.tsv", ["images/blue.png\tblue"])
    return root


def test_reads_pairs_and_merges_captions_of_one_image(tree: Path) -> None:
    train = load_paired("csv", "train", tree, image_size=16)
    assert train.name == "csv" and len(train) == 3
    assert train.images.shape == (3, 3, 16, 16) and train.images.dtype == torch.uint8
    assert train.keys[:2] == ["images/red.png", "images/green.png"]
    assert train.captions[0] == ["a red square", "something red"]  # row order kept
    assert train.captions[1] == ["a green square"]
    assert train.primary_captions()[2] == "a blue square"
    assert train.images[0, :, 8, 8].tolist() == [220, 20, 20]
    assert train.images[2, :, 8, 8].tolist() == [20, 20, 230]
    texts, owner = train.flat_captions()
    assert texts == ["a red square", "something red", "a green square", "a blue square"]
    assert owner.tolist() == [0, 0, 1, 2]
    assert train.skipped == () and "train.tsv" in train.sources[0]
    assert train.labels == {} and train.groups is None
    test = load_paired("csv", "test", tree)
    assert test.image_size == (64, 64) and test.captions == [["blue"]]


def test_registry_entry_and_image_only_view(tree: Path) -> None:
    assert dataset_info("tsv").name == "csv"
    images = load_dataset("csv", "train", tree, image_size=8)
    assert images.images.shape == (3, 3, 8, 8)
    assert images.labels.tolist() == [-1, -1, -1]


def test_other_columns_separator_and_quotes(tmp_path: Path) -> None:
    write_images(tmp_path / "img")
    write_table(
        tmp_path / "val.csv",
        ['7,img/green.png,"green, bright"', "8,img/red.png,red"],
        header="id,image,caption",
    )
    options = PairedOptions(csv_img_key="image", csv_caption_key="caption", csv_separator=",")
    val = load_paired("csv", "val", tmp_path, image_size=8, options=options)
    assert val.captions == [["green, bright"], ["red"]]
    with pytest.raises(ValueError, match="csv_separator must be one character"):
        PairedOptions(csv_separator="::")


def test_missing_table_and_missing_data_dir(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"val\.tsv does not exist.*test\.tsv, train\.tsv"):
        load_paired("csv", "val", tree)
    with pytest.raises(ValueError, match="needs data_dir"):
        load_paired("csv", "train")


def test_missing_column_names_the_file_and_the_header(tree: Path) -> None:
    write_table(tree / "train.tsv", ["images/red.png\tred"], header="filepath\tcaption")
    for skip in (False, True):  # a bad header is never skipped
        header_error = r"train\.tsv line 1 \(the header\): no column 'title'.*'caption'"
        with pytest.raises(ValueError, match=header_error):
            load_paired("csv", "train", tree, options=PairedOptions(skip_bad_rows=skip))


def test_the_same_columns_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="two columns"):
        PairedOptions(csv_img_key="x", csv_caption_key="x")


# Each bad row, the line it is on (header = line 1) and the message expected.
BAD_ROWS = [
    ("images/none.png\tmissing", "line 3: image 'images/none.png' not found"),
    ("images/broken.png\tbroken", "line 3: image 'images/broken.png' cannot be decoded"),
    ("images/green.png\t   ", "line 3 (column 'title'): the caption is empty"),
    (b"images/green.png\tgr\xffn", "line 3: bytes that are not UTF-8 (byte ff at column 20)"),
    ("images/green.png", "line 3: 1 field(s), but the header has 2"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_each_bad_row_names_the_file_and_the_line(tree: Path, row: str | bytes, message: str) -> None:
    (tree / "images" / "broken.png").write_bytes(b"\x89PNG but not really an image")
    write_table(tree / "train.tsv", ["images/red.png\tred", row, "images/blue.png\tblue"])
    with pytest.raises(ValueError, match=re.escape(f"{tree / 'train.tsv'} {message}")):
        load_paired("csv", "train", tree)


def test_skip_bad_rows_reports_the_count(tree: Path) -> None:
    (tree / "images" / "broken.png").write_bytes(b"not an image")
    rows: list[str | bytes] = ["images/red.png\tred"]
    rows += [row for row, _ in BAD_ROWS]
    rows += ["images/none.png\tmissing again", "images/blue.png\tblue"]
    write_table(tree / "train.tsv", rows)
    with pytest.warns(UserWarning, match=r"skipped 6 bad row\(s\) of .*train\.tsv"):
        train = load_paired("csv", "train", tree, image_size=8, options=PairedOptions(skip_bad_rows=True))
    assert train.keys == ["images/red.png", "images/blue.png"]
    assert train.captions == [["red"], ["blue"]]
    assert len(train.skipped) == 6
    assert all("train.tsv line" in reason for reason in train.skipped)
    assert any("line 8" in reason and "none.png" in reason for reason in train.skipped)


def test_a_table_of_only_bad_rows_is_an_error_even_when_skipping(tree: Path) -> None:
    write_table(tree / "train.tsv", ["images/none.png\tmissing"])
    with pytest.raises(ValueError, match=r"no usable rows \(1 bad row"):
        load_paired("csv", "train", tree, options=PairedOptions(skip_bad_rows=True))
