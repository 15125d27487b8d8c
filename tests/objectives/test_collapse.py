"""The MMCR gradient at nearly and exactly collapsed centroids, against the plain formula.

The loss maximises ``||C||_*``. Nearly collapsed centroids (samples whose embeddings differ
by a relative spread of 1e-7 to 1e-3) have small but real singular values, on which the
whole gradient with respect to ``z`` rests (the large one's direction is radial, and the
normalisation removes it): they must be resolved, not zeroed. At exactly rank-deficient
centroids the gradient must be an ascending subgradient (the completed polar factor),
or gradient descent never leaves collapse. The reference is the plain formula,
``-torch.linalg.svdvals(C).sum()``, whose SVD completes the singular vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from mmcr import MMCRLoss
from mmcr.geometry.metrics import effective_rank
from mmcr.objectives.mmcr import centroids_of
from mmcr.objectives.spectral import nuclear_norm

from .test_mmcr import grads, rel


def plain_loss(z: torch.Tensor) -> torch.Tensor:
    """The plain formula with lmbda = 0, in the precision of ``z``."""
    views = z / z.norm(dim=-1, keepdim=True)
    return -torch.linalg.svdvals(views.mean(dim=1)).sum()


def nearly_collapsed(b: int, k: int, d: int, spread: float, seed: int = 1) -> torch.Tensor:
    """``(b, k, d)`` views of one unit direction plus noise of relative size ``spread``."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    direction = direction / direction.norm()
    return direction + spread * torch.randn(b, k, d, generator=g) / math.sqrt(d)


