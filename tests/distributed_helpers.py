"""Run a function in ``W`` gloo processes on CPU and collect what each rank returns.

A small harness for tests of the exactness rule (``W`` processes with ``B / W`` samples
each must match one process with ``B``)::

    def worker(rank: int, world_size: int, scale: float) -> dict[str, torch.Tensor]:
        ...  # a gloo process group is initialised here
        return {"loss": loss.detach()}

    results = run_distributed(worker, tmp_path, args=(2.0,))  # [rank 0's dict, rank 1's]

The worker must be a module-level function (it is pickled by reference into processes
started with ``spawn``), and what it returns must load with ``torch.load(...,
weights_only=True)``: tensors, numbers, strings, and lists/tuples/dicts of them.

Robustness: the rendezvous is a ``FileStore`` in a fresh directory under ``tmp_path``
(no fixed TCP port, so parallel test runs never collide); collectives time out inside the
workers; a worker that raises makes the call raise with its traceback; a worker that
hangs past ``timeout`` is terminated and the call raises ``TimeoutError``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DEFAULT_TIMEOUT_S = 240.0
COLLECTIVE_TIMEOUT_S = 120.0


def _entry(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    store_path: str,
    result_dir: str,
    args: Sequence[Any],
) -> None:
    """Body of every spawned process: join the group, run ``fn``, save its result."""
    # Two ranks on a 2-core machine: one intra-op thread each avoids oversubscription.
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group(
        backend="gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    try:
        result = fn(rank, world_size, *args)
        target = Path(result_dir) / f"rank{rank}.pt"
        partial = target.with_suffix(".tmp")
        torch.save(result, partial)
        os.replace(partial, target)  # the parent never reads a half-written file
    finally:
        dist.destroy_process_group()


def _stop(processes: Sequence[Any]) -> None:
    """Terminate, then kill, every process of ours that is still alive."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def run_distributed(
    fn: Callable[..., Any],
    tmp_path: Path,
    *,
    world_size: int = 2,
    args: Sequence[Any] = (),
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes on CPU.

    Args:
        fn: a module-level function; it runs with an initialised default process group.
        tmp_path: a directory for the rendezvous file and the results (pytest's
            ``tmp_path``); a fresh subdirectory is made per call.
        world_size: number of processes.
        args: extra picklable arguments passed to ``fn`` after ``rank, world_size``.
        timeout: seconds for the whole run before the workers are terminated.

    Returns:
        The values returned by ``fn``, indexed by rank.

    Raises:
        TimeoutError: a worker was still running after ``timeout`` seconds.
        torch.multiprocessing.ProcessRaisedException / ProcessExitedException: a worker
            failed (the message carries its traceback).
    """
    run_dir = Path(tempfile.mkdtemp(prefix="dist-", dir=tmp_path))
    store_path = str(run_dir / "store")
    context = mp.start_processes(
        _entry,
        args=(fn, world_size, store_path, str(run_dir), tuple(args)),
        nprocs=world_size,
        join=False,
        daemon=True,
        start_method="spawn",
    )
    assert context is not None
    deadline = time.monotonic() + timeout
    try:
        # Poll in short slices so the deadline is honoured; join raises if a worker failed.
        while not context.join(timeout=max(0.1, min(1.0, deadline - time.monotonic())), grace_period=5):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"distributed run of {fn.__name__} with {world_size} processes did not "
                    f"finish within {timeout:.0f} s; the workers were terminated"
                )
    finally:
        _stop(context.processes)

    results = []
    for rank in range(world_size):
        path = run_dir / f"rank{rank}.pt"
        if not path.exists():
            raise RuntimeError(f"rank {rank} of {fn.__name__} exited without writing {path}")
        results.append(torch.load(path, weights_only=True))
    return results
