"""A new objective and a new data set are one class (or function) and one registration each.

Both are registered here through the public API only, and each pretrains two steps through
the ordinary recipe path: names, validation and ``--help`` choices come from the registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from mmcr.build import Checkpoint
from mmcr.config import build_config, registered_choices
from mmcr.data import (
    DatasetInfo,
    DatasetRequest,
    ImageDataset,
    load_dataset,
    register_dataset,
    synthetic_dataset,
)
from mmcr.objectives import Objective, build_objective, objective_names, register_objective
from mmcr.training import pretrain


@register_objective
class CentroidLength(Objective):
    """Toy objective: pull the views of a sample together (no term against collapse)."""

    name = "toy_centroid_length"
    min_views = 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        loss = -F.normalize(z, dim=-1).mean(dim=1).norm(dim=-1).mean()
        self._components = {"loss": loss.detach(), "centroid_length": -loss.detach()}
        return loss


def _blobs(request: DatasetRequest) -> ImageDataset:
    n = 96 if request.split == "train" else 32
    stream = 0 if request.split == "train" else 1
    size = request.image_size or 10
    data = synthetic_dataset(n, channels=1, size=size, num_classes=4, seed=request.seed, stream=stream)
    data.name = request.info.name
    return data


BLOBS = register_dataset(
    DatasetInfo(
        "toy-blobs", 1, 10, 4, ("train", "test"), "generated in the test", aliases=("blobs",),
        augment="digits", loader=_blobs,
    )
)

TINY: dict[str, Any] = {
    "encoder_width": 4,
    "projector_hidden": [16],
    "projector_dim": 8,
    "batch_size": 16,
    "max_steps": 2,
    "eval_every": 0,
    "log_every": 1,
    "monitor_size": 32,
    "progress": False,
    "threads": 1,
}


def test_the_registered_names_reach_validation_and_help() -> None:
    assert "toy_centroid_length" in objective_names()
    choices = registered_choices()
    assert "toy_centroid_length" in choices["objective"] and "toy-blobs" in choices["dataset"]
    assert choices["text_encoder"] == ["locked_minilm", "transformer"]
    with pytest.raises(ValueError, match=r"unknown objective 'nope'; valid: .*toy_centroid_length"):
        build_config(None, {"objective": "nope"})
    with pytest.raises(ValueError, match=r"unknown data set 'nope'; valid: .*toy-blobs"):
        build_config(None, {"dataset": "nope"})
    assert isinstance(build_objective("toy-centroid-length"), CentroidLength)
    assert load_dataset("blobs", "train").images.shape == (96, 1, 10, 10)


def test_a_registered_objective_pretrains(tmp_path: Path) -> None:
    overrides = {**TINY, "dataset": "digits", "objective": "toy_centroid_length", "out": str(tmp_path)}
    cfg = build_config(None, overrides)
    checkpoint = Checkpoint.load(pretrain(cfg))
    assert checkpoint.step == 2
    records = (tmp_path / "metrics.jsonl").read_text()
    assert '"centroid_length"' in records


def test_a_registered_dataset_pretrains_with_its_own_augmentation(tmp_path: Path) -> None:
    cfg = build_config(None, {**TINY, "dataset": "blobs", "out": str(tmp_path)})
    assert cfg.augment is None  # the data set names its preset ("digits": 8-px crops)
    checkpoint = Checkpoint.load(pretrain(cfg))
    assert checkpoint.step == 2 and checkpoint.in_channels == 1