def start(kind: str, b: int = 64, k: int = 2, d: int = 32) -> torch.Tensor:
    """The starts of the descent test: every view identical, a spread of 1e-6, exact rank 4."""
    if kind == "identical":
        return nearly_collapsed(b, k, d, 0.0)
    if kind == "spread 1e-6":
        return nearly_collapsed(b, k, d, 1e-6)
    g = torch.Generator().manual_seed(2)
    directions = torch.randn(4, d, generator=g)
    return directions[torch.arange(b) % 4][:, None, :].expand(b, k, d).clone()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the step loops: their matrices are tiny, and on a shared
    machine a second thread only waits for a core (100 steps took 20 s instead of 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def descend(loss_fn: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor) -> tuple[float, float]:
    """Plain gradient descent on free embeddings (SGD, lr 0.5, 100 steps).

    Returns the final loss (by the plain formula, in float64) and the effective rank of C.
    """
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([z], lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        loss_fn(z).backward()
        optimizer.step()
    final = z.detach()
    return float(plain_loss(final.double())), effective_rank(final)


@pytest.mark.parametrize("kind", ["identical", "spread 1e-6", "rank 4"])
@pytest.mark.usefixtures("one_thread")
def test_gradient_descent_leaves_collapse_like_the_svdvals_formula(kind: str) -> None:
    # At least 80 % of the plain formula's progress in loss and effective rank. Not two-sided:
    # from the identical start the fixed completion reaches the bound (-45.25, rank 32)
    # while the SVD's arbitrary completion in the plain formula stops near -37, rank 28.
    z0 = start(kind)
    loss, rank = descend(MMCRLoss(lmbda=0.0), z0)
    plain_final, plain_rank = descend(plain_loss, z0)
    assert loss <= 0.8 * plain_final, (loss, plain_final)
    assert rank >= 0.8 * plain_rank, (rank, plain_rank)
    assert loss >= -math.sqrt(64 * 32) - 1e-3  # the bound sqrt(P min(P, D))
    assert rank > 16  # of at most 32: the start's rank (1 or 4) is left far behind


@pytest.mark.usefixtures("one_thread")
def test_the_minimum_norm_subgradient_would_keep_exact_collapse_stationary() -> None:
    # why the global term completes its polar factor: with the minimum-norm subgradient
    # the collapsed start does not move (its only direction is radial)
    def minimum_norm_loss(z: torch.Tensor) -> torch.Tensor:
        return -nuclear_norm(centroids_of(z), subgradient="minimum_norm")

    z0 = start("identical")
    loss, rank = descend(minimum_norm_loss, z0)
    assert rank == pytest.approx(1.0, abs=1e-3)
    assert loss == pytest.approx(float(plain_loss(z0.double())), rel=1e-6)


def _collapsed_network(x: torch.Tensor) -> nn.Module:
    """An MLP projector whose last layer has rank 1 with positive outputs: every view maps
    to one direction, so the centroids start collapsed."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[-1], 64), nn.ReLU(), nn.Linear(64, 32, bias=False))
    with torch.no_grad():
        direction = torch.randn(32)
        net[2].weight.copy_((direction / direction.norm())[:, None] * torch.rand(64)[None, :])
    return net


@pytest.mark.parametrize("objective", ["mmcr", "minimum_norm"])
@pytest.mark.usefixtures("one_thread")
def test_a_collapsed_projector_leaves_collapse(objective: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 1, 16) + 0.3 * torch.randn(64, 2, 16)  # 64 samples, 2 views
    net = _collapsed_network(x)
    loss_fn: Callable[[torch.Tensor], torch.Tensor]
    if objective == "mmcr":
        loss_fn = MMCRLoss(lmbda=0.0)
    else:  # the contrast: the same loss with the minimum-norm subgradient stays collapsed

        def loss_fn(z: torch.Tensor) -> torch.Tensor:
            return -nuclear_norm(centroids_of(z), subgradient="minimum_norm")

    assert effective_rank(net(x).detach()) == pytest.approx(1.0, abs=1e-3)
    # plain SGD: an adaptive optimiser would blow up even a rounding-level gradient
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        loss_fn(net(x)).backward()
        optimizer.step()
    rank = effective_rank(net(x).detach())
    if objective == "mmcr":
        assert rank > 16
    else:
        assert rank < 1.01


SHAPES = [(64, 32), (128, 256)]


@pytest.mark.parametrize("spread", [1e-7, 1e-6, 1e-5, 1e-4, 1e-3])
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("b,d", SHAPES)
def test_gradient_at_nearly_collapsed_centroids_is_as_accurate_as_svdvals(
    b: int, d: int, k: int, spread: float
) -> None:
    # the truth is the plain formula in float64 on the same float32 inputs
    z = nearly_collapsed(b, k, d, spread)
    value, grad = grads(MMCRLoss(lmbda=0.0), z)
    true_value, truth = grads(plain_loss, z.double())
    _, plain_grad = grads(plain_loss, z)
    assert abs(float(value) - float(true_value)) <= 1e-5 * abs(float(true_value))
    assert rel(grad, truth) <= rel(plain_grad, truth), (rel(grad, truth), rel(plain_grad, truth))
    if spread >= 1e-5:  # singular values well above float32 rounding: accurate, not just better
        assert rel(grad, truth) <= 1e-2


def _rank_deficient(rows: int, cols: int, rank: int) -> torch.Tensor:
    torch.manual_seed(rows + rank)
    basis = torch.linalg.qr(torch.randn(cols, rank)).Q.T  # rank x cols, orthonormal rows
    x = torch.randn(rows, rank) @ basis
    x[:rank] = basis * torch.arange(1, rank + 1)[:, None]  # make the rank exact and known
    return x


@pytest.mark.parametrize("rows,cols,rank", [(64, 32, 3), (32, 64, 5), (40, 40, 1), (8, 128, 2)])
def test_complete_subgradient_is_the_full_polar_factor(rows: int, cols: int, rank: int) -> None:
    x = _rank_deficient(rows, cols, rank)

    def complete(m: torch.Tensor) -> torch.Tensor:
        return nuclear_norm(m, subgradient="complete")

    value, polar = grads(complete, x)
    min_value, min_norm = grads(lambda m: nuclear_norm(m), x)
    assert float(value) == pytest.approx(float(min_value), rel=1e-6)
    x64, p = x.double(), polar.double()
    u, s, vh = torch.linalg.svd(x64, full_matrices=False)
    u_r, vh_r = u[:, :rank], vh[:rank]
    # on the ranges it is U_r V_r^T, the minimum-norm subgradient; beyond them it completes
    # U_r and V_r to orthonormal bases: every one of its min(m, n) singular values is 1
    assert rel(u_r.T @ p, vh_r) <= 1e-5
    assert rel(p @ vh_r.T, u_r) <= 1e-5
    assert torch.allclose(torch.linalg.svdvals(p), torch.ones(min(rows, cols), dtype=p.dtype), atol=1e-5)
    assert rel(min_norm, u_r @ vh_r) <= 1e-4
    # so it ascends at unit rate along every singular value, the minimum-norm one only
    # along the nonzero ones
    step = 1e-3

    def rise(direction: torch.Tensor) -> float:
        return float(torch.linalg.svdvals(x64 + step * direction).sum() - s.sum()) / step

    assert rise(p) == pytest.approx(min(rows, cols), rel=1e-4)
    assert rise(min_norm.double()) == pytest.approx(rank, rel=1e-4)
    # deterministic: the same matrix gives the same gradient, bit for bit
    assert torch.equal(grads(complete, x)[1], polar)


@pytest.mark.parametrize("kind", ["random", "near-square", "spread 1e-4"])
def test_complete_and_minimum_norm_agree_on_full_rank_matrices(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "random":
        x = torch.randn(40, 24)
    elif kind == "near-square":
        x = torch.randn(96, 96)
    else:
        x = centroids_of(nearly_collapsed(64, 2, 32, 1e-4))
    value, polar = grads(lambda m: nuclear_norm(m, subgradient="complete"), x)
    min_value, min_norm = grads(lambda m: nuclear_norm(m), x)
    assert torch.equal(value, min_value)
    assert torch.equal(polar, min_norm)


def test_collapsed_loss_gradient_is_deterministic() -> None:
    # resume is bit-exact only if the completion is a function of the input alone
    for z in (start("identical"), start("rank 4"), nearly_collapsed(64, 2, 32, 1e-7)):
        first: Any = grads(MMCRLoss(lmbda=0.0), z)
        again: Any = grads(MMCRLoss(lmbda=0.0), z.clone())
        assert torch.equal(first[0], again[0])
        assert torch.equal(first[1], again[1])
        assert torch.isfinite(first[1]).all()
        assert float(first[1].norm()) > 0.1  # a gradient that moves the views


def test_subgradient_is_checked() -> None:
    with pytest.raises(ValueError, match="subgradient"):
        nuclear_norm(torch.randn(4, 3), subgradient="ascending")


def _low_rank_plus_spread(b: int, d: int, rank: int, spread: float) -> torch.Tensor:
    """Centroids of ``b`` samples on ``rank`` directions, spread by ``spread``."""
    g = torch.Generator().manual_seed(3)
    directions = torch.randn(rank, d, generator=g)
    z = directions[torch.arange(b) % rank][:, None, :] + spread * torch.randn(b, 2, d, generator=g)
    return centroids_of(z)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("spread", [1e-7, 3e-6, 1e-4])
@pytest.mark.parametrize("b,d", [(256, 128), (64, 256)])
def test_nearly_collapsed_centroids_are_deflated_exactly(
    b: int, d: int, spread: float, rank: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few large singular values over many small real ones: the float32 Gram tier
    # resolves them by deflating the large subspace, without a float64 SVD.
    from mmcr.objectives import spectral

    c = _low_rank_plus_spread(b, d, rank, spread)
    u, s, vh = torch.linalg.svd(c.double(), full_matrices=False)
    level = spectral.zero_ratio(torch.float32, max(b, d))
    assert float(s[rank]) < 1e-3 * float(s[rank - 1])  # the spectrum this tier is for
    ref_value = float(s[s > level * s[0]].sum())
    values, polar, ok = spectral._gram_tier(c[None], need_polar=True, complete=True)
    assert bool(ok[0]) and polar is not None
    assert abs(float(values[0]) - ref_value) <= 1e-6 * ref_value
    assert rel(polar[0], u @ vh) <= 2e-5
    # the minimum-norm choice decides ranks: below twice the zero level it defers to the SVD
    minimum_norm_ok = bool(spectral._gram_tier(c[None], need_polar=True)[2][0])
    assert minimum_norm_ok == bool(s[-1] > spectral.RANK_BAND * level * s[0])
    # and the deflation is what resolved it
    monkeypatch.setattr(spectral, "REFINE_MAX_FRACTION", 0.0)
    assert not bool(spectral._gram_tier(c[None], need_polar=True, complete=True)[2][0])
