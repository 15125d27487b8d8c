"""X-CLR is exact under data parallelism: 2 gloo processes equal one process, the graph following the batch.

Rank ``r`` holds rows ``r*B/2 : (r+1)*B/2`` of a fixed ``z`` and of its labels. Every rank
must return the loss of the global batch, whose graph rows are the gathered labels' (rank 0's
samples first), and receive ``W`` times the single-process gradient of its rows (DDP then
divides by ``W``); a small model wrapped in DistributedDataParallel must get the
single-process parameter gradients. The same holds for a ``(N, N)`` sample graph passed
directly, and for the sample indices of ``graph = "captions"`` (rows of a graph of the whole
training split, gathered with the batch like the labels); a rank-local ``(B/2, B/2)`` graph
is refused with a sentence. One spawn runs every check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmcr.objectives.graphs import cosine_graph
from mmcr.objectives.xclr import XCLRLoss

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
BATCH = 8
CLASSES = 3
IN_DIM, HIDDEN_DIM, OUT_DIM = 12, 16, 6
VIEW_COUNTS = (2, 3)
RTOL = 1e-5
TRAIN_SIZE = 13  # the training split of the caption graph
INDICES = torch.tensor([11, 0, 7, 3, 12, 5, 1, 9])  # the global batch's rows in it


def caption_loss(train_graph: torch.Tensor) -> XCLRLoss:
    """X-CLR with graph = "captions", its training split's graph set as bind_samples would."""
    loss_fn = XCLRLoss(graph="captions")
    loss_fn.train_graph = train_graph
    return loss_fn


def train_graph() -> torch.Tensor:
    return cosine_graph(torch.randn(TRAIN_SIZE, 4, generator=torch.Generator().manual_seed(77)))


def make_inputs(k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z`` (B, K, D), model input ``x`` (B, K, IN_DIM), labels (B,), class and sample graphs."""
    generator = torch.Generator().manual_seed(3000 + k)
    z = torch.randn(BATCH, k, OUT_DIM, generator=generator)
    x = torch.randn(BATCH, k, IN_DIM, generator=generator)
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 1])  # rank 1's half differs from rank 0's
    class_graph = cosine_graph(torch.randn(CLASSES, 4, generator=generator)).float()
    sample_graph = cosine_graph(torch.randn(BATCH, 4, generator=generator)).float()
    return z, x, labels, class_graph, sample_graph


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN_DIM, HIDDEN_DIM), nn.ReLU(), nn.Linear(HIDDEN_DIM, OUT_DIM))


def flat_grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().reshape(-1).clone() for p in model.parameters() if p.grad is not None])


def xclr_worker(rank: int, world_size: int) -> dict[str, torch.Tensor | str]:
    per_rank = BATCH // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    out: dict[str, torch.Tensor | str] = {}
    for k in VIEW_COUNTS:
        z, x, labels, class_graph, sample_graph = make_inputs(k)
        # (a) labels: the class graph's rows follow the gathered batch
        z_local = z[rows].clone().requires_grad_(True)
        loss = XCLRLoss(class_graph=class_graph)(z_local, labels=labels[rows])
        loss.backward()
        out[f"labels/K{k}/loss"] = loss.detach()
        out[f"labels/K{k}/grad"] = z_local.grad.detach().clone()  # type: ignore[union-attr]
        # (b) a sample graph of the global batch, the same on every rank
        z_local = z[rows].clone().requires_grad_(True)
        loss = XCLRLoss()(z_local, graph=sample_graph)
        loss.backward()
        out[f"graph/K{k}/loss"] = loss.detach()
        out[f"graph/K{k}/grad"] = z_local.grad.detach().clone()  # type: ignore[union-attr]
        # (c) a model under DDP, its labels with its batch
        model = DistributedDataParallel(make_model())
        loss = XCLRLoss(class_graph=class_graph)(model(x[rows]), labels=labels[rows])
        loss.backward()
        out[f"model/K{k}"] = flat_grads(model.module)
        # (e) sample indices into the training split's graph travel with their samples
        z_local = z[rows].clone().requires_grad_(True)
        loss = caption_loss(train_graph())(z_local, indices=INDICES[rows])
        loss.backward()
        out[f"indices/K{k}/loss"] = loss.detach()
        out[f"indices/K{k}/grad"] = z_local.grad.detach().clone()  # type: ignore[union-attr]
    # (d) a rank-local graph is refused, naming the global batch
    z, _, _, _, sample_graph = make_inputs(2)
    try:
        XCLRLoss()(z[rows], graph=sample_graph[rows, rows])
        out["local_graph_error"] = ""
    except ValueError as exc:
        out["local_graph_error"] = str(exc)
    return out


def test_xclr_is_exact_under_data_parallelism(tmp_path: Path) -> None:
    results = run_distributed(xclr_worker, tmp_path, world_size=WORLD_SIZE)
    per_rank = BATCH // WORLD_SIZE
    for k in VIEW_COUNTS:
        z, x, labels, class_graph, sample_graph = make_inputs(k)
        routes = {
            "labels": (XCLRLoss(class_graph=class_graph), {"labels": labels}),
            "graph": (XCLRLoss(), {"graph": sample_graph}),
            "indices": (caption_loss(train_graph()), {"indices": INDICES}),
        }
        for route, (loss_fn, kwargs) in routes.items():
            z_ref = z.clone().requires_grad_(True)
            loss = loss_fn(z_ref, **kwargs)
            loss.backward()
            assert z_ref.grad is not None
            for rank, result in enumerate(results):
                rows = slice(rank * per_rank, (rank + 1) * per_rank)
                torch.testing.assert_close(result[f"{route}/K{k}/loss"], loss.detach(), rtol=RTOL, atol=0)
                torch.testing.assert_close(
                    result[f"{route}/K{k}/grad"], WORLD_SIZE * z_ref.grad[rows], rtol=RTOL, atol=1e-7
                )
        model = make_model()
        XCLRLoss(class_graph=class_graph)(model(x), labels=labels).backward()
        for result in results:
            torch.testing.assert_close(result[f"model/K{k}"], flat_grads(model), rtol=RTOL, atol=1e-7)
    for result in results:
        assert "graph of the N = 8 samples (the global batch, gathered over the processes)" in str(
            result["local_graph_error"]
        )
        assert "must have shape (8, 8), got (4, 4)" in str(result["local_graph_error"])
