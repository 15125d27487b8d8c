"""The momentum (exponential moving average) encoder of MMCR's ImageNet variant.

An EMA copy of the online backbone and projector sees the same views as the online
network; its outputs are constants (no gradient flows into it), and after every
optimiser step its parameters move towards the online ones:
``ema = tau * ema + (1 - tau) * online``. Buffers (BatchNorm running statistics) are
copied from the online network. ``tau = 0.99`` every step in the reference; BYOL's
cosine schedule :func:`cosine_tau` raises tau from ``base_tau`` to ``final_tau``.

>>> import torch
>>> from torch import nn
>>> from mmcr.models import MomentumEncoder
>>> online = nn.Linear(4, 2)
>>> ema = MomentumEncoder(online)
>>> z = ema(torch.randn(3, 4))           # computed without autograd
>>> ema.update(online, tau=0.99)         # after each optimiser step
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def _unwrap(module: nn.Module) -> nn.Module:
    # DistributedDataParallel (and DataParallel) keep the network in `.module`; their
    # parameter names carry a "module." prefix that the EMA copy does not have.
    if isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return module.module
    return module


class MomentumEncoder(nn.Module):
    """A frozen deep copy of a network, updated as an exponential moving average.

    Args:
        online: the network to copy (an encoder, a projector, or an
            :class:`~mmcr.models.MMCRNetwork`); a DDP wrapper is unwrapped.

    The copy's parameters have ``requires_grad = False``; :meth:`forward` runs under
    ``torch.no_grad()`` and returns whatever the copied network returns. The copy follows
    ``train()`` / ``eval()`` like any submodule. Its state is part of ``state_dict()``, so
    checkpoints carry it.
    """

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(_unwrap(online))
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the EMA network without building an autograd graph."""
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, tau: float) -> None:
        """Move the EMA parameters towards ``online``: ``ema = tau ema + (1 - tau) online``.

        Buffers (BatchNorm running mean, variance and batch count) are copied. ``tau = 1``
        leaves the parameters unchanged, ``tau = 0`` copies them.
        """
        tau = float(tau)
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must lie in [0, 1], got {tau}.")
        online = _unwrap(online)
        ema_params = dict(self.module.named_parameters())
        online_params = dict(online.named_parameters())
        if ema_params.keys() != online_params.keys():
            raise ValueError(
                "The online network's parameters do not match the EMA copy's: "
                f"missing {sorted(ema_params.keys() - online_params.keys())[:5]}, "
                f"unexpected {sorted(online_params.keys() - ema_params.keys())[:5]}."
            )
        names = list(ema_params)
        targets: list[torch.Tensor] = [ema_params[n] for n in names]
        sources = [online_params[n].detach().to(ema_params[n].dtype) for n in names]
        if targets:
            torch._foreach_mul_(targets, tau)
            torch._foreach_add_(targets, sources, alpha=1.0 - tau)
        ema_buffers = dict(self.module.named_buffers())
        online_buffers = dict(online.named_buffers())
        if ema_buffers.keys() != online_buffers.keys():
            raise ValueError(
                "The online network's buffers do not match the EMA copy's: "
                f"missing {sorted(ema_buffers.keys() - online_buffers.keys())[:5]}, "
                f"unexpected {sorted(online_buffers.keys() - ema_buffers.keys())[:5]}."
            )
        for name, buffer in ema_buffers.items():
            buffer.copy_(online_buffers[name])


def cosine_tau(
    step: int, total_steps: int, base_tau: float = 0.99, final_tau: float = 1.0
) -> float:
    """BYOL's EMA rate schedule: ``final - (final - base) (cos(pi step / total) + 1) / 2``.

    ``base_tau`` at step 0, rising to ``final_tau`` at ``step = total_steps`` (steps past
    the end stay at ``final_tau``).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps}.")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}.")
    if not (0.0 <= base_tau <= 1.0 and 0.0 <= final_tau <= 1.0):
        raise ValueError(
            f"base_tau and final_tau must lie in [0, 1], got {base_tau} and {final_tau}."
        )
    progress = min(step, total_steps) / total_steps
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * progress) + 1.0) / 2.0
