"""The contract of every objective, and the input checks and helpers they share.

Every objective in :mod:`mmcr.objectives` is an :class:`Objective`: it takes ``z`` of
shape ``(B, K, D)``, the raw projector outputs of ``B`` samples with ``K`` views each, and
returns a scalar loss.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn


class Objective(nn.Module):
    """Base class of the objectives: ``(B, K, D)`` in, a scalar loss out.

    Class attributes:
        name: the registered name (``"mmcr"``, ``"simclr"``, ...) that recipes use.
        min_views: the fewest views per sample the objective accepts.
        uses_momentum: whether ``forward`` takes a second ``(B, K, D)`` argument, the same
            views through a momentum (EMA) network; the training loop then keeps one.
        uses_labels: whether ``forward`` takes ``labels=``, the ``(B,)`` int64 class labels
            of the samples. The training step then passes every batch's labels with its
            views, and :meth:`bind_classes` receives the data set's class names once,
            before the first step. Only such an objective sees labels; the others are
            self-supervised.

    After each call, :attr:`components` holds detached scalar tensors for logging
    (``"loss"`` and the objective's own terms).
    """

    name: ClassVar[str] = ""
    min_views: ClassVar[int] = 1
    uses_momentum: ClassVar[bool] = False
    uses_labels: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._components: dict[str, torch.Tensor] = {}

    @property
    def components(self) -> dict[str, torch.Tensor]:
        """Detached scalar terms of the last call (empty before the first)."""
        return self._components

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - the contract
        raise NotImplementedError

    def bind_classes(
        self, names: Sequence[str | None] | None, num_classes: int, *, dataset: str = ""
    ) -> None:
        """Receive the training data's classes before the first step (objectives with ``uses_labels``).

        ``names`` are the class names indexed by label (``None`` where the data set has
        none), ``num_classes`` their count and ``dataset`` the data set's name. The
        default does nothing.
        """


def check_coefficient(name: str, value: float, *, positive: bool = False, note: str = "") -> float:
    """Return ``value`` as a float if it is finite and ``>= 0`` (``> 0`` with ``positive``).

    Otherwise raise ``ValueError`` naming the hyper-parameter, the rule and the value, followed
    by ``note`` (why the rule holds, or the usual values).
    """
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}{'; ' + note if note else ''}")
    return float(value)


def check_views(z: torch.Tensor, *, min_views: int = 1, name: str = "z", finite: bool = True) -> None:
    """Validate a ``(B, K, D)`` tensor of multi-view embeddings.

    Raises ``ValueError`` with a sentence naming what was expected and what came:
    wrong type or number of dimensions, fewer than two samples, fewer than
    ``min_views`` views, an empty embedding dimension, or non-finite values (which
    are never dropped silently; ``finite=False`` leaves that test to the caller).
    """
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, K, D), got {type(z).__name__}")
    if z.ndim != 3:
        raise ValueError(
            f"{name} must have shape (B, K, D) = (samples, views, embedding dim), "
            f"got {z.ndim} dimension(s) with shape {tuple(z.shape)}"
        )
    b, k, d = z.shape
    if b < 2:
        raise ValueError(f"{name} needs at least B = 2 samples, got B = {b} (shape {tuple(z.shape)})")
    if k < min_views:
        raise ValueError(
            f"{name} needs at least K = {min_views} view(s) per sample, got K = {k} (shape {tuple(z.shape)})"
        )
    if d < 1:
        raise ValueError(f"{name} needs an embedding dimension D >= 1, got D = {d}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if finite:
        check_finite(z, name=name)


class NonFiniteError(ValueError):
    """Embeddings that hold NaN or infinite values (they are never dropped)."""

    def __init__(
        self, name: str, bad: int, numel: int, shape: tuple[int, ...], step: int | None = None
    ) -> None:
        self.name, self.bad, self.numel, self.shape, self.step = name, bad, numel, shape, step
        where = f" at step {step}" if step is not None else ""
        super().__init__(
            f"{name}: the embeddings are non-finite{where}: {bad} of {numel} values are "
            f"NaN or infinite (shape {shape}); they are not dropped. Lower the "
            "learning rate, check the input data, or disable bf16 autocast."
        )

    def at(self, step: int, name: str | None = None) -> NonFiniteError:
        """The same error, naming the training step (and what the values are)."""
        return NonFiniteError(name or self.name, self.bad, self.numel, self.shape, step)


def check_finite(x: torch.Tensor, *, name: str = "z", step: int | None = None) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or infinite values, naming the count.

    ``step`` (a training step) is included in the message when given.
    """
    # NaN and inf propagate into the sum: one reduction and one scalar test in the common
    # case; the full count only when it fails (a finite overflow of the sum then passes)
    if bool(torch.isfinite(x.sum())):
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise NonFiniteError(name, int((~finite).sum()), x.numel(), tuple(x.shape), step)


def normalize_views(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise every view of ``z`` (last dimension) onto the unit sphere."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)


def spectral_dtype(z: torch.Tensor) -> torch.dtype:
    """The dtype in which spectral work runs: at least float32 (half/bf16 are promoted)."""
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager[object]:
    """A context that switches a caller's autocast off for ``x``'s device (a no-op otherwise)."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
