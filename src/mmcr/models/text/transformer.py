"""The text tower trained from scratch: a small pre-norm Transformer encoder with mean pooling.

Token ids ``(N, L)`` (from :class:`~mmcr.models.text.tokenizer.CaptionTokenizer`, 0 for
padding) -> token embedding + learned position embedding -> ``layers`` pre-norm blocks
(``x + attention(LN(x))``, then ``x + MLP(LN(x))``, GELU, MLP width ``4 x width``) -> a
final LayerNorm -> the **mean over the caption's tokens** (padding excluded) -> ``(N, width)``
features, ``feature_dim = width``.

Choices, and why:

- **Bidirectional (not causal).** Every token attends to every other token of its caption
  (padding masked out as keys). Causal masking serves next-token prediction, which no
  objective here has; CLIP's causal text tower pools the last token for that reason.
- **Mean pooling** over the non-padding tokens, after the final LayerNorm: every token
  contributes, no special start or end token is needed, and the short captions of the
  emoji set (two to five words) lose nothing by it.
- **Learned positions**, one vector per slot of the context length.

The tower carries its tokenizer: :meth:`TextTransformer.prepare` turns texts into ids,
and the tokenizer's JSON is the module's extra state, so it is in ``state_dict()`` (as a
uint8 tensor of UTF-8 bytes, which ``torch.load(weights_only=True)`` and safetensors both
accept) and ``load_state_dict`` restores it. The embedding table has ``vocab_size`` rows
whatever the tokenizer learned, so a recipe builds the same shapes before the tokenizer
is trained or loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmcr.models.text.tokenizer import PAD_ID, CaptionTokenizer


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class _Block(nn.Module):
    """One pre-norm block: self-attention and an MLP, each behind a LayerNorm and a residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        h = self.attention_norm(x)
        h, _ = self.attention(h, h, h, key_padding_mask=padding, need_weights=False)
        x = x + self.dropout(h)
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class TextTransformer(nn.Module):
    """Token ids ``(N, L)`` -> ``(N, width)`` caption features (module docstring).

    Args:
        vocab_size: rows of the token embedding; the tokenizer's ids must lie below it.
        context_length: the most tokens of a caption (longer ones are truncated by the
            tokenizer), the number of learned positions.
        width: the model width and ``feature_dim``.
        layers: pre-norm Transformer blocks.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: hidden width of each MLP over ``width``.
        dropout: dropout in attention and after each residual branch (0: none).
        tokenizer: a trained :class:`CaptionTokenizer` (or set one later with
            :meth:`set_tokenizer` / :meth:`fit_tokenizer`, or load it with the state dict).

    Example::

        >>> tower = TextTransformer(vocab_size=512, context_length=16, width=64, layers=2, heads=2)
        >>> tower.fit_tokenizer(["thumbs up", "grinning face"] * 8)   # doctest: +SKIP
        >>> tower(tower.prepare(["thumbs up"])).shape                  # doctest: +SKIP
        torch.Size([1, 64])
    """

    def __init__(
        self,
        vocab_size: int = 4096,
        context_length: int = 32,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        tokenizer: CaptionTokenizer | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = _check_int("vocab_size", vocab_size, 2)
        self.context_length = _check_int("context_length", context_length, 1)
        _check_int("width", width, 1)
        _check_int("layers", layers, 1)
        _check_int("heads", heads, 1)
        _check_int("mlp_ratio", mlp_ratio, 1)
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.feature_dim = width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.empty(context_length, width))
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)
        self.tokenizer: CaptionTokenizer | None = None
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    # ------------------------------------------------------------------ tokenizer

    def set_tokenizer(self, tokenizer: CaptionTokenizer) -> None:
        """Use ``tokenizer``; ``ValueError`` if its ids or context length do not fit the tower."""
        if tokenizer.vocab_size > self.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} ids, more than the tower's vocab_size "
                f"{self.vocab_size}"
            )
        if tokenizer.context_length != self.context_length:
            raise ValueError(
                f"the tokenizer's context length {tokenizer.context_length} differs from the "
                f"tower's {self.context_length}"
            )
        self.tokenizer = tokenizer

    def fit_tokenizer(self, captions: Sequence[str], *, min_frequency: int = 2) -> CaptionTokenizer:
        """Train the tower's tokenizer on ``captions`` (the training split's) and use it."""
        tokenizer = CaptionTokenizer.train(
            captions,
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            min_frequency=min_frequency,
        )
        self.set_tokenizer(tokenizer)
        return tokenizer

    def prepare(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, context_length)`` int64 token ids of ``texts``, on the CPU: the tower's input."""
        if self.tokenizer is None:
            raise ValueError(
                "the text tower has no tokenizer yet: train one on the training captions "
                "(fit_tokenizer) or load the state dict of a trained tower"
            )
        return self.tokenizer.encode(texts)

    def get_extra_state(self) -> torch.Tensor:
        """The tokenizer's JSON as a uint8 tensor of UTF-8 bytes (empty without a tokenizer)."""
        if self.tokenizer is None:
            return torch.zeros(0, dtype=torch.uint8)
        return torch.frombuffer(bytearray(self.tokenizer.to_json().encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        """Restore the tokenizer saved by :meth:`get_extra_state`."""
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.ndim != 1:
            raise ValueError("the text tower's extra state must be a 1-D uint8 tensor (its tokenizer's JSON)")
        if state.numel() == 0:
            self.tokenizer = None
            return
        text = bytes(state.cpu().tolist()).decode("utf-8")
        self.set_tokenizer(CaptionTokenizer.from_json(text))

    # ------------------------------------------------------------------ forward

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features ``(N, width)`` of token ids ``(N, L)``, ``L <= context_length``, 0 for padding.

        A row of padding only (which the tokenizer never makes: it refuses empty captions)
        attends to and pools its first slot, so its output is defined rather than NaN.
        """
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"tokens must be an (N, L) integer tensor, got {tuple(tokens.shape)} {tokens.dtype}"
            )
        length = tokens.shape[1]
        if length > self.context_length:
            raise ValueError(
                f"{length} tokens per caption, more than the context length {self.context_length}"
            )
        padding = tokens == PAD_ID  # (N, L), True where there is no token
        empty = padding.all(dim=1, keepdim=True)
        first = torch.zeros_like(padding)
        first[:, 0] = True
        padding = padding & ~(empty & first)  # no host sync: empty rows keep slot 0
        x = self.token_embedding(tokens) + self.position_embedding[:length]
        for block in self.blocks:
            x = block(x, padding)
        x = self.final_norm(x)
        weights = (~padding).to(x.dtype).unsqueeze(-1)  # (N, L, 1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, context_length={self.context_length}, width={self.feature_dim}"
