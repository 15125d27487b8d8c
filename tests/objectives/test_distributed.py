"""The exactness rule for every objective, on 2 gloo processes on CPU.

A run on ``W = 2`` processes with ``B / 2`` samples each must give the same loss and the
same parameter gradients as one process with all ``B`` samples (relative difference at
most 1e-5 in float32). One spawn runs every check (process start-up dominates the cost);
the parent then compares with single-process references computed here.

(a) z level: rank ``r`` holds rows ``r*B/2 : (r+1)*B/2`` of a fixed ``z``; every rank must
    return the global loss, and the gradient each rank receives for its rows is ``W``
    times the single-process gradient of those rows (DDP then divides by ``W``).
(b) model level: a tiny model without batch norm wrapped in DistributedDataParallel,
    whose averaged parameter gradients must equal the single-process ones. With
    ``distributed=False`` (no gather) they must not: each rank's loss then sees only its
    own half of the batch.
(c) collapsed centroids (every view identical, exact rank 2, a relative spread of 1e-6),
    where MMCR's gradient is a completed polar factor of the global centroids: every
    rank must apply the same one, and the z-level rule (a) must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmcr.distributed import gather_with_grad
from mmcr.objectives.barlow_twins import BarlowTwinsLoss
from mmcr.objectives.mmcr import MMCRLoss, centroids_of
from mmcr.objectives.simclr import SimCLRLoss
from mmcr.objectives.spectral import nuclear_norm
from mmcr.objectives.vicreg import VICRegLoss

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
BATCH = 8
IN_DIM, HIDDEN_DIM, OUT_DIM = 16, 32, 8
VIEW_COUNTS = (2, 3)
RTOL = 1e-5

FACTORIES: dict[str, Callable[[bool], nn.Module]] = {
    "mmcr": lambda distributed: MMCRLoss(lmbda=0.0, distributed=distributed),
    "mmcr_lmbda0.01": lambda distributed: MMCRLoss(lmbda=0.01, distributed=distributed),
    "simclr": lambda distributed: SimCLRLoss(distributed=distributed),
    "barlow_twins": lambda distributed: BarlowTwinsLoss(distributed=distributed),
    "vicreg": lambda distributed: VICRegLoss(distributed=distributed),
}
CASES = [(name, k) for name in FACTORIES for k in VIEW_COUNTS]
COLLAPSED = [(start, k) for start in ("identical", "rank 2", "spread 1e-6") for k in VIEW_COUNTS]


def make_inputs(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed ``z`` (B, K, OUT_DIM) and model input ``x`` (B, K, IN_DIM) of a case."""
    generator = torch.Generator().manual_seed(1000 + k)
    z = torch.randn(BATCH, k, OUT_DIM, generator=generator)
    x = torch.randn(BATCH, k, IN_DIM, generator=generator)
    return z, x


def make_collapsed(start: str, k: int) -> torch.Tensor:
    """A fixed ``z`` (B, K, OUT_DIM) whose centroids are (nearly) rank-deficient."""
    generator = torch.Generator().manual_seed(2000 + k)
    directions = torch.randn(2, OUT_DIM, generator=generator)
    if start == "rank 2":  # samples alternate between two directions
        return directions[torch.arange(BATCH) % 2][:, None, :].expand(BATCH, k, OUT_DIM).clone()
    spread = 1e-6 if start == "spread 1e-6" else 0.0
    noise = torch.randn(BATCH, k, OUT_DIM, generator=generator) / OUT_DIM**0.5
    return directions[0] / directions[0].norm() + spread * noise


def global_polar(centroids: torch.Tensor) -> torch.Tensor:
    """The gradient of ``||C||_*`` (the completed polar factor) at the given centroids."""
    c = centroids.detach().requires_grad_(True)
    nuclear_norm(c, subgradient="complete").backward()
    assert c.grad is not None
    return c.grad


