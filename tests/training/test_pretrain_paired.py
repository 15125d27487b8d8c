"""Paired image-text pretraining and its evaluation, end to end on a tiny table the tests write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mmcr.build import Checkpoint
from mmcr.config import build_config
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.training import pretrain
from mmcr.training.paired import build_paired_state, caption_choice, load_paired_network

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from paired_helpers import assert_same_run, tiny_paired_recipe, write_shapes_corpus
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.paired_helpers import assert_same_run, tiny_paired_recipe, write_shapes_corpus  # type: ignore[no-redef]

pytest.importorskip("tokenizers")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """``train.tsv`` (16 rows: 8 images, each with two captions) and ``test.tsv`` (8 rows)."""
    return write_shapes_corpus(tmp_path / "corpus")


def _cfg(corpus: Path, out: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return build_config(None, tiny_paired_recipe("csv", corpus, out, **overrides))


@pytest.mark.parametrize("objective", ["mmcr", "clip", "siglip"])
def test_two_steps_then_eval(
    corpus: Path, tmp_path: Path, objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(corpus, tmp_path / objective, objective=objective, image_views=2, text_views=2)
    path = pretrain(cfg)
    checkpoint = Checkpoint.load(path)
    assert checkpoint.step == 2 and checkpoint.reason == "end"
    assert any(k.startswith("text.") for k in checkpoint.model) and any(
        k.startswith("image.") for k in checkpoint.model
    )
    records = [json.loads(line) for line in (tmp_path / objective / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r.get("kind") == "step"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    if objective == "clip":
        # the learned scale is trained and saved with the towers, and stays clamped at ln 100
        scale = checkpoint.model["objective.logit_scale"]
        assert float(scale) <= math.log(100.0) + 1e-6
        assert not torch.equal(scale, torch.tensor(math.log(1 / 0.07)))
    if objective == "siglip":
        assert any(k.startswith("objective.") for k in checkpoint.model)

    import mmcr.evaluate as evaluate_module

    read: list[str] = []
    real_load = evaluate_module._load_paired_split
    monkeypatch.setattr(
        evaluate_module, "_load_paired_split", lambda c, split: (read.append(split), real_load(c, split))[1]
    )
    results = evaluate(EvalOptions(checkpoint=str(path), out=str(tmp_path / f"eval-{objective}")))
    assert read == ["test", "val"]  # no labels here: the training split, for the probes only, is not read
    assert "knn" not in results and "zero_shot" not in results
    retrieval = results["retrieval"]
    assert retrieval["num_images"] == 8 and retrieval["num_captions"] == 8
    for direction in ("image_to_text", "text_to_image"):
        section = retrieval[direction]
        assert set(section) >= {"recall@1", "recall@5", "recall@10", "median_rank"}
        assert 0.0 <= section["recall@1"] <= section["recall@5"] <= section["recall@10"] == 1.0
    written = json.loads((tmp_path / f"eval-{objective}" / "eval.json").read_text())
    assert written["retrieval"]["image_to_text"]["recall@1"] == retrieval["image_to_text"]["recall@1"]
    report = (tmp_path / f"eval-{objective}" / "report.md").read_text()
    assert "recall_at_k.png" in report and (tmp_path / f"eval-{objective}" / "recall_at_k.png").is_file()


def test_resume_follows_the_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    whole = _cfg(corpus, tmp_path / "whole", epochs=3, max_steps=None, text_views=1)
    pretrain(whole)
    first = _cfg(corpus, tmp_path / "parts", epochs=3, max_steps=None, text_views=1, stop_at_epoch=1)
    pretrain(first)
    stopped = Checkpoint.load(tmp_path / "parts" / "last.pt")
    assert stopped.step == 2 and stopped.reason == "epoch"
    rest = _cfg(corpus, tmp_path / "parts", epochs=3, max_steps=None, text_views=1)
    pretrain(rest, resume=True)
    assert_same_run(tmp_path / "whole", tmp_path / "parts", steps=6)


def test_an_interrupt_at_the_last_step_is_saved_as_the_end_on_resume(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmcr.training import paired as paired_module

    real = paired_module.paired_train_step

    def interrupted(state, batch):  # type: ignore[no-untyped-def]
        out = real(state, batch)
        if state.step == 2:
            raise KeyboardInterrupt  # after the last step, before the run's end
        return out

    monkeypatch.setattr(paired_module, "paired_train_step", interrupted)
    cfg = _cfg(corpus, tmp_path / "run", text_views=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg)
    assert Checkpoint.load(tmp_path / "run" / "last.pt").reason == "interrupted"
    monkeypatch.undo()
    pretrain(cfg, resume=True)
    finished = Checkpoint.load(tmp_path / "run" / "last.pt")
    assert finished.step == 2 and finished.reason == "end"


def test_resume_refuses_another_text_tower(corpus: Path, tmp_path: Path) -> None:
    pretrain(_cfg(corpus, tmp_path / "run"))
    with pytest.raises(ValueError, match="text_width"):
        pretrain(_cfg(corpus, tmp_path / "run", text_width=32, max_steps=4), resume=True)


def test_tokenizer_reloaded_from_the_checkpoint_gives_the_same_ids(corpus: Path, tmp_path: Path) -> None:
    cfg = _cfg(corpus, tmp_path / "run")
    path = pretrain(cfg)
    fresh = build_paired_state(cfg, torch.device("cpu"))  # trains the tokenizer on the captions again
    network, _ = load_paired_network(path)
    texts = ["a red square", "stripe in blue", "an unseen caption: 👍 ümlaut"]
    reloaded = network.tokenize(texts)
    assert torch.equal(reloaded, fresh.network.tokenize(texts))
    assert torch.equal(network.tokenize(list(fresh.train.flat_captions()[0])), fresh.tokens)
    assert reloaded.shape == (3, 8) and reloaded.dtype == torch.int64


def test_caption_choice_is_seeded_and_covers_the_captions() -> None:
    assert caption_choice(0, 1, 5, 3, 2) == caption_choice(0, 1, 5, 3, 2)
    assert sorted(caption_choice(0, 1, 5, 3, 3)) == [0, 1, 2]  # without repeats while there are enough
    picks = caption_choice(0, 1, 5, 2, 5)
    assert len(picks) == 5 and set(picks) == {0, 1}
    choices = {tuple(caption_choice(0, epoch, 7, 4, 1)) for epoch in range(40)}
    assert len(choices) == 4  # every caption is drawn over epochs


def test_paired_needs_a_paired_data_set() -> None:
    with pytest.raises(ValueError, match="paired image-text data set"):
        build_config(None, {"dataset": "digits", "paired": True})
    with pytest.raises(ValueError, match="divisible"):
        build_config(None, {"dataset": "emoji", "paired": True, "text_width": 30, "text_heads": 4})
