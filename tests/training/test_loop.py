"""Where the loop's batches come from: each rank's share of each global batch, also streamed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from mmcr import distributed as mdist
from mmcr.build import Data
from mmcr.config import build_config
from mmcr.data import ImageDataset
from mmcr.data.stream import FileIndex, StreamedSplit
from mmcr.training import loop as loop_module
from mmcr.training.step import Schedule, epoch_order


def streamed_data(n: int) -> Data:
    index = FileIndex(Path("/nowhere"), np.array([b"x.jpg"] * n), np.zeros(n, dtype=np.int64), ["a"])
    labels = torch.zeros(n, dtype=torch.long)
    empty = ImageDataset(torch.empty((n, 3, 0, 0), dtype=torch.uint8), labels, 1, "t")
    return Data(empty, empty, empty, 3, 1, stream=StreamedSplit(index, np.arange(n), 3))


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_streams_its_share_of_each_global_batch_from_the_resume_step(
    rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = build_config(None, {"dataset": "imagefolder", "batch_size": 8, "epochs": 3, "crop_size": 16})
    n, step = 20, 3  # 2 steps an epoch; resuming at step 3 is the middle of epoch 1
    state = SimpleNamespace(cfg=cfg, schedule=Schedule.of(cfg, n), step=step)
    monkeypatch.setattr(mdist, "rank", lambda: rank)
    monkeypatch.setattr(mdist, "world_size", lambda: 2)
    asked: list[list[Any]] = []

    def fake_loader(dataset: Any, batches: Any, options: Any) -> list[Any]:
        asked.extend(batches)
        return []

    monkeypatch.setattr(loop_module, "make_loader", fake_loader)
    assert list(loop_module._batches(state, streamed_data(n), set())) == []  # type: ignore[arg-type]
    assert len(asked) == 3  # steps 3, 4 and 5
    for offset, keys in enumerate(asked):
        epoch, pos = divmod(step + offset, 2)
        order = epoch_order(cfg.seed, epoch, n)
        expected = order[pos * 8 : (pos + 1) * 8][rank * 4 : (rank + 1) * 4].tolist()
        assert keys == [(epoch, i) for i in expected]
