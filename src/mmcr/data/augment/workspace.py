"""Scratch memory reused between batches by the batched augmentation on CPU."""

from __future__ import annotations

import math
import threading

import torch

__all__ = ["Workspace"]


class Workspace:
    """Named scratch tensors kept between calls.

    On CPU, fresh memory costs page faults that take about a third of the batched path's
    time; a buffer is reused whenever it is large enough. The lock serialises threads that
    share one module; pickling and deep copies get an empty workspace.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self.lock = threading.Lock()

    def get(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype`` on ``device``, reusing ``name``'s memory."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != dtype
            or buffer.device != device
        ):
            buffer = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        """Free every buffer."""
        self._buffers.clear()

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]
