"""The momentum (EMA) encoder and the cosine tau schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from mmcr.models import MomentumEncoder, cosine_tau


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def _perturb(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


def test_copy_is_frozen_and_independent() -> None:
    online = _tiny()
    ema = MomentumEncoder(online)
    assert all(not p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in online.parameters())
    before = [p.clone() for p in ema.parameters()]
    _perturb(online, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(before, ema.parameters(), strict=True))
    assert set(ema.state_dict()) == {f"module.{k}" for k in online.state_dict()}


@pytest.mark.parametrize("tau", [0.0, 0.3, 0.99, 1.0])
def test_update_is_the_ema_formula(tau: float) -> None:
    torch.manual_seed(0)
    online = _tiny()
    ema = MomentumEncoder(online)
    _perturb(online, seed=2)
    old = {k: v.clone() for k, v in ema.module.named_parameters()}
    ema.update(online, tau=tau)
    for name, param in ema.module.named_parameters():
        expected = tau * old[name] + (1.0 - tau) * dict(online.named_parameters())[name]
        torch.testing.assert_close(param, expected, rtol=0.0, atol=1e-14)


def test_tau_one_leaves_params_unchanged_and_tau_zero_copies() -> None:
    online = _tiny()
    ema = MomentumEncoder(online)
    _perturb(online, seed=3)
    old = [p.clone() for p in ema.parameters()]
    ema.update(online, tau=1.0)
    assert all(torch.equal(a, b) for a, b in zip(old, ema.parameters(), strict=True))
    ema.update(online, tau=0.0)
    assert all(
        torch.equal(a, b) for a, b in zip(online.parameters(), ema.parameters(), strict=True)
    )


def test_buffers_are_copied() -> None:
    online = _tiny()
    ema = MomentumEncoder(online)
    online.train()(torch.randn(8, 3, dtype=torch.float64))  # moves BN running statistics
    ema.update(online, tau=0.99)
    for (name, a), (_, b) in zip(ema.module.named_buffers(), online.named_buffers(), strict=True):
        assert torch.equal(a, b), name


def test_no_gradient_reaches_the_ema_copy() -> None:
    online = _tiny()
    ema = MomentumEncoder(online)
    x = torch.randn(6, 3, dtype=torch.float64)
    target = ema(x)
    assert not target.requires_grad
    loss = (online(x) * target).sum() + target.sum()
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in ema.parameters())
    assert all(p.grad is not None for p in online.parameters())


def test_update_accepts_a_wrapped_online_network() -> None:
    online = _tiny()
    ema = MomentumEncoder(nn.DataParallel(online))
    _perturb(online, seed=4)
    ema.update(nn.DataParallel(online), tau=0.0)
    assert all(
        torch.equal(a, b) for a, b in zip(online.parameters(), ema.parameters(), strict=True)
    )


def test_bad_update_raises() -> None:
    ema = MomentumEncoder(_tiny())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema.update(_tiny(), tau=1.5)
    with pytest.raises(ValueError, match="do not match"):
        ema.update(nn.Linear(3, 2).double(), tau=0.5)


def test_cosine_tau_schedule() -> None:
    assert cosine_tau(0, 100) == pytest.approx(0.99)
    assert cosine_tau(50, 100) == pytest.approx(0.995)
    assert cosine_tau(100, 100) == pytest.approx(1.0)
    assert cosine_tau(150, 100) == pytest.approx(1.0)
    assert cosine_tau(0, 10, base_tau=0.996, final_tau=1.0) == pytest.approx(0.996)
    assert cosine_tau(25, 100, 0.9, 1.0) == pytest.approx(
        1.0 - 0.1 * (math.cos(math.pi / 4) + 1) / 2
    )
    values = [cosine_tau(s, 20) for s in range(21)]
    assert all(b >= a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("step", "total", "base", "final"), [(-1, 10, 0.99, 1.0), (0, 0, 0.99, 1.0), (0, 10, 1.2, 1.0)]
)
def test_cosine_tau_rejects_bad_input(step: int, total: int, base: float, final: float) -> None:
    with pytest.raises(ValueError):
        cosine_tau(step, total, base, final)
