"""``mmcr paired info``: describes a paired data set (here a tiny table the test writes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcr.cli import paired


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    paired.register(parser.add_subparsers())
    args = parser.parse_args(["paired", "info", *argv])
    return int(args.func(args))


def test_info_of_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "train.tsv").write_text("filepath\ttitle\na.png\tgrey\na.png\tdull\nb.png\tmissing\n")
    (tmp_path / "test.tsv").write_text("filepath\ttitle\na.png\tgrey\n")
    argv = ["csv", "--data-dir", str(tmp_path), "--image-size", "4", "--skip-bad-rows", "--json"]
    with pytest.warns(UserWarning, match=r"skipped 1 bad row"):
        assert run(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["splits"]) == {"train", "test"}  # no val.tsv: left out, not an error
    train = report["splits"]["train"]
    assert train["data"] == 1 and train["captions"] == 2 and train["skipped"] == 1
    assert train["image_shape"] == [3, 4, 4]
    assert run(["csv", "--data-dir", str(tmp_path)]) == 2  # the bad row, without skipping
    assert "train.tsv line 4: image 'b.png' not found" in capsys.readouterr().err
