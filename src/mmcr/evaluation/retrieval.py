"""Image-text retrieval: recall@k and median rank in both directions, in bounded memory.

Every image is a datum; every caption belongs to one datum (``caption_owner[c]`` is the
index of its image). Embeddings are compared by cosine similarity.

- **image -> text**: each image is a query, the captions are the keys; the correct keys
  are the image's own captions.
- **text -> image**: each caption is a query, the images are the keys; the correct key is
  the caption's image.

Two protocols (:func:`retrieval_report` gives both):

- **1:1, on the primary caption**: one caption per image (its primary one, e.g. the
  English short name), so both directions have ``N`` queries and ``N`` keys with exactly
  one correct key each.
- **multi-caption**: every caption of every datum. An image query is a hit at ``k`` if
  *any* of its captions is in its top ``k`` (its rank is that of its best-ranked caption);
  every caption is a text query with its one image.

**The rank of a query** is where its best-scoring correct key falls among the keys sorted
by decreasing similarity, starting at 1. **Ties** with wrong keys (exactly equal cosine
similarities, which collapsed or duplicated embeddings produce) count by ``ties``:

- ``"half"`` (the default): ``rank = 1 + greater + tied / 2``, where ``greater`` counts the
  wrong keys strictly more similar than the best correct key and ``tied`` those exactly as
  similar. For one correct key this is its mean position when ties are broken at random,
  so a collapsed representation (all similarities equal) gets the chance-level rank
  ``(N + 1) / 2``, not a perfect one. Ranks may be half-integers.
- ``"pessimistic"``: every tied wrong key ranks first (``1 + greater + tied``).
- ``"optimistic"``: every tied wrong key ranks after (``1 + greater``).

Other correct keys tied with the best one never count against it. ``recall@k`` is the
fraction of queries with ``rank <= k``; ``median_rank`` is the median of the ranks (the
mean of the two middle ones for an even count).

**Memory.** The ``Q x N`` similarity matrix is never built: queries go in chunks of
``ceil(block_elements / N)`` rows against all keys at once (``block_elements`` similarities,
2^24 = 16.8 million by default: 64 MiB in float32, plus a boolean mask of the same shape),
and only each query's counts are kept. 100k x 100k thus takes about 600 chunks of 167
queries and never more than one block of memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "DEFAULT_CURVE_KS",
    "DEFAULT_KS",
    "TIE_RULES",
    "plot_recall_at_k",
    "ranks_from_similarity",
    "recall_summary",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieval_report",
]

#: How a wrong key tied with the best correct one counts towards the rank.
TIE_RULES: dict[str, float] = {"optimistic": 0.0, "half": 0.5, "pessimistic": 1.0}
#: The recall cut-offs of ``eval.json``.
DEFAULT_KS = (1, 5, 10)
#: The cut-offs of the recall@k curve that the report plots.
DEFAULT_CURVE_KS = (1, 2, 3, 5, 10, 20, 50, 100)
#: Similarities per chunk (queries x keys): 2^24, 64 MiB in float32.
DEFAULT_BLOCK_ELEMENTS = 1 << 24


def _tie_weight(ties: str) -> float:
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {', '.join(TIE_RULES)}, got {ties!r}")
    return TIE_RULES[ties]


def _check_ids(ids: torch.Tensor, n: int, name: str) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.shape[0] != n:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a ({n},) integer tensor, one datum index a row, got {shape}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer datum indices, got dtype {ids.dtype}")
    return ids.long()


def _check_embeddings(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty (N, D) tensor of embeddings, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} has NaN or infinite values; they are not dropped")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.detach().to(dtype)
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)


def _count_ranks(
    scores: torch.Tensor, query_ids: torch.Tensor, key_ids: torch.Tensor, weight: float, first: int
) -> torch.Tensor:
    """Ranks ``(q,)`` of a block of queries, from their similarities to every key ``(q, N)``."""
    correct = query_ids[:, None] == key_ids[None, :]
    missing = torch.nonzero(~correct.any(dim=1)).flatten()
    if missing.numel():
        row = first + int(missing[0])
        raise ValueError(
            f"query {row} (datum {int(query_ids[missing[0]])}) has no correct key among the "
            f"{key_ids.numel()} keys: every query needs one"
        )
    best = scores.masked_fill(~correct, -math.inf).amax(dim=1, keepdim=True)
    wrong = ~correct
    greater = ((scores > best) & wrong).sum(dim=1)
    tied = ((scores == best) & wrong).sum(dim=1)
    return 1.0 + greater.double() + weight * tied.double()


def ranks_from_similarity(
    similarity: torch.Tensor,
    query_ids: torch.Tensor | None = None,
    key_ids: torch.Tensor | None = None,
    *,
    ties: str = "half",
) -> torch.Tensor:
    """The rank ``(Q,)`` of every query (a row) of a given ``(Q, N)`` similarity matrix.

    Key ``j`` is correct for query ``i`` when ``query_ids[i] == key_ids[j]``; by default
    both are ``0 .. Q - 1`` (the diagonal is correct, ``Q = N``). Ranks are float64, ties
    counted by ``ties`` (module docstring). For a matrix that fits in memory, and for
    tests; :func:`retrieval_ranks` computes the same from embeddings without the matrix.
    """
    if not isinstance(similarity, torch.Tensor) or similarity.ndim != 2:
        raise ValueError("similarity must be a (Q, N) tensor, one query a row")
    q, n = similarity.shape
    query_ids = torch.arange(q) if query_ids is None else _check_ids(query_ids, q, "query_ids")
    key_ids = torch.arange(n) if key_ids is None else _check_ids(key_ids, n, "key_ids")
    return _count_ranks(similarity, query_ids, key_ids.to(similarity.device), _tie_weight(ties), 0)


@torch.no_grad()
def retrieval_ranks(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_ids: torch.Tensor,
    key_ids: torch.Tensor,
    *,
    ties: str = "half",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> torch.Tensor:
    """The rank ``(Q,)`` of every query's best correct key, by cosine similarity, chunked.

    Args:
        queries: ``(Q, D)`` embeddings (L2-normalised here).
        keys: ``(N, D)`` embeddings.
        query_ids, key_ids: ``(Q,)`` and ``(N,)`` datum indices; key ``j`` is correct for
            query ``i`` when they are equal. Every query needs at least one correct key.
        ties: ``"half"``, ``"pessimistic"`` or ``"optimistic"`` (module docstring).
        block_elements: the most similarities held at once; the queries go in chunks of
            ``max(1, block_elements // N)``.

    Returns:
        float64 ranks, 1 for a correct key ranked first.
    """
    weight = _tie_weight(ties)
    queries = _check_embeddings(queries, "queries")
    keys = _check_embeddings(keys, "keys")
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"queries and keys must have the same dimension, got {queries.shape[1]} and {keys.shape[1]}"
        )
    dtype = torch.promote_types(queries.dtype, keys.dtype)
    queries, keys = queries.to(dtype), keys.to(dtype)
    query_ids = _check_ids(query_ids, queries.shape[0], "query_ids").to(queries.device)
    key_ids = _check_ids(key_ids, keys.shape[0], "key_ids").to(keys.device)
    if isinstance(block_elements, bool) or not isinstance(block_elements, int) or block_elements < 1:
        raise ValueError(f"block_elements must be a positive integer, got {block_elements!r}")
    chunk = max(1, block_elements // keys.shape[0])
    keys_t = keys.T.contiguous()
    ranks = []
    for start in range(0, queries.shape[0], chunk):
        stop = start + chunk
        scores = queries[start:stop] @ keys_t
        ranks.append(_count_ranks(scores, query_ids[start:stop], key_ids, weight, start))
    return torch.cat(ranks).cpu()


def recall_summary(
    ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS, curve_ks: Sequence[int] | None = None
) -> dict[str, Any]:
    """``{"recall@k": fraction with rank <= k, ..., "median_rank", "mean_rank", "queries"}``.

    With ``curve_ks``, also ``"curve": {"k": [...], "recall": [...]}`` for the plot.
    """
    if ranks.ndim != 1 or ranks.numel() == 0:
        raise ValueError(f"ranks must be a non-empty 1-D tensor, got shape {tuple(ranks.shape)}")
    for k in [*ks, *(curve_ks or ())]:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"recall cut-offs must be positive integers, got {k!r}")
    ranks = ranks.double()
    out: dict[str, Any] = {f"recall@{k}": float((ranks <= k).double().mean()) for k in ks}
    ordered = ranks.sort().values
    middle = (ordered.numel() - 1) // 2
    # the mean of the two middle ranks for an even count (torch.median would take the lower)
    out["median_rank"] = float((ordered[middle] + ordered[ordered.numel() // 2]) / 2)
    out["mean_rank"] = float(ranks.mean())
    out["queries"] = int(ranks.numel())
    if curve_ks:
        recall = [float((ranks <= k).double().mean()) for k in curve_ks]
        out["curve"] = {"k": list(curve_ks), "recall": recall}
    return out


def retrieval_metrics(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    caption_owner: torch.Tensor | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    curve_ks: Sequence[int] | None = DEFAULT_CURVE_KS,
    ties: str = "half",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> dict[str, Any]:
    """Both directions of one protocol: ``{"image_to_text": {...}, "text_to_image": {...}}``.

    ``image_embeddings`` is ``(N, D)``, ``text_embeddings`` ``(M, D)`` and
    ``caption_owner`` ``(M,)`` the image of each caption (default: caption ``i`` belongs to
    image ``i``, ``M = N``, the 1:1 protocol). Each direction holds ``recall@k`` for ``ks``,
    ``median_rank``, ``mean_rank``, ``queries`` and (with ``curve_ks``) the ``curve``.
    """
    n, m = image_embeddings.shape[0], text_embeddings.shape[0]
    if caption_owner is None:
        if m != n:
            raise ValueError(
                f"{n} images and {m} captions: give caption_owner, the image of each caption, "
                "unless there is one caption per image"
            )
        caption_owner = torch.arange(n)
    owner = _check_ids(caption_owner, m, "caption_owner")
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= n):
        raise ValueError(
            f"caption_owner must lie in [0, {n}), got values from {int(owner.min())} to {int(owner.max())}"
        )
    images = torch.arange(n)
    kwargs: dict[str, Any] = {"ties": ties, "block_elements": block_elements}
    image_to_text = retrieval_ranks(image_embeddings, text_embeddings, images, owner, **kwargs)
    text_to_image = retrieval_ranks(text_embeddings, image_embeddings, owner, images, **kwargs)
    return {
        "image_to_text": recall_summary(image_to_text, ks, curve_ks),
        "text_to_image": recall_summary(text_to_image, ks, curve_ks),
    }


def retrieval_report(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    caption_owner: torch.Tensor,
    primary: torch.Tensor | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    curve_ks: Sequence[int] | None = DEFAULT_CURVE_KS,
    ties: str = "half",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> dict[str, Any]:
    """The ``retrieval`` section of ``eval.json``: the 1:1 protocol, and the multi-caption one.

    Args:
        image_embeddings: ``(N, D)``, one row per image of the split.
        text_embeddings: ``(M, D)``, one row per caption, ``M >= N``.
        caption_owner: ``(M,)`` the image of each caption; every image needs a caption.
        primary: ``(N,)`` the index (into the captions) of each image's primary caption;
            default: each image's first caption in order.

    Returns:
        ``{"protocol": "1:1 primary caption", "image_to_text": {...}, "text_to_image": {...},
        "num_images": N, "num_captions": M, "ties": ties, "multi_caption": {...}}``: the top
        level is the 1:1 protocol; ``multi_caption`` (present when ``M > N``) holds both
        directions over every caption.
    """
    n, m = image_embeddings.shape[0], text_embeddings.shape[0]
    owner = _check_ids(caption_owner, m, "caption_owner")
    if owner.numel() and (int(owner.min()) < 0 or int(owner.max()) >= n):
        raise ValueError(
            f"caption_owner must lie in [0, {n}), got values from {int(owner.min())} to {int(owner.max())}"
        )
    if primary is None:
        has = torch.zeros(n, dtype=torch.bool).index_fill_(0, owner, True)
        if not bool(has.all()):
            raise ValueError(f"image {int(torch.nonzero(~has)[0])} has no caption; every image needs one")
        # the first caption of each image: the smallest caption index per owner
        primary = torch.full((n,), m, dtype=torch.long).scatter_reduce_(
            0, owner, torch.arange(m), reduce="amin"
        )
    primary = _check_ids(primary, n, "primary")
    if int(primary.min()) < 0 or int(primary.max()) >= m:
        raise ValueError(
            f"primary must index the {m} captions, "
            f"got values from {int(primary.min())} to {int(primary.max())}"
        )
    if not bool((owner[primary] == torch.arange(n)).all()):
        bad = int(torch.nonzero(owner[primary] != torch.arange(n))[0])
        raise ValueError(
            f"primary caption {int(primary[bad])} of image {bad} belongs to image {int(owner[primary[bad]])}"
        )
    kwargs: dict[str, Any] = {"ks": ks, "curve_ks": curve_ks, "ties": ties, "block_elements": block_elements}
    report: dict[str, Any] = {"protocol": "1:1 primary caption"}
    report.update(retrieval_metrics(image_embeddings, text_embeddings[primary], None, **kwargs))
    report.update({"num_images": n, "num_captions": m, "ties": ties})
    if m > n:
        report["multi_caption"] = retrieval_metrics(image_embeddings, text_embeddings, owner, **kwargs)
    return report


def plot_recall_at_k(retrieval: dict[str, Any], path: str | Path) -> Path:
    """Plot recall@k of each direction (one panel per direction) from a :func:`retrieval_report`.

    Uses each direction's ``curve`` where present (else its ``recall@k`` entries); the
    multi-caption protocol, if present, is drawn dashed beside the 1:1 one. Writes a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def points(direction: dict[str, Any]) -> tuple[list[int], list[float]]:
        if "curve" in direction:
            return list(direction["curve"]["k"]), list(direction["curve"]["recall"])
        ks = sorted(int(key.split("@", 1)[1]) for key in direction if key.startswith("recall@"))
        return ks, [float(direction[f"recall@{k}"]) for k in ks]

    protocols = [("1:1 primary caption", retrieval, "o-")]
    if "multi_caption" in retrieval:
        protocols.append(("multi-caption", retrieval["multi_caption"], "s--"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, title in zip(
        axes, ("image_to_text", "text_to_image"), ("image -> text", "text -> image"), strict=True
    ):
        for label, section, style in protocols:
            if key in section:
                ks, recall = points(section[key])
                ax.plot(ks, recall, style, label=label)
        ax.set(xscale="log", xlabel="k", title=title, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("recall@k")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
