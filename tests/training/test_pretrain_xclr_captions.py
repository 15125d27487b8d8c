"""Image-only pretraining on the emoji images, and X-CLR with the graph of their captions, end to end.

The emoji set is replaced by a tiny stand-in (stand-in package files and a fake drawing, as
in ``tests/data/readers/test_emoji.py``), and the text model by a bag of characters, so
these tests run everywhere; one test reads the real packages where they are installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from mmcr.build import load_data
from mmcr.checkpoint import load_checkpoint
from mmcr.config import build_config
from mmcr.data import dataset_info, load_dataset, load_paired
from mmcr.data.readers import emoji
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.objectives import Objective, register_objective
from mmcr.objectives import graphs as graphs_module
from mmcr.objectives.graphs import TextEncoder
from mmcr.training import pretrain
from mmcr.training.step import epoch_order

SYSTEM_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
SYSTEM_CLDR = Path("/usr/share/unicode/cldr/common")
N = 60  # stand-in emoji; every tenth has no CLDR label


def fake_render(font: Path, cldr: Path, languages: tuple[str, ...], keywords: bool, size: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    category = torch.tensor([-1 if i % 10 == 9 else i % 2 for i in range(N)])
    subcategory = torch.tensor([-1 if i % 10 == 9 else i % 4 for i in range(N)])
    return {
        "images": torch.randint(0, 256, (N, 3, size, size), generator=generator, dtype=torch.uint8),
        "keys": [f"e{i}" for i in range(N)],
        "captions": [[f"emoji {i}", f"kind {i % 4}, number {i}"] for i in range(N)],
        "groups": [f"g{i // 2}" for i in range(N)],
        "category": category,
        "subcategory": subcategory,
        "category_names": ["even", "odd"],
        "subcategory_names": ["zero", "one", "two", "three"],
        "skipped": [],
        "render_seconds": 0.0,
    }


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in package files, the fake drawing, and a private cache."""
    root = tmp_path / "pkgs"
    (root / "common" / "annotations").mkdir(parents=True)
    (root / "common" / "properties").mkdir(parents=True)
    (root / "NotoColorEmoji.ttf").write_bytes(b"stand-in")
    (root / "common" / "annotations" / "en.xml").write_text("<ldml/>")
    (root / "common" / "properties" / "labels.txt").write_text("")
    monkeypatch.setattr(emoji, "_render_all", fake_render)
    monkeypatch.setenv("MMCR_CACHE_DIR", str(tmp_path / "cache"))
    return root


def fake_text_model(seen: list[list[str]]) -> TextEncoder:
    def encode(texts: list[str]) -> torch.Tensor:
        seen.append(list(texts))
        out = torch.zeros(len(texts), 32, dtype=torch.float64)
        for row, text in enumerate(texts):
            for char in text:
                out[row, ord(char) % 32] += 1.0
        return out

    return TextEncoder("fake-chars", encode)


def recipe(packages: Path, out: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "dataset": "emoji-images",
        "data_dir": str(packages),
        "image_size": 16,
        "encoder": "convnet",
        "encoder_width": 8,
        "projector_hidden": [32],
        "projector_dim": 16,
        "batch_size": 8,
        "epochs": 1,
        "max_steps": 2,
        "log_every": 1,
        "progress": False,
        "threads": 1,
        "monitor_size": 16,
        "knn_k": 5,
        "seed": 3,
        "out": str(out),
    }
    values.update(overrides)
    return build_config(None, values)


def test_emoji_images_are_the_labelled_emoji_with_their_captions(packages: Path) -> None:
    info = dataset_info("emoji_images")
    assert info.name == "emoji-images" and info.augment == "emoji"
    assert dataset_info("emoji-subcategory").augment == "emoji" and dataset_info("emoji").augment == "emoji"
    for split in ("train", "val", "test"):
        pairs = load_paired("emoji", split, packages, image_size=16)
        images = load_dataset("emoji-images", split, packages, image_size=16)
        known = pairs.labels["category"] >= 0
        assert len(images) == int(known.sum()) < len(pairs)  # the unlabelled emoji are left out
        assert torch.equal(images.images, pairs.images[known])
        assert torch.equal(images.labels, pairs.labels["category"][known])
        assert images.classes == ["even", "odd"] and images.num_classes == 2
        kept = [c for c, k in zip(pairs.captions, known.tolist(), strict=True) if k]
        assert images.captions == kept  # type: ignore[attr-defined]
        sub = load_dataset("emoji-subcategory", split, packages, image_size=16)
        assert torch.equal(sub.images, images.images) and sub.num_classes == 4
        assert torch.equal(sub.labels, pairs.labels["subcategory"][known])
    train = load_dataset("emoji-images", "train", packages, image_size=16)
    part = train.subset(torch.tensor([3, 0, 5]))
    assert part.captions == [train.captions[i] for i in (3, 0, 5)]  # type: ignore[attr-defined]
    assert torch.equal(part.images, train.images[[3, 0, 5]])