def make_model() -> nn.Module:
    """Linear -> ReLU -> Linear on every view (no batch norm), identically seeded."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN_DIM, HIDDEN_DIM), nn.ReLU(), nn.Linear(HIDDEN_DIM, OUT_DIM))


def flat_grads(model: nn.Module) -> torch.Tensor:
    grads = []
    for parameter in model.parameters():
        assert parameter.grad is not None
        grads.append(parameter.grad.detach().reshape(-1).clone())
    return torch.cat(grads)


def exactness_worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Every case on this rank's half of the batch; runs inside a gloo process group."""
    per_rank = BATCH // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    model = DistributedDataParallel(make_model())
    out: dict[str, torch.Tensor] = {}
    for name, k in CASES:
        z, x = make_inputs(k)
        key = f"{name}/K{k}"

        z_local = z[rows].clone().requires_grad_(True)
        loss = FACTORIES[name](True)(z_local)
        loss.backward()
        assert z_local.grad is not None
        out[f"{key}/z/loss"] = loss.detach()
        out[f"{key}/z/grad"] = z_local.grad.detach()

        for distributed in (True, False):
            model.zero_grad(set_to_none=True)
            loss = FACTORIES[name](distributed)(model(x[rows]))
            loss.backward()  # DDP averages the parameter gradients over ranks here
            tag = "gathered" if distributed else "local"
            out[f"{key}/model/{tag}/loss"] = loss.detach()
            out[f"{key}/model/{tag}/grad"] = flat_grads(model.module)
    for start, k in COLLAPSED:
        key = f"collapsed/{start}/K{k}"
        z_local = make_collapsed(start, k)[rows].clone().requires_grad_(True)
        loss = MMCRLoss(lmbda=0.0)(z_local)
        loss.backward()
        assert z_local.grad is not None
        out[f"{key}/loss"] = loss.detach()
        out[f"{key}/grad"] = z_local.grad.detach()
        out[f"{key}/polar"] = global_polar(gather_with_grad(centroids_of(z_local.detach())))
    return out


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|``: scale-aware, safe near zero entries."""
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return float((actual - expected).abs().max() / scale)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, torch.Tensor]]:
    """What every rank returned; one spawn of two processes for the whole module."""
    tmp_path: Path = tmp_path_factory.mktemp("exactness")
    results: list[Any] = run_distributed(exactness_worker, tmp_path, world_size=WORLD_SIZE)
    return results


def single_process_z(name: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    z, _ = make_inputs(k)
    z = z.clone().requires_grad_(True)
    loss = FACTORIES[name](True)(z)  # no process group here: the gather is the identity
    loss.backward()
    assert z.grad is not None
    return loss.detach(), z.grad


def single_process_model(name: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    _, x = make_inputs(k)
    model = make_model()
    loss = FACTORIES[name](True)(model(x))
    loss.backward()
    return loss.detach(), flat_grads(model)


@pytest.mark.parametrize(("name", "k"), CASES)
def test_z_level_loss_and_gradient_match_single_process(
    ranks: list[dict[str, torch.Tensor]], name: str, k: int
) -> None:
    loss, grad = single_process_z(name, k)
    key = f"{name}/K{k}/z"
    for rank, result in enumerate(ranks):
        assert relative_difference(result[f"{key}/loss"], loss) <= RTOL, f"rank {rank}"
    # Each rank gets W times the gradient of its own rows; DDP's average divides by W.
    gathered = torch.cat([result[f"{key}/grad"] for result in ranks]) / WORLD_SIZE
    assert gathered.shape == grad.shape
    assert relative_difference(gathered, grad) <= RTOL


@pytest.mark.parametrize(("name", "k"), CASES)
def test_ddp_model_gradients_match_single_process(
    ranks: list[dict[str, torch.Tensor]], name: str, k: int
) -> None:
    loss, grad = single_process_model(name, k)
    key = f"{name}/K{k}/model/gathered"
    for rank, result in enumerate(ranks):
        assert relative_difference(result[f"{key}/loss"], loss) <= RTOL, f"rank {rank}"
        assert relative_difference(result[f"{key}/grad"], grad) <= RTOL, f"rank {rank}"


@pytest.mark.parametrize(("name", "k"), CASES)
def test_without_the_gather_gradients_differ(ranks: list[dict[str, torch.Tensor]], name: str, k: int) -> None:
    """``distributed=False`` computes the loss of each rank's half batch: not exact.

    This is why every objective gathers the global batch: without it, batch statistics,
    negatives and centroids are those of ``B / W`` samples and the averaged gradient is
    a different one (the reference MMCR code's gather without gradient is wrong too).
    """
    _, grad = single_process_model(name, k)
    result = ranks[0][f"{name}/K{k}/model/local/grad"]
    assert relative_difference(result, grad) > 1e-2


@pytest.mark.parametrize(("start", "k"), COLLAPSED)
def test_collapsed_centroids_give_every_rank_the_same_completed_polar_factor(
    ranks: list[dict[str, torch.Tensor]], start: str, k: int
) -> None:
    key = f"collapsed/{start}/K{k}"
    z = make_collapsed(start, k)
    single_polar = global_polar(centroids_of(z))
    polars = [result[f"{key}/polar"] for result in ranks]
    # bit for bit: nothing rank-dependent enters the completion
    assert all(torch.equal(polar, polars[0]) for polar in polars)
    # and the same as one process's (at exact zeros the completion is fixed: to rounding)
    assert relative_difference(polars[0], single_polar) <= RTOL
    # and the z-level rule of (a)
    z = z.clone().requires_grad_(True)
    loss = MMCRLoss(lmbda=0.0)(z)
    loss.backward()
    assert z.grad is not None
    for rank, result in enumerate(ranks):
        assert relative_difference(result[f"{key}/loss"], loss.detach()) <= RTOL, f"rank {rank}"
    gathered = torch.cat([result[f"{key}/grad"] for result in ranks]) / WORLD_SIZE
    assert relative_difference(gathered, z.grad) <= RTOL
