"""Retrieval ranks, recall@k and median rank on hand-made similarities with known ranks, ties included.

Also: the chunked computation from embeddings equals the full matrix at every chunk size
and never holds more than one block; the 1:1 and multi-caption protocols; the plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from mmcr.evaluation.retrieval import (
    plot_recall_at_k,
    ranks_from_similarity,
    recall_summary,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_report,
)

# rows are queries, the diagonal is correct
SIMILARITY = torch.tensor(
    [
        [0.9, 0.5, 0.1],  # correct key first: rank 1
        [0.8, 0.3, 0.3],  # one wrong key above (0.8), one tied (0.3): 2 + tie
        [0.2, 0.7, 0.1],  # two wrong keys above: rank 3
    ]
)


@pytest.mark.parametrize(
    ("ties", "expected"),
    [("half", [1.0, 2.5, 3.0]), ("pessimistic", [1.0, 3.0, 3.0]), ("optimistic", [1.0, 2.0, 3.0])],
)
def test_ranks_of_a_hand_made_matrix_with_a_tie(ties: str, expected: list[float]) -> None:
    ranks = ranks_from_similarity(SIMILARITY, ties=ties)
    assert ranks.dtype == torch.float64
    assert ranks.tolist() == expected


def test_several_correct_keys_the_best_one_counts_and_correct_ties_never_count_against() -> None:
    key_ids = torch.tensor([0, 0, 1, 1])
    similarity = torch.tensor(
        [
            [0.1, 0.6, 0.6, 0.9],  # datum 0: best correct 0.6; wrong: 0.9 above, 0.6 tied -> 2.5
            [0.5, 0.5, 0.5, 0.5],  # datum 1: two correct at 0.5 tied with two wrong -> 1 + 2/2 = 2
            [0.3, 0.2, 0.9, 0.9],  # datum 1: both correct keys first, tied with each other -> 1
        ]
    )
    query_ids = torch.tensor([0, 1, 1])
    assert ranks_from_similarity(similarity, query_ids, key_ids).tolist() == [2.5, 2.0, 1.0]
    pessimistic = ranks_from_similarity(similarity, query_ids, key_ids, ties="pessimistic")
    assert pessimistic.tolist() == [3.0, 3.0, 1.0]


def test_a_collapsed_representation_gets_the_chance_rank_not_a_perfect_one() -> None:
    ranks = ranks_from_similarity(torch.ones(5, 5))
    assert ranks.tolist() == [3.0] * 5  # (N + 1) / 2
    summary = recall_summary(ranks)
    assert summary["recall@1"] == 0.0 and summary["median_rank"] == 3.0
    assert ranks_from_similarity(torch.ones(5, 5), ties="optimistic").tolist() == [1.0] * 5


def test_recall_and_median_rank_of_known_ranks() -> None:
    summary = recall_summary(torch.tensor([1.0, 2.5, 3.0, 10.0, 11.0]), curve_ks=(1, 3, 100))
    assert summary["recall@1"] == pytest.approx(0.2)
    assert summary["recall@5"] == pytest.approx(0.6)
    assert summary["recall@10"] == pytest.approx(0.8)
    assert summary["median_rank"] == 3.0
    assert summary["mean_rank"] == pytest.approx(5.5)
    assert summary["queries"] == 5
    assert summary["curve"] == {"k": [1, 3, 100], "recall": [pytest.approx(0.2), pytest.approx(0.6), 1.0]}
    # an even count: the mean of the two middle ranks
    assert recall_summary(torch.tensor([4.0, 1.0, 2.0, 3.0]))["median_rank"] == 2.5


def full_matrix_ranks(queries: torch.Tensor, keys: torch.Tensor, query_ids: Any, key_ids: Any) -> list[int]:
    """The obvious reference without ties: sort every row, find the first correct key."""
    q = queries / queries.norm(dim=1, keepdim=True)
    k = keys / keys.norm(dim=1, keepdim=True)
    order = (q @ k.T).argsort(dim=1, descending=True)
    out = []
    for i in range(q.shape[0]):
        correct = (key_ids[order[i]] == query_ids[i]).nonzero()
        out.append(int(correct[0]) + 1)
    return out


@pytest.mark.parametrize("block_elements", [1, 7, 60, 1 << 24])
def test_chunked_ranks_equal_the_full_sort_at_every_chunk_size(block_elements: int) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(23, 6, generator=g, dtype=torch.float64)
    owner = torch.tensor([i % 23 for i in range(40)])  # 40 captions, one to two per image
    captions = images[owner] + 0.8 * torch.randn(40, 6, generator=g, dtype=torch.float64)
    ids = torch.arange(23)
    i2t = retrieval_ranks(images, captions, ids, owner, block_elements=block_elements)
    t2i = retrieval_ranks(captions, images, owner, ids, block_elements=block_elements)
    assert i2t.tolist() == full_matrix_ranks(images, captions, ids, owner)
    assert t2i.tolist() == full_matrix_ranks(captions, images, owner, ids)
    assert 1.0 in i2t.tolist() and max(i2t.tolist()) > 1  # not a trivial case


def test_exact_ties_from_duplicated_embeddings() -> None:
    # images 0 and 1 are the same vector; the captions equal the images
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    metrics = retrieval_metrics(images, images.clone(), curve_ks=None)
    ranks = retrieval_ranks(images, images.clone(), torch.arange(3), torch.arange(3))
    assert ranks.tolist() == [1.5, 1.5, 1.0]
    assert metrics["image_to_text"]["recall@1"] == pytest.approx(1 / 3)
    assert metrics["text_to_image"]["median_rank"] == 1.5
    expected_keys = {"recall@1", "recall@5", "recall@10", "median_rank", "mean_rank", "queries"}
    assert set(metrics["image_to_text"]) == expected_keys


class _LargestResult(TorchFunctionMode):
    """Records the most elements of any tensor an op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.largest = max(self.largest, out.numel())
        return out


