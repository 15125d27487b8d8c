"""Pretraining with an objective that sees labels: X-CLR end to end, and the labels that go with the views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from mmcr.build import load_data
from mmcr.checkpoint import load_checkpoint
from mmcr.config import build_config
from mmcr.objectives import Objective, register_objective
from mmcr.objectives import graphs as graphs_module
from mmcr.objectives.graphs import TextEncoder
from mmcr.training import pretrain
from mmcr.training.step import epoch_order

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import TINY_DIGITS, streamed_recipe
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import TINY_DIGITS, streamed_recipe  # type: ignore[no-redef]

TINY = {**TINY_DIGITS, "epochs": 1, "log_every": 1, "eval_every": 0}


def run(tmp_path: Path, name: str, **overrides: Any) -> Path:
    cfg = build_config(None, {**TINY, "out": str(tmp_path / name), **overrides})
    return pretrain(cfg)


def step_records(ckpt: Path) -> list[dict[str, Any]]:
    lines = (ckpt.parent / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "step"]


def fake_text_encoder(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), 32, dtype=torch.float64)
    for row, text in enumerate(texts):
        for char in text:
            out[row, ord(char) % 32] += 1.0
    return out


def test_xclr_pretrains_with_the_class_name_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def load() -> TextEncoder:
        def encode(texts: list[str]) -> torch.Tensor:
            seen.append(list(texts))
            return fake_text_encoder(texts)

        return TextEncoder("fake", encode)

    monkeypatch.setattr(graphs_module, "load_text_encoder", load)
    monkeypatch.setenv("MMCR_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = run(tmp_path, "xclr", objective="xclr", max_steps=3)
    assert load_checkpoint(ckpt)["step"] == 3
    assert seen == [[f"a photo of a {d}" for d in range(10)]]  # digits' class names, embedded once
    steps = step_records(ckpt)
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(0 < r["target_own_views"] < 1 and r["target_entropy"] > 0 for r in steps)
    cached = list((tmp_path / "cache" / "xclr").glob("class_graph-digits-*.pt"))
    assert len(cached) == 1
    # a second run reads the cached graph: the text model is not asked again
    run(tmp_path, "again", objective="xclr", max_steps=1)
    assert len(seen) == 1


def test_xclr_pretrains_with_a_users_matrix(tmp_path: Path) -> None:
    matrix = np.full((10, 10), 0.2) + 0.8 * np.eye(10)
    np.save(tmp_path / "digits.npy", matrix)
    args = {"graph": "matrix", "graph_path": str(tmp_path / "digits.npy"), "tau_s": 0.05}
    ckpt = run(tmp_path, "matrix", objective="xclr", objective_args=args, max_steps=2, num_views=3)
    assert load_checkpoint(ckpt)["step"] == 2
    wrong = tmp_path / "three.npy"
    np.save(wrong, np.eye(3))
    with pytest.raises(ValueError, match=r"must have shape \(10, 10\), got \(3, 3\)"):
        run(tmp_path, "wrong", objective="xclr", objective_args={"graph": "matrix", "graph_path": str(wrong)})


@register_objective
class LabelSpy(Objective):
    """Records the labels it is given; its loss pulls the two views of each image together."""

    name = "toy_label_spy"
    min_views = 2
    uses_labels = True
    received: ClassVar[list[torch.Tensor]] = []
    bound: ClassVar[list[tuple[Any, int, str]]] = []

    def bind_classes(self, names: Any, num_classes: int, *, dataset: str = "") -> None:
        LabelSpy.bound.append((names, num_classes, dataset))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        LabelSpy.received.append(labels.detach().cpu().clone())
        u = torch.nn.functional.normalize(z, dim=-1)
        loss = -(u[:, 0] * u[:, 1]).sum(-1).mean()
        self._components = {"loss": loss.detach()}
        return loss


def test_the_batchs_labels_travel_with_its_views(tmp_path: Path) -> None:
    LabelSpy.received.clear()
    LabelSpy.bound.clear()
    run(tmp_path, "spy", objective="toy_label_spy", max_steps=3)
    cfg = build_config(None, {**TINY, "out": str(tmp_path / "x")})
    data = load_data(cfg)
    assert LabelSpy.bound == [([str(d) for d in range(10)], 10, "digits")]
    order = epoch_order(cfg.seed, 0, len(data.train))
    for step, labels in enumerate(LabelSpy.received):
        batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        assert torch.equal(labels, data.train.labels[batch])
    assert len(LabelSpy.received) == 3


def test_streamed_image_folders_give_their_folder_names_and_labels(tmp_path: Path) -> None:
    LabelSpy.received.clear()
    LabelSpy.bound.clear()
    recipe = {
        **streamed_recipe(tmp_path, TINY),
        "objective": "toy_label_spy",
        "max_steps": 2,
    }
    pretrain(build_config(None, {**recipe, "out": str(tmp_path / "spy")}))
    assert LabelSpy.bound == [(["c0", "c1", "c2"], 3, "imagefolder")]
    data = load_data(build_config(None, {**recipe, "out": str(tmp_path / "x")}))
    order = epoch_order(0, 0, len(data.train))
    for step, labels in enumerate(LabelSpy.received):
        assert torch.equal(labels, data.train.labels[order[step * 8 : (step + 1) * 8]])
    assert len(LabelSpy.received) == 2
    with pytest.raises(ValueError, match="set skip_bad_images = false"):
        pretrain(build_config(None, {**recipe, "out": str(tmp_path / "bad"), "skip_bad_images": True}))
