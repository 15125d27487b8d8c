"""The byte-level BPE tokenizer of the text tower, trained on the training captions.

Built on the ``tokenizers`` library (the optional extra ``mmcr[tokenizer]``, imported only
when a tokenizer is trained or loaded). Byte-level: every UTF-8 string is encodable, emoji
and scripts unseen in training included (they fall back to their bytes), and decoding
gives the text back exactly (after Unicode NFC normalisation, and up to the context
length). Id 0 is the padding token ``<pad>``, the only special token: the tower pools over
the tokens that are not padding, so it needs no start or end token.

The whole tokenizer, merges, vocabulary, padding and truncation to the context length,
is one JSON string (:meth:`CaptionTokenizer.to_json`), which the text tower keeps in its
state dict, so a checkpoint carries it.

>>> tokenizer = CaptionTokenizer.train(["thumbs up", "grinning face"] * 10, vocab_size=300,
...                                    context_length=8)            # doctest: +SKIP
>>> tokenizer.encode(["thumbs up"]).shape                          # doctest: +SKIP
torch.Size([1, 8])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "PAD_ID",
    "PAD_TOKEN",
    "TOKENIZER_EXTRA",
    "CaptionTokenizer",
    "MissingTokenizerError",
    "check_texts",
]


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; ``ValueError`` naming the first that is not a string or is empty.

    Every text tower's input check: an empty caption has no token to pool or embed.
    """
    out = list(texts)
    for index, text in enumerate(out):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {index} is empty or not a string ({text!r}); every caption needs a word")
    return out


#: The padding token and its id.
PAD_TOKEN = "<pad>"
PAD_ID = 0
#: What to install for the tokenizer.
TOKENIZER_EXTRA = "pip install 'mmcr[tokenizer]' (or: pip install tokenizers)"


class MissingTokenizerError(ImportError, ValueError):
    """The ``tokenizers`` library is missing (also a ValueError: the command line prints a sentence)."""


def _library() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise MissingTokenizerError(
            "the text tower trained from scratch tokenizes captions with a byte-level BPE "
            f"tokenizer from the tokenizers library, which is not installed: {TOKENIZER_EXTRA}"
        ) from exc
    return tokenizers


def _check_length(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class CaptionTokenizer:
    """Byte-level BPE: texts to ``(N, context_length)`` int64 ids, padded with 0 and truncated.

    Make one with :meth:`train` (on the training split's captions) or :meth:`from_json`
    (from a checkpoint). ``vocab_size`` is the number of ids in use (at most the size it was
    trained for: a small corpus gives fewer merges).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        padding = tokenizer.padding
        truncation = tokenizer.truncation
        if not padding or not truncation or padding.get("length") != truncation.get("max_length"):
            raise ValueError("the tokenizer must pad and truncate to one fixed context length")
        if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID or padding.get("pad_id") != PAD_ID:
            raise ValueError(f"the tokenizer's padding token must be {PAD_TOKEN!r} with id {PAD_ID}")
        self.context_length = int(truncation["max_length"])

    @classmethod
    def train(
        cls,
        captions: Iterable[str],
        *,
        vocab_size: int = 4096,
        context_length: int = 32,
        min_frequency: int = 2,
    ) -> CaptionTokenizer:
        """Learn the BPE merges from ``captions`` (the training split's only, never the test's).

        ``vocab_size`` counts the 256 byte tokens, the merges and ``<pad>``; ``min_frequency``
        is how often a pair must occur to be merged. Training is deterministic: the same
        captions give the same tokenizer, so every rank of a distributed run may train its own.
        """
        _check_length("vocab_size", vocab_size, 258)
        _check_length("context_length", context_length, 1)
        _check_length("min_frequency", min_frequency, 1)
        lib = _library()
        texts = list(captions)
        bad = next((i for i, c in enumerate(texts) if not isinstance(c, str)), None)
        if bad is not None:
            raise ValueError(f"caption {bad} is not a string: {texts[bad]!r}")
        if not any(c.strip() for c in texts):
            raise ValueError("the tokenizer needs training captions, got none that are not empty")
        tokenizer = lib.Tokenizer(lib.models.BPE())
        tokenizer.normalizer = lib.normalizers.NFC()
        # no prefix space, so that decoding gives the caption back as it was
        tokenizer.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = lib.decoders.ByteLevel()
        trainer = lib.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD_TOKEN],
            initial_alphabet=lib.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.enable_truncation(context_length)
        tokenizer.enable_padding(length=context_length, pad_id=PAD_ID, pad_token=PAD_TOKEN)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> CaptionTokenizer:
        """The tokenizer of :meth:`to_json`'s string."""
        if not isinstance(text, str) or not text:
            raise ValueError("a tokenizer's state is a non-empty JSON string")
        lib = _library()
        try:
            tokenizer = lib.Tokenizer.from_str(text)
        except Exception as exc:  # the library raises its own exception type
            raise ValueError(f"the tokenizer's JSON could not be read: {exc}") from None
        return cls(tokenizer)

    def to_json(self) -> str:
        """The whole tokenizer (merges, vocabulary, padding, truncation) as one JSON string."""
        text: str = self._tokenizer.to_str()
        return text

    @property
    def vocab_size(self) -> int:
        """The number of ids in use, ``<pad>`` included: every id is below it."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, context_length)`` int64 ids of ``texts``: truncated, then padded with 0.

        Raises ``ValueError`` naming the text when one is not a string or is empty (an empty
        caption has no token to pool).
        """
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, self.context_length, dtype=torch.long)
        encodings = self._tokenizer.encode_batch(texts)
        return torch.tensor([e.ids for e in encodings], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The texts of ``(N, L)`` ids, padding dropped."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
            raise ValueError("decode takes an (N, L) tensor of ids")
        rows = [[int(i) for i in row if int(i) != PAD_ID] for row in ids.tolist()]
        return list(self._tokenizer.decode_batch(rows, skip_special_tokens=True))

    def __repr__(self) -> str:
        return f"CaptionTokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"
