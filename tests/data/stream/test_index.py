"""The cached file index of an image folder: order, labels, invalidation, empty files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcr.data import load_dataset
from mmcr.data.stream import folder_index
from mmcr.data.stream import index as index_module


def test_index_lists_the_files_in_the_in_memory_readers_order(tree: Path, tmp_path: Path) -> None:
    index = folder_index(tree, "train", cache_dir=tmp_path / "c")
    whole = load_dataset("imagefolder", "train", tree, image_size=8)
    assert len(index) == len(whole) == 12
    assert index.labels.tolist() == whole.labels.tolist()
    assert index.classes == whole.classes == ["c0", "c1", "c2"]
    assert index.path(0) == tree / "train" / "c0" / "0.jpg"
    assert index.path(11) == tree / "train" / "c2" / "3.jpg"


def test_index_is_read_from_its_cache_until_the_tree_changes(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "c"
    first = folder_index(tree, "train", cache_dir=cache)
    files = list(cache.glob("index-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))

    def no_listing(*args: object) -> None:
        raise AssertionError("the tree was listed again")

    monkeypatch.setattr(index_module, "image_files", no_listing)
    cached = folder_index(tree, "train", cache_dir=cache)
    assert cached.labels.tolist() == first.labels.tolist() and cached.paths.tolist() == first.paths.tolist()
    monkeypatch.undo()
    (tree / "train" / "c1" / "0.jpg").rename(tree / "train" / "c1" / "9.jpg")
    (tree / "train" / "c2" / "1.jpg").unlink()
    changed = folder_index(tree, "train", cache_dir=cache)
    assert len(changed) == 11
    assert changed.path(7) == tree / "train" / "c1" / "9.jpg"


def test_a_damaged_cache_file_is_not_trusted(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    folder_index(tree, "train", cache_dir=cache)
    (path,) = cache.glob("index-*.npz")
    path.write_bytes(path.read_bytes()[:100])
    assert len(folder_index(tree, "train", cache_dir=cache)) == 12


def test_empty_files_are_an_error_naming_them_or_skipped(tree: Path, tmp_path: Path) -> None:
    empty = tree / "train" / "c1" / "2.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"c1/2\.jpg is empty \(0 bytes\).*skip_bad_images"):
        folder_index(tree, "train", cache_dir=tmp_path / "c")
    index = folder_index(tree, "train", cache_dir=tmp_path / "c", skip_bad=True)
    assert len(index) == 11 and index.empty == ("train/c1/2.jpg",)


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_index(tmp_path / "nowhere", "train", cache_dir=tmp_path / "c")
