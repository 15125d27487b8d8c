"""The text tower trained from scratch and its byte-level BPE tokenizer.

Needs the ``tokenizers`` library, which the ``test`` extra installs (``pip install -e
'.[test]'``); without it these tests fail at import, loudly, rather than skip.
"""

from __future__ import annotations

import io
import sys

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mmcr.models import TEXT_ENCODERS, build_text_encoder
from mmcr.models.text import PAD_ID, CaptionTokenizer, MissingTokenizerError, TextTransformer

CAPTIONS = [
    "thumbs up",
    "thumbs up: medium skin tone",
    "grinning face",
    "grinning face with big eyes",
    "face with tears of joy",
    "red heart",
    "flag: Germany",
    "Daumen hoch",
    "visage souriant",
    "pulgar hacia arriba",
] * 5
CONTEXT = 12


@pytest.fixture(scope="module")
def tokenizer() -> CaptionTokenizer:
    return CaptionTokenizer.train(CAPTIONS, vocab_size=400, context_length=CONTEXT)


def small_tower(tokenizer: CaptionTokenizer | None = None) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(
        vocab_size=400, context_length=CONTEXT, width=32, layers=2, heads=4, tokenizer=tokenizer
    )


# ----------------------------------------------------------------------------- tokenizer


def test_training_is_deterministic_and_the_ids_fit_the_vocabulary(tokenizer: CaptionTokenizer) -> None:
    again = CaptionTokenizer.train(CAPTIONS, vocab_size=400, context_length=CONTEXT)
    assert again.to_json() == tokenizer.to_json()
    assert 257 <= tokenizer.vocab_size <= 400
    ids = tokenizer.encode(CAPTIONS[:10])
    assert ids.dtype == torch.int64 and ids.shape == (10, CONTEXT)
    assert int(ids.max()) < tokenizer.vocab_size and int(ids.min()) >= 0
    # merges were learned: a frequent word is one token, fewer tokens than bytes
    assert int((ids[0] != PAD_ID).sum()) < len("thumbs up")


def test_encode_then_decode_gives_the_text_back_for_unseen_characters(tokenizer: CaptionTokenizer) -> None:
    texts = ["thumbs up", "red heart", "🦄 Größe", "顔", "Côte d’Iv"]  # each within 12 tokens
    ids = tokenizer.encode(texts)
    assert tokenizer.decode(ids) == texts


def test_padding_and_truncation_to_the_context_length(tokenizer: CaptionTokenizer) -> None:
    short, long = tokenizer.encode(["red heart", " ".join(["grinning face"] * 10)])
    used = int((short != PAD_ID).sum())
    assert 0 < used < CONTEXT
    assert bool((short[used:] == PAD_ID).all()) and bool((short[:used] != PAD_ID).all())
    assert bool((long != PAD_ID).all())  # truncated: every slot holds a token
    decoded = tokenizer.decode(long[None])[0]
    assert " ".join(["grinning face"] * 10).startswith(decoded) and len(decoded) < len("grinning face") * 10


def test_json_round_trip_gives_identical_ids(tokenizer: CaptionTokenizer) -> None:
    reloaded = CaptionTokenizer.from_json(tokenizer.to_json())
    texts = [*CAPTIONS[:10], "🦄 unseen words", "x" * 100]
    assert torch.equal(reloaded.encode(texts), tokenizer.encode(texts))
    assert (reloaded.vocab_size, reloaded.context_length) == (tokenizer.vocab_size, CONTEXT)


def test_bad_captions_and_settings_are_refused_with_a_sentence(tokenizer: CaptionTokenizer) -> None:
    with pytest.raises(ValueError, match="text 1 is empty"):
        tokenizer.encode(["red heart", "  "])
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 258"):
        CaptionTokenizer.train(CAPTIONS, vocab_size=100)
    with pytest.raises(ValueError, match="needs training captions"):
        CaptionTokenizer.train(["", " "])
    with pytest.raises(ValueError, match="could not be read"):
        CaptionTokenizer.from_json("{not json")


def test_a_missing_library_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now raises ImportError
    with pytest.raises(MissingTokenizerError, match=r"pip install 'mmcr\[tokenizer\]'"):
        CaptionTokenizer.train(CAPTIONS)


# ----------------------------------------------------------------------------- the tower


def test_features_have_the_width_and_gradients_reach_every_parameter(tokenizer: CaptionTokenizer) -> None:
    tower = small_tower(tokenizer)
    assert tower.feature_dim == 32
    features = tower(tower.prepare(CAPTIONS[:6]))
    assert features.shape == (6, 32) and bool(torch.isfinite(features).all())
    features.pow(2).sum().backward()
    missing = [
        name for name, p in tower.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)
    ]
    assert not missing


