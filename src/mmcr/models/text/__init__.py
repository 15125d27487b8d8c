"""Text towers for paired image-text data: captions -> ``(N, feature_dim)`` features.

Every text tower is an ``nn.Module`` with an ``int`` attribute ``feature_dim`` and two
steps, so that the text work that needs no gradient stays out of the training step:

- ``prepare(texts) -> Tensor``: the tower's input for a list of captions, on the CPU
  (token ids for :class:`TextTransformer`; frozen sentence embeddings for
  :class:`LockedSentenceEncoder`). The data pipeline may run it, or cache it.
- ``forward(inputs) -> (N, feature_dim)``: the trainable part.

:func:`~mmcr.models.build_text_encoder` makes one by name (:data:`~mmcr.models.TEXT_ENCODERS`):

- ``"transformer"``: :class:`TextTransformer`, trained from scratch with its byte-level
  BPE :class:`CaptionTokenizer` (the optional extra ``mmcr[tokenizer]``);
- ``"locked_minilm"``: :class:`LockedSentenceEncoder`, the frozen all-MiniLM-L6-v2 and a
  trainable projection (the optional extra ``mmcr[text]``).
"""

from mmcr.models.text.locked import LockedSentenceEncoder, load_locked_encoder
from mmcr.models.text.tokenizer import PAD_ID, CaptionTokenizer, MissingTokenizerError
from mmcr.models.text.transformer import TextTransformer

__all__ = [
    "PAD_ID",
    "CaptionTokenizer",
    "LockedSentenceEncoder",
    "MissingTokenizerError",
    "TextTransformer",
    "load_locked_encoder",
]
