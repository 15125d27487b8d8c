"""torch.distributed helpers: a gather that keeps gradients, and rank queries.

The reference MMCR code gathers other ranks' embeddings without gradient, so under
DistributedDataParallel every gradient is the true one divided by the world size.
:func:`gather_with_grad` fixes that: every rank computes the loss of the global batch,
and the backward pass returns to each rank ``W`` times the gradient of that loss with
respect to its own slice, which DDP's averaging over ``W`` ranks turns into exactly
the single-process gradient.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK), 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed() -> bool:
    """Initialise torch.distributed from torchrun's environment; False for a single process.

    NCCL where CUDA is available (each process on its local GPU), gloo otherwise.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 (equal sizes on every rank), differentiable.

    Backward: the incoming gradient of the concatenated tensor is summed over ranks
    (every rank computed the same global loss, so the sum is ``W`` times it) and each
    rank keeps its own slice.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ws = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank = dist.get_rank()
        ctx.size = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.size
        return grad[start : start + ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients exact.

    Every rank must pass the same shape. Without an initialised multi-rank process
    group this returns ``x`` unchanged.
    """
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(
            "gather_with_grad needs the same batch size on every rank, got "
            f"{[int(s) for s in sizes]}; use drop_last=True in the sampler"
        )
    out: torch.Tensor = _GatherWithGrad.apply(x)
    return out