@register_objective
class IndexSpy(Objective):
    """Records the captions it is bound to and the sample indices it is given."""

    name = "toy_index_spy"
    min_views = 2
    uses_labels = True
    uses_sample_indices = True
    bound: ClassVar[list[list[list[str]]]] = []
    received: ClassVar[list[torch.Tensor]] = []

    def bind_samples(self, captions: Any, *, dataset: str = "") -> None:
        IndexSpy.bound.append([list(c) for c in captions])

    def forward(self, z: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        assert indices is not None
        IndexSpy.received.append(indices.detach().cpu().clone())
        u = torch.nn.functional.normalize(z, dim=-1)
        loss = -(u[:, 0] * u[:, 1]).sum(-1).mean()
        self._components = {"loss": loss.detach()}
        return loss


def test_the_batchs_sample_indices_travel_with_its_views(packages: Path, tmp_path: Path) -> None:
    IndexSpy.bound.clear()
    IndexSpy.received.clear()
    cfg = recipe(packages, tmp_path / "spy", objective="toy_index_spy", max_steps=3)
    pretrain(cfg)
    data = load_data(cfg)
    assert IndexSpy.bound == [data.train.captions]  # type: ignore[attr-defined]
    order = epoch_order(cfg.seed, 0, len(data.train))
    assert len(IndexSpy.received) == 3
    for step, indices in enumerate(IndexSpy.received):
        assert torch.equal(indices, order[step * cfg.batch_size : (step + 1) * cfg.batch_size])


def test_xclr_pretrains_with_the_caption_graph_and_evaluates(
    packages: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(graphs_module, "load_text_encoder", lambda: fake_text_model(seen))
    cfg = recipe(packages, tmp_path / "xclr", objective="xclr", objective_args={"graph": "captions"})
    ckpt = pretrain(cfg)
    assert load_checkpoint(ckpt)["step"] == 2
    train = load_data(cfg).train
    # the training images' captions (names and keywords), each distinct text embedded once
    assert len(seen) == 1 and sorted(seen[0]) == sorted({t for c in train.captions for t in c})  # type: ignore[attr-defined]
    cached = list((tmp_path / "cache" / "xclr").glob("caption_embeddings-emoji-images-*.pt"))
    assert len(cached) == 1
    steps = [
        r
        for r in map(json.loads, (ckpt.parent / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "step"
    ]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(0 < r["target_own_views"] < 1 and r["target_entropy"] > 0 for r in steps)
    pretrain(recipe(packages, tmp_path / "again", objective="xclr", objective_args={"graph": "captions"}))
    assert len(seen) == 1  # the second run reads the cached embeddings
    results = evaluate(EvalOptions(checkpoint=str(ckpt), out=str(tmp_path / "eval"), probe_max_iter=5))
    assert results["dataset"] == "emoji-images" and 0 <= results["knn"]["test_accuracy"] <= 1
    assert 0 <= results["linear_probe"]["test_accuracy"] <= 1


def test_a_caption_graph_needs_captions(packages: Path, tmp_path: Path) -> None:
    args = {"graph": "captions"}
    with pytest.raises(ValueError, match="data set 'digits' gives its images without captions"):
        pretrain(
            recipe(
                packages,
                tmp_path / "digits",
                dataset="digits",
                data_dir=None,
                image_size=None,
                objective="xclr",
                objective_args=args,
            )
        )
    with pytest.raises(ValueError, match='loader = "cache" keeps the pixels and labels only'):
        pretrain(
            recipe(packages, tmp_path / "cache_path", loader="cache", objective="xclr", objective_args=args)
        )


@pytest.mark.skipif(
    not SYSTEM_FONT.is_file() or not (SYSTEM_CLDR / "annotations" / "en.xml").is_file(),
    reason="Debian packages fonts-noto-color-emoji and unicode-cldr-core not installed",
)
def test_the_real_emoji_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMCR_CACHE_DIR", str(tmp_path))
    test = load_dataset("emoji-images", "test", image_size=16)
    pairs = load_paired("emoji", "test", image_size=16)
    assert 0.85 * len(pairs) < len(test) < len(pairs) and bool((test.labels >= 0).all())
    assert test.captions[0][0] == pairs.captions[int(torch.nonzero(pairs.labels["category"] >= 0)[0])][0]  # type: ignore[attr-defined]
    sub = load_dataset("emoji-subcategory", "test", image_size=16)
    assert sub.num_classes > 50 and test.num_classes == 8
