"""Features of streamed images: the workers' decode, then the same plain view and network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmcr.build import read_streamed
from mmcr.data import preset
from mmcr.data.stream import LoaderOptions, StreamedSplit, folder_index
from mmcr.evaluation.embed import batched_apply, streamed_apply

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import make_tree
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import make_tree  # type: ignore[no-redef]


def test_streamed_features_are_those_of_the_decoded_images(tmp_path: Path) -> None:
    index = folder_index(make_tree(tmp_path / "tree"), "train", cache_dir=tmp_path / "c")
    split = StreamedSplit(index, np.array([5, 0, 11, 3, 7]), 3)
    config = preset("imagenet", crop_size=16)
    options = LoaderOptions(num_workers=0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 6))
    streamed = streamed_apply(network, split, config, options, batch_size=2)
    decoded = read_streamed(split, 16, options, "imagefolder")
    assert streamed.shape == (5, 6)
    torch.testing.assert_close(streamed, batched_apply(network, decoded.images, config))
    assert decoded.labels.tolist() == [1, 0, 2, 0, 1]