def test_the_similarity_matrix_is_never_built_whole() -> None:
    g = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(40, 2, generator=g), torch.randn(50, 2, generator=g)
    ids = torch.arange(40) % 50
    mode = _LargestResult()
    with mode:
        chunked = retrieval_ranks(queries, keys, ids, torch.arange(50), block_elements=100)
    assert mode.largest <= 100 < 40 * 50  # one block of 2 queries x 50 keys at most
    assert chunked.tolist() == ranks_from_similarity(
        torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T,
        ids,
        torch.arange(50),
    ).tolist()


def test_the_report_has_the_one_to_one_and_the_multi_caption_protocol() -> None:
    # 3 images; captions 0, 1 of image 0, caption 2 of image 1, captions 3, 4 of image 2
    images = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    captions = torch.tensor(
        [
            [0.0, 1.0, 0.2],  # image 0's primary caption looks like image 1
            [1.0, 0.0, 0.0],  # its second caption is right
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.5, 1.0],
        ]
    )
    owner = torch.tensor([0, 0, 1, 2, 2])
    report = retrieval_report(images, captions, owner)
    assert report["protocol"] == "1:1 primary caption"
    assert (report["num_images"], report["num_captions"], report["ties"]) == (3, 5, "half")
    # 1:1: image 0 is orthogonal to all three primary captions (tied at 0: rank 2);
    # caption 0 finds images 1 and 2 before image 0 (rank 3)
    assert report["image_to_text"]["recall@1"] == pytest.approx(2 / 3)
    assert report["text_to_image"]["recall@1"] == pytest.approx(2 / 3)
    # multi-caption: image 0 finds its second caption first; 5 text queries, caption 0 misses
    multi = report["multi_caption"]
    assert multi["image_to_text"]["recall@1"] == 1.0
    assert multi["text_to_image"]["queries"] == 5
    assert multi["text_to_image"]["recall@1"] == pytest.approx(4 / 5)
    for direction in ("image_to_text", "text_to_image"):
        assert {"recall@1", "recall@5", "recall@10", "median_rank"} <= set(report[direction])
    # an explicit primary caption: image 0's second one
    better = retrieval_report(images, captions, owner, primary=torch.tensor([1, 2, 3]))
    assert better["image_to_text"]["recall@1"] == 1.0
    # one caption per image: no multi-caption section
    assert "multi_caption" not in retrieval_report(images, captions[[1, 2, 3]], torch.arange(3))


def test_bad_inputs_are_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="ties must be one of optimistic, half, pessimistic"):
        ranks_from_similarity(SIMILARITY, ties="random")
    with pytest.raises(ValueError, match="has no correct key"):
        retrieval_ranks(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 1, 5]), torch.arange(3))
    with pytest.raises(ValueError, match="caption_owner must lie in"):
        retrieval_report(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="image 2 has no caption"):
        retrieval_report(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="belongs to image 0"):
        retrieval_report(
            torch.randn(2, 2), torch.randn(3, 2), torch.tensor([0, 0, 1]), primary=torch.tensor([0, 1])
        )
    with pytest.raises(ValueError, match="give caption_owner"):
        retrieval_metrics(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="same dimension"):
        retrieval_ranks(torch.randn(3, 2), torch.randn(3, 4), torch.arange(3), torch.arange(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        retrieval_ranks(torch.full((3, 2), float("nan")), torch.randn(3, 2), torch.arange(3), torch.arange(3))


def test_the_recall_plot_is_written(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(30, 4, generator=g)
    owner = torch.arange(60) % 30
    captions = images[owner] + torch.randn(60, 4, generator=g)
    path = plot_recall_at_k(retrieval_report(images, captions, owner), tmp_path / "plots" / "recall.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
