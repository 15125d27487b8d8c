"""The assembly of a recipe's data: which path it takes (memory, stream), and what each gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mmcr.build import choose_loader, load_data, load_test, load_test_stream
from mmcr.config import build_config

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import make_tree
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import make_tree  # type: ignore[no-redef]


def folder_recipe(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    tree = make_tree(tmp_path / "tree", per_class=10)
    return {"dataset": "imagefolder", "data_dir": str(tree), "image_size": 16, "crop_size": 16, **overrides}


def test_auto_keeps_small_data_in_memory_and_streams_over_the_budget(tmp_path: Path) -> None:
    recipe = folder_recipe(tmp_path)
    assert choose_loader(build_config(None, {"dataset": "digits"})) == "memory"
    assert choose_loader(build_config(None, recipe)) == "memory"
    # 30 images x 3 x 16 x 16 bytes = 23 kB: over a 10 kB budget
    assert choose_loader(build_config(None, {**recipe, "memory_budget_gb": 1e-5})) == "stream"
    assert choose_loader(build_config(None, {**recipe, "loader": "stream"})) == "stream"


def test_the_streamed_data_holds_labels_and_a_monitor_sample_only(tmp_path: Path) -> None:
    cfg = build_config(None, folder_recipe(tmp_path, loader="stream", monitor_size=4, num_workers=0))
    data = load_data(cfg)
    whole = load_data(build_config(None, folder_recipe(tmp_path, loader="memory")))
    assert data.stream is not None and whole.stream is None
    assert len(data.train) == len(data.stream) == len(whole.train) == 27  # 3 of 30 held out
    assert data.train.images.shape == (27, 3, 0, 0)
    assert torch.equal(data.train.labels, whole.train.labels)
    assert len(data.memory) == 4 and len(data.val) == 3
    assert data.memory.images.shape == (4, 3, 16, 16) and data.memory.images.dtype == torch.uint8
    assert set(data.val.labels.tolist()) <= set(whole.val.labels.tolist())
    assert data.stream_memory is not None and data.stream_val is not None
    assert (len(data.stream_memory), len(data.stream_val)) == (27, 3)
    assert torch.equal(data.stream_val.labels, whole.val.labels)
    test, test_files = load_test(cfg), load_test_stream(cfg)
    assert test.images.shape == (4, 3, 16, 16)  # the monitor's sample; the files are all of the split
    assert test_files is not None and test_files.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_streaming_a_data_set_that_is_read_whole_is_refused() -> None:
    with pytest.raises(ValueError, match=r"loader 'stream' reads imagefolder.*'cifar10' is read whole"):
        build_config(None, {"dataset": "cifar10", "loader": "stream"})
    with pytest.raises(ValueError, match="loader must be one of auto, memory, stream, cache"):
        build_config(None, {"loader": "disk"})


def test_the_cache_path_holds_the_memory_paths_images_memory_mapped(tmp_path: Path) -> None:
    for recipe in ({"dataset": "digits"}, folder_recipe(tmp_path)):
        whole = load_data(build_config(None, {**recipe, "loader": "memory"}))
        cached = load_data(build_config(None, {**recipe, "loader": "cache"}))
        again = load_data(build_config(None, {**recipe, "loader": "cache"}))
        for part in ("train", "memory", "val"):
            for data in (cached, again):
                got, expected = getattr(data, part), getattr(whole, part)
                assert torch.equal(got.images, expected.images), part
                assert torch.equal(got.labels, expected.labels), part
        test = load_test(build_config(None, {**recipe, "loader": "cache"}))
        assert torch.equal(test.images, load_test(build_config(None, recipe)).images)
