"""Optimisers and learning-rate schedules for pretraining.

- :class:`LARS`: SGD with momentum and a layer-wise trust ratio (You et al., 2017), the
  reference's ImageNet optimiser (``lr = 0.6 x B / 256`` via :func:`scale_lr`, wd 1e-6,
  10 warm-up epochs then cosine via :func:`warmup_cosine`).
- :func:`build_optimizer`: ``"adam"`` (the CIFAR/STL recipe: 1e-3, wd 1e-6, constant
  lr), ``"adamw"``, ``"sgd"``, ``"lars"``; weight decay applies to weights only
  (:func:`param_groups`).
- :func:`lr_at` / :func:`set_lr`: a schedule by name, evaluated each step.

>>> import torch
>>> from mmcr.optim import build_optimizer, lr_at, scale_lr, set_lr
>>> model = torch.nn.Linear(8, 4)
>>> base_lr = scale_lr(0.6, batch_size=512)          # 1.2
>>> optimizer = build_optimizer("lars", model, lr=base_lr, weight_decay=1e-6)
>>> for step in range(100):
...     set_lr(optimizer, lr_at(step, schedule="cosine", total_steps=100,
...                             warmup_steps=10, base_lr=base_lr))
...     # forward, backward, optimizer.step(), optimizer.zero_grad()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw", "lars", "sgd")
"""Names accepted by :func:`build_optimizer`."""

SCHEDULES = ("constant", "cosine")
"""Names accepted by :func:`lr_at`."""


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise adaptive trust ratio (LARS).

    For a parameter tensor ``w`` with gradient ``g`` in a group that is not excluded::

        trust = eta * ||w|| / (||g|| + wd * ||w||)   if ||w|| > 0 and ||g|| > 0, else 1
        d     = trust * (g + wd * w)
        buf   = momentum * buf + d                   (buf = d at the first step)
        w     = w - lr * buf                         (d + momentum * buf if nesterov)

    Groups flagged ``lars_exclude=True`` (biases and normalisation parameters; see
    :func:`param_groups`) get neither weight decay nor the trust ratio: plain momentum
    SGD, ``buf = momentum * buf + g``, ``w = w - lr * buf``.

    Args:
        params: parameters or parameter groups (dicts; a group may set ``lars_exclude``).
        lr: learning rate.
        momentum: momentum factor in ``[0, 1)``.
        weight_decay: L2 penalty folded into the update (not applied to excluded groups).
        eta: trust coefficient.
        nesterov: use Nesterov momentum.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"LARS needs a non-negative learning rate, got lr={lr}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS needs momentum in [0, 1), got momentum={momentum}.")
        if not weight_decay >= 0.0:
            raise ValueError(f"LARS needs weight_decay >= 0, got weight_decay={weight_decay}.")
        if not eta > 0.0:
            raise ValueError(f"LARS needs a positive trust coefficient, got eta={eta}.")
        if nesterov and momentum == 0.0:
            raise ValueError("LARS with nesterov=True needs a positive momentum.")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "nesterov": nesterov,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            weight_decay = group["weight_decay"]
            eta = group["eta"]
            exclude = group["lars_exclude"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.is_sparse:
                    raise ValueError("LARS does not support sparse gradients.")
                if exclude:
                    update = grad
                else:
                    param_norm = torch.linalg.vector_norm(param)
                    grad_norm = torch.linalg.vector_norm(grad)
                    # Tensor arithmetic throughout: no host synchronisation on a GPU.
                    trust = torch.where(
                        (param_norm > 0) & (grad_norm > 0),
                        eta * param_norm / (grad_norm + weight_decay * param_norm),
                        torch.ones_like(param_norm),
                    )
                    update = grad.add(param, alpha=weight_decay).mul_(trust)
                if momentum != 0.0:
                    state = self.state[param]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = update.detach().clone()
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(momentum).add_(update)
                    update = update.add(buf, alpha=momentum) if group["nesterov"] else buf
                param.add_(update, alpha=-lr)
        return loss


def param_groups(
    model_or_params: nn.Module | Iterable[torch.Tensor], weight_decay: float
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and an excluded group.

    Weights (``ndim > 1``: convolution and linear matrices) get ``weight_decay``;
    biases and normalisation parameters (``ndim <= 1``) get ``weight_decay = 0`` and
    ``lars_exclude = True`` (no LARS trust ratio either). Parameters with
    ``requires_grad = False`` (a frozen or EMA copy) are left out; shared parameters
    appear once. Empty groups are dropped.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}.")
    params = (
        model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    )
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    seen: set[int] = set()
    for param in params:
        if not isinstance(param, torch.Tensor):
            raise ValueError(
                "param_groups takes a module or an iterable of parameter tensors, "
                f"got an element of type {type(param).__name__}."
            )
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("There are no trainable parameters (none with requires_grad=True).")
    return groups


def build_optimizer(
    name: str,
    params_or_model: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    *,
    eta: float = 0.001,
) -> torch.optim.Optimizer:
    """Build ``"adam"``, ``"adamw"``, ``"sgd"`` (momentum) or ``"lars"`` by name.

    A module or an iterable of tensors is split by :func:`param_groups` (no weight decay
    and no LARS adaptation for biases and normalisation parameters); an iterable of
    group dicts is passed through unchanged. ``momentum`` is used by SGD and LARS,
    ``betas`` by Adam and AdamW, ``eta`` by LARS.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if not lr >= 0.0:
        raise ValueError(f"lr must be non-negative, got {lr}.")
    items: list[Any] = (
        [params_or_model] if isinstance(params_or_model, nn.Module) else list(params_or_model)
    )
    groups: list[dict[str, Any]]
    if items and all(isinstance(item, dict) for item in items):
        groups = items
    elif len(items) == 1 and isinstance(items[0], nn.Module):
        groups = param_groups(items[0], weight_decay)
    else:
        groups = param_groups(items, weight_decay)
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)


