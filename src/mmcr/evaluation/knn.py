"""Weighted k-nearest-neighbour classification on L2-normalised features.

Each query takes its ``k`` most cosine-similar memory features and votes for their
labels with weights ``exp(similarity / temperature)`` (Wu et al., 2018; the monitor of
the MMCR reference code uses k = 200, temperature 0.5). Computed in chunks so that a
60k x 10k similarity matrix never lives in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _check(features: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name} features must have shape (N, F), got {tuple(features.shape)}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"{name} labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")


@torch.no_grad()
def nearest_neighbours(
    memory: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices ``(Q, k)`` of each query's k nearest memory features."""
    if queries.ndim != 2 or queries.shape[1] != memory.shape[1]:
        raise ValueError(f"queries must have shape (Q, {memory.shape[1]}), got {tuple(queries.shape)}")
    k = min(k, memory.shape[0])
    mem = F.normalize(memory.float(), dim=1)
    sims, idxs = [], []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start : start + chunk].float(), dim=1)
        sim, idx = (q @ mem.T).topk(k, dim=1)
        sims.append(sim)
        idxs.append(idx)
    return torch.cat(sims), torch.cat(idxs)


def _vote(
    sims: torch.Tensor,
    idx: torch.Tensor,
    memory_labels: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
) -> torch.Tensor:
    weights = (sims[:, :k] / temperature).exp()
    votes = torch.zeros(sims.shape[0], num_classes, device=sims.device)
    votes.scatter_add_(1, memory_labels[idx[:, :k]], weights)
    return votes


@torch.no_grad()
def knn_scores(
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    queries: torch.Tensor,
    *,
    k: int,
    temperature: float,
    num_classes: int,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores ``(Q, num_classes)`` of every query from its k nearest memory features."""
    _check(memory, memory_labels, "memory")
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    sims, idx = nearest_neighbours(memory, queries, k, chunk)
    return _vote(sims, idx, memory_labels, k, temperature, num_classes)


def knn_accuracy(
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.5,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy (in [0, 1]) of the weighted kNN classifier."""
    _check(queries, query_labels, "query")
    classes = num_classes or int(max(memory_labels.max(), query_labels.max())) + 1
    scores = knn_scores(memory, memory_labels, queries, k=k, temperature=temperature, num_classes=classes)
    return float((scores.argmax(1) == query_labels).float().mean())


@dataclass
class KNNSelection:
    """Result of choosing k and temperature on a validation split."""

    k: int
    temperature: float
    val_accuracy: float
    grid: list[dict[str, float]]


def select_knn(
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    val: torch.Tensor,
    val_labels: torch.Tensor,
    *,
    ks: Sequence[int] = (10, 20, 50, 100, 200),
    temperatures: Sequence[float] = (0.05, 0.1, 0.5, 1.0),
    num_classes: int | None = None,
) -> KNNSelection:
    """Pick (k, temperature) with the best validation accuracy (ties: the first in the grid)."""
    _check(memory, memory_labels, "memory")
    _check(val, val_labels, "validation")
    classes = num_classes or int(max(memory_labels.max(), val_labels.max())) + 1
    # one neighbour search at the largest k serves every (k, temperature) of the grid
    sims, idx = nearest_neighbours(memory, val, max(ks))
    grid = []
    best: tuple[float, int, float] | None = None
    for k in ks:
        for t in temperatures:
            predictions = _vote(sims, idx, memory_labels, k, t, classes).argmax(1)
            acc = float((predictions == val_labels).float().mean())
            grid.append({"k": k, "temperature": t, "val_accuracy": acc})
            if best is None or acc > best[0]:
                best = (acc, k, t)
    assert best is not None
    return KNNSelection(k=best[1], temperature=best[2], val_accuracy=best[0], grid=grid)