def test_padding_changes_nothing_and_captions_do_not_see_each_other(tokenizer: CaptionTokenizer) -> None:
    tower = small_tower(tokenizer).eval()
    tokens = tower.prepare(["red heart", "grinning face with big eyes"])
    full = tower(tokens)
    longest = int((tokens != PAD_ID).sum(dim=1).max())
    trimmed = tower(tokens[:, :longest])  # the same captions with less padding
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)
    alone = tower(tokens[:1])
    torch.testing.assert_close(alone, full[:1], rtol=1e-5, atol=1e-6)


def test_the_encoder_is_bidirectional(tokenizer: CaptionTokenizer) -> None:
    tower = small_tower(tokenizer).eval()
    seen: list[torch.Tensor] = []
    tower.final_norm.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    tokens = tower.prepare(["grinning face with big eyes"])
    changed = tokens.clone()
    changed[0, 3] = (changed[0, 3] + 1) % tokenizer.vocab_size or 1
    tower(tokens)
    tower(changed)
    # the first token's output depends on a later token: no causal mask
    assert not torch.allclose(seen[0][0, 0], seen[1][0, 0])


def test_a_row_of_padding_only_gives_finite_features(tokenizer: CaptionTokenizer) -> None:
    tower = small_tower(tokenizer)
    tokens = torch.cat([tower.prepare(["red heart"]), torch.zeros(1, CONTEXT, dtype=torch.long)])
    assert bool(torch.isfinite(tower(tokens)).all())


def test_the_tokenizer_travels_in_the_state_dict_and_reloads_with_weights_only(
    tokenizer: CaptionTokenizer,
) -> None:
    tower = small_tower(tokenizer).eval()
    buffer = io.BytesIO()
    torch.save(tower.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = TextTransformer(vocab_size=400, context_length=CONTEXT, width=32, layers=2, heads=4).eval()
    with pytest.raises(ValueError, match="has no tokenizer yet"):
        fresh.prepare(["red heart"])
    fresh.load_state_dict(state)
    assert fresh.tokenizer is not None and fresh.tokenizer.to_json() == tokenizer.to_json()
    texts = ["thumbs up", "🦄 unseen", "flag: Germany"]
    assert torch.equal(fresh.prepare(texts), tower.prepare(texts))
    torch.testing.assert_close(fresh(fresh.prepare(texts)), tower(tower.prepare(texts)), rtol=0, atol=0)
    # safetensors takes the state too (the tokenizer is a uint8 tensor)
    again = TextTransformer(vocab_size=400, context_length=CONTEXT, width=32, layers=2, heads=4)
    again.load_state_dict(load_safetensors(save_safetensors(tower.state_dict())))
    assert again.tokenizer is not None and torch.equal(again.prepare(texts), tower.prepare(texts))
    # a tower without a tokenizer saves and reloads as one
    untrained = small_tower()
    untrained.load_state_dict(small_tower().state_dict())
    assert untrained.tokenizer is None


def test_fit_tokenizer_and_mismatches(tokenizer: CaptionTokenizer) -> None:
    tower = small_tower()
    fitted = tower.fit_tokenizer(CAPTIONS)
    assert fitted.to_json() == tokenizer.to_json() and tower.tokenizer is fitted
    with pytest.raises(ValueError, match="context length 12 differs from the tower's 16"):
        TextTransformer(vocab_size=400, context_length=16, width=32, layers=1, heads=4, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="more than the tower's vocab_size 300"):
        TextTransformer(
            vocab_size=300, context_length=CONTEXT, width=32, layers=1, heads=4, tokenizer=tokenizer
        )
    with pytest.raises(ValueError, match="divisible by heads"):
        TextTransformer(width=30, heads=4)
    with pytest.raises(ValueError, match="more than the context length"):
        tower(torch.ones(2, CONTEXT + 1, dtype=torch.long))


def test_the_registry_builds_text_towers_by_name() -> None:
    assert set(TEXT_ENCODERS) == {"transformer", "locked_minilm"}
    tower = build_text_encoder("transformer", vocab_size=300, context_length=8, width=16, layers=1, heads=2)
    assert isinstance(tower, TextTransformer) and tower.feature_dim == 16
    default = build_text_encoder("Transformer")
    assert default.feature_dim == 256 and len(default.blocks) == 4  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown text encoder 'bert'; valid: locked_minilm, transformer"):
        build_text_encoder("bert")
    with pytest.raises(ValueError, match=r"does not take option.* depth"):
        build_text_encoder("transformer", depth=3)
