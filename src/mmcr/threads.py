"""torch's process-wide thread count, lowered to one around work on small matrices."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["one_torch_thread"]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous count.

    For loops over small matrices (eigenvalues of a few hundred rows, P x P optimisations):
    thread start-up and barriers cost more than they give there, much more when the cores
    are shared. The count is process-wide, so it is lowered only for the block.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
