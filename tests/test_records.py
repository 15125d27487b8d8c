"""The run-folder records: a corrupt JSON file is a sentence naming it, not a parser traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcr.experiments.results import SWEEP_FILE, load_meta
from mmcr.records import output_folder, read_json, write_json


def test_read_json_round_trips_and_names_a_corrupt_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    write_json(good, {"a": [1, 2]})
    assert read_json(good) == {"a": [1, 2]}
    cut = tmp_path / "cut.json"
    cut.write_text('{"a": [1,')
    with pytest.raises(ValueError, match=r"cut\.json is not valid JSON .*rerun the command"):
        read_json(cut)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=r"binary\.json is not valid JSON"):
        read_json(binary)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "is not valid JSON"),
        ("[1]", "holds no sweep description"),
        ('{"kind": "nope"}', "unknown sweep kind 'nope'"),
        ('{"kind": "scaling"}', "has no 'spec'"),
    ],
)
def test_a_corrupt_sweep_file_is_refused_with_its_name(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / SWEEP_FILE).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_meta(tmp_path)


def test_output_folder_creates_a_folder_and_refuses_a_file_or_an_empty_name(tmp_path: Path) -> None:
    made = output_folder(tmp_path / "a" / "b")
    assert made.is_dir() and output_folder(made) == made  # an existing folder is fine
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        output_folder(a_file)
    with pytest.raises(ValueError, match="--out is empty"):
        output_folder("  ")
