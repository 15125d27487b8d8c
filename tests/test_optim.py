"""LARS against a hand computation, parameter groups, optimiser factory, lr schedules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmcr.optim import (
    LARS,
    OPTIMIZERS,
    build_optimizer,
    lr_at,
    param_groups,
    scale_lr,
    set_lr,
    warmup_cosine,
)

LR, MOMENTUM, WD, ETA = 0.5, 0.9, 0.1, 0.02
W0 = np.array([[1.0, -2.0], [0.5, 3.0]])
B0 = np.array([0.1, -0.2])
GRADS_W = [np.array([[0.3, -0.1], [0.2, 0.4]]), np.array([[-0.1, 0.2], [0.0, 0.3]])]
GRADS_B = [np.array([0.05, -0.02]), np.array([0.01, 0.03])]


def _run_lars(nesterov: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    weight = nn.Parameter(torch.tensor(W0))
    bias = nn.Parameter(torch.tensor(B0))
    optimizer = LARS(
        [
            {"params": [weight]},
            # The excluded group's weight decay must be ignored.
            {"params": [bias], "lars_exclude": True},
        ],
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WD,
        eta=ETA,
        nesterov=nesterov,
    )
    for g_w, g_b in zip(GRADS_W, GRADS_B, strict=True):
        weight.grad = torch.tensor(g_w)
        bias.grad = torch.tensor(g_b)
        optimizer.step()
    return weight.detach(), bias.detach()


def _norm(a: np.ndarray) -> float:
    return math.sqrt(float((a * a).sum()))


def test_lars_two_steps_match_hand_computation() -> None:
    weight, bias = _run_lars()
    # Weight: trust ratio eta ||w|| / (||g|| + wd ||w||) on the decayed gradient.
    w, buf = W0.copy(), None
    for g in GRADS_W:
        trust = ETA * _norm(w) / (_norm(g) + WD * _norm(w))
        d = trust * (g + WD * w)
        buf = d if buf is None else MOMENTUM * buf + d
        w = w - LR * buf
    # Bias: excluded, so plain momentum SGD without weight decay.
    b1 = B0 - LR * GRADS_B[0]
    b2 = b1 - LR * (MOMENTUM * GRADS_B[0] + GRADS_B[1])
    np.testing.assert_allclose(weight.numpy(), w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bias.numpy(), b2, rtol=1e-12, atol=1e-14)


def test_lars_nesterov() -> None:
    weight, bias = _run_lars(nesterov=True)
    w, buf = W0.copy(), None
    for g in GRADS_W:
        d = ETA * _norm(w) / (_norm(g) + WD * _norm(w)) * (g + WD * w)
        buf = d if buf is None else MOMENTUM * buf + d
        w = w - LR * (d + MOMENTUM * buf)
    b, buf_b = B0.copy(), None
    for g in GRADS_B:
        buf_b = g if buf_b is None else MOMENTUM * buf_b + g
        b = b - LR * (g + MOMENTUM * buf_b)
    np.testing.assert_allclose(weight.numpy(), w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-12, atol=1e-14)


def test_lars_trust_ratio_is_one_for_zero_weights() -> None:
    weight = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    weight.grad = torch.tensor(GRADS_W[0])
    LARS([weight], lr=LR, momentum=0.0, weight_decay=WD, eta=ETA).step()
    np.testing.assert_allclose(weight.detach().numpy(), -LR * GRADS_W[0], rtol=1e-12)


def test_lars_skips_parameters_without_gradient_and_runs_closure() -> None:
    weight = nn.Parameter(torch.tensor(W0))
    optimizer = LARS([weight], lr=LR)
    assert optimizer.step(lambda: 3.0) == 3.0
    assert torch.equal(weight.detach(), torch.tensor(W0))


@pytest.mark.parametrize(
    "kwargs", [{"lr": -1.0}, {"momentum": 1.0}, {"weight_decay": -0.1}, {"eta": 0.0}]
)
def test_lars_rejects_bad_hyperparameters(kwargs: dict[str, float]) -> None:
    options = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError):
        LARS([nn.Parameter(torch.zeros(2, 2))], **options)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2, bias=False))


def test_param_groups_split_by_ndim() -> None:
    model = _model()
    groups = param_groups(model, weight_decay=1e-6)
    assert len(groups) == 2
    decay, excluded = groups
    assert all(p.ndim > 1 for p in decay["params"]) and len(decay["params"]) == 2
    assert decay["weight_decay"] == 1e-6 and decay["lars_exclude"] is False
    assert all(p.ndim <= 1 for p in excluded["params"]) and len(excluded["params"]) == 3
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True


def test_param_groups_skip_frozen_and_shared() -> None:
    model = _model()
    model[0].weight.requires_grad_(False)
    params = [*model.parameters(), model[3].weight]
    groups = param_groups(params, weight_decay=0.1)
    assert sum(len(g["params"]) for g in groups) == 4
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), weight_decay=0.1)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("lars", LARS),
        ("LARS", LARS),
    ],
)
def test_build_optimizer_names(name: str, cls: type[torch.optim.Optimizer]) -> None:
    model = _model()
    optimizer = build_optimizer(name, model, lr=1e-3, weight_decay=1e-6)
    assert isinstance(optimizer, cls)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-6, 0.0]
    model(torch.randn(4, 4)).square().mean().backward()
    optimizer.step()  # the extra group key lars_exclude is harmless for every optimiser


def test_build_optimizer_accepts_parameters_and_groups() -> None:
    model = _model()
    from_params = build_optimizer("sgd", model.parameters(), lr=0.1, weight_decay=0.01)
    assert len(from_params.param_groups) == 2
    groups = [{"params": list(model.parameters()), "weight_decay": 0.5}]
    from_groups = build_optimizer("adamw", groups, lr=0.1, weight_decay=0.01)
    assert len(from_groups.param_groups) == 1
    assert from_groups.param_groups[0]["weight_decay"] == 0.5


def test_build_optimizer_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        build_optimizer("rmsprop", _model(), lr=0.1, weight_decay=0.0)
    assert all(name in str(info.value) for name in OPTIMIZERS)


def test_warmup_cosine_values() -> None:
    total, warmup, base, final = 110, 10, 1.2, 0.01
    assert warmup_cosine(0, total, warmup, base, final) == pytest.approx(base / warmup)
    assert warmup_cosine(warmup - 1, total, warmup, base, final) == pytest.approx(base)
    assert warmup_cosine(warmup, total, warmup, base, final) == pytest.approx(base)
    assert warmup_cosine(60, total, warmup, base, final) == pytest.approx((base + final) / 2)
    assert warmup_cosine(total, total, warmup, base, final) == pytest.approx(final)
    assert warmup_cosine(total + 5, total, warmup, base, final) == pytest.approx(final)
    ramp = [warmup_cosine(s, total, warmup, base, final) for s in range(warmup)]
    assert all(b > a for a, b in itertools.pairwise(ramp))
    decay = [warmup_cosine(s, total, warmup, base, final) for s in range(warmup, total + 1)]
    assert all(b < a for a, b in itertools.pairwise(decay))


def test_cosine_without_warmup() -> None:
    assert warmup_cosine(0, 100, 0, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 0, 0.5) == pytest.approx(0.0)


def test_lr_at_schedules() -> None:
    assert all(
        lr_at(s, schedule="constant", total_steps=50, base_lr=1e-3) == 1e-3 for s in range(60)
    )
    assert lr_at(0, schedule="constant", total_steps=50, base_lr=1.0, warmup_steps=4) == 0.25
    assert lr_at(10, schedule="constant", total_steps=50, base_lr=1.0, warmup_steps=4) == 1.0
    assert lr_at(
        30, schedule="cosine", total_steps=50, base_lr=1.0, warmup_steps=10
    ) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="constant"):
        lr_at(0, schedule="step", total_steps=50, base_lr=1.0)


@pytest.mark.parametrize(
    ("step", "total", "warmup", "base"), [(-1, 10, 0, 1.0), (0, 0, 0, 1.0), (0, 10, 11, 1.0)]
)
def test_schedule_rejects_bad_input(step: int, total: int, warmup: int, base: float) -> None:
    with pytest.raises(ValueError):
        warmup_cosine(step, total, warmup, base)


def test_scale_lr_and_set_lr() -> None:
    assert scale_lr(0.6, 2048) == pytest.approx(4.8)
    assert scale_lr(0.6, 256) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        scale_lr(0.6, 0)
    optimizer = build_optimizer("lars", _model(), lr=0.1, weight_decay=1e-6)
    set_lr(optimizer, 0.7)
    assert all(g["lr"] == 0.7 for g in optimizer.param_groups)