def _check_schedule(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must lie in [0, total_steps={total_steps}], got {warmup_steps}."
        )
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}.")
    if not base_lr >= 0.0:
        raise ValueError(f"base_lr must be non-negative, got {base_lr}.")


def _warmup(step: int, warmup_steps: int, base_lr: float) -> float:
    # Step 0 gets base_lr / warmup_steps, step warmup_steps - 1 gets base_lr.
    return base_lr * (step + 1) / warmup_steps


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, final_lr: float = 0.0
) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine decay.

    ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (from about 0 to
    ``base_lr``); then ``final_lr + (base_lr - final_lr) (1 + cos(pi t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)``, so ``base_lr`` at the end
    of warm-up and ``final_lr`` at ``step = total_steps`` and after.
    """
    _check_schedule(step, total_steps, warmup_steps, base_lr)
    if step < warmup_steps:
        return _warmup(step, warmup_steps, base_lr)
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:
        return final_lr
    progress = min(step - warmup_steps, decay_steps) / decay_steps
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(
    step: int,
    *,
    schedule: str,
    total_steps: int,
    base_lr: float,
    warmup_steps: int = 0,
    final_lr: float = 0.0,
) -> float:
    """Learning rate at ``step`` for a schedule named in :data:`SCHEDULES`.

    ``"constant"``: linear warm-up (if any), then ``base_lr`` (the CIFAR/STL recipe, with
    no warm-up); ``"cosine"``: :func:`warmup_cosine`.
    """
    if schedule == "cosine":
        return warmup_cosine(step, total_steps, warmup_steps, base_lr, final_lr)
    if schedule == "constant":
        _check_schedule(step, total_steps, warmup_steps, base_lr)
        return _warmup(step, warmup_steps, base_lr) if step < warmup_steps else base_lr
    raise ValueError(
        f"unknown learning-rate schedule {schedule!r}; valid: {', '.join(SCHEDULES)}"
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def scale_lr(base_lr: float, batch_size: int, reference: int = 256) -> float:
    """The linear scaling rule: ``base_lr * batch_size / reference``.

    The reference's LARS recipe is ``scale_lr(0.6, B)``, i.e. ``lr = 0.6 x B / 256``.
    """
    if batch_size < 1 or reference < 1:
        raise ValueError(
            f"batch_size and reference must be positive, got {batch_size} and {reference}."
        )
    return base_lr * batch_size / reference
