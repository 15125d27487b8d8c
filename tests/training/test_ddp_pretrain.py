"""``pretrain`` under data parallelism: 2 gloo processes on CPU against 1 process.

What is checked, on scikit-learn's digits with a tiny ConvNet:

- A 2-process run completes; rank 0 alone writes config.json, metrics.jsonl and last.pt
  (counted in every rank), each step is logged once, and each rank's local batch is the
  contiguous ``rank``-th share of the global batch order.
- Exactness of the whole loop: 2 processes with 32 images each follow the trajectory of 1
  process with the 64 (the same loss at every step, the same weights at the end, to float
  tolerance), and a checkpoint resumes with any number of processes: 2 -> 2 continues the
  uninterrupted 2-process run bit for bit, 2 -> 1 continues it and 1 -> 2 continues the
  uninterrupted 1-process run, to float tolerance.
- The real launcher: ``torchrun --standalone --nproc_per_node=2 -m mmcr.cli pretrain``.

Two things make the plain loop's trajectory depend on the number of processes W, by
design, so the exactness runs switch them off (``exact_mode``): every step's views are
drawn from a generator seeded by (seed, step, rank), so the views of an image depend on
W; and batch norm normalises with each rank's local statistics (``sync_batchnorm`` fixes
that on GPUs; torch's SyncBatchNorm refuses CPU tensors). In exact mode an image's views
are seeded by its content, and the network's batch norms are replaced by identities;
what remains (gather with exact gradients, contiguous shards, DDP's gradient average,
optimiser, schedule, checkpoints) is the real code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

import mmcr.build as build_module
from mmcr.checkpoint import load_checkpoint
from mmcr.config import PretrainConfig, build_config
from mmcr.data import MultiViewAugment
from mmcr.training import loop as loop_module
from mmcr.training import pretrain
from mmcr.training import step as step_module

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
TIMEOUT_S = 300.0
BASE: dict[str, Any] = {
    "dataset": "digits",
    "augment": "digits",
    "encoder_width": 8,
    "projector_hidden": [32],
    "projector_dim": 16,
    "batch_size": 64,
    # 150 of the 1497 training digits: 2 steps of 64 per epoch, 6 steps in all (see EXACT)
    "val_fraction": 0.9,
    "epochs": 3,
    "log_every": 1,
    "eval_every": 0,
    "monitor_size": 128,
    "progress": False,
    "threads": 1,
}
# The exactness runs: SGD (its update is linear in the gradient, so float-level differences
# of the gradient stay float-level in the weights; Adam's first step is sign(g)). They are
# short on purpose: without batch norm this network's centroids start nearly collapsed, the
# nuclear norm's gradient U V^T is then very sensitive (it scales with 1 / sigma_min), and
# float rounding (even 1 vs 2 threads in one process) grows from 1e-7 at step 2 to 1e-3 by
# step 8 and 1e-2 by step 20. Over 6 steps it stays near 1e-6, well inside RTOL.
EXACT: dict[str, Any] = {**BASE, "optimizer": "sgd", "lr": 0.05, "schedule": "constant"}
RTOL = 1e-4  # losses; measured differences are about 1e-6
WEIGHT_RTOL = 1e-3  # weights, relative to each tensor's largest entry; measured up to 1.4e-5
STEPS_PER_EPOCH = 150 // 64
TOTAL_STEPS = 3 * STEPS_PER_EPOCH


def config(out: Path, base: dict[str, Any], **overrides: Any) -> PretrainConfig:
    return build_config(None, {**base, "out": str(out), **overrides})


# ----------------------------------------------------------------------------- exact mode


class RankFreeAugment(MultiViewAugment):
    """The real augmentation, with each image's generator seeded by the image's content.

    The views of an image are then the same whichever rank and batch position it has.
    """

    def forward(
        self, images: torch.Tensor, num_views: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        weights = torch.arange(1, images[0].numel() + 1, dtype=torch.int64).view_as(images[0])
        views = []
        for image in images:
            seed = int((image.to(torch.int64) * weights).sum()) % (2**31)
            own = torch.Generator().manual_seed(seed)
            views.append(super().forward(image[None], num_views, generator=own))
        return torch.cat(views)


_REAL_BUILD_NETWORK = step_module.build_network


def network_without_batch_norm(cfg: PretrainConfig, in_channels: int) -> nn.Module:
    network = _REAL_BUILD_NETWORK(cfg, in_channels)
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return network


@contextmanager
def patched(target: Any, **attributes: Any) -> Iterator[None]:
    saved = {name: getattr(target, name) for name in attributes}
    for name, value in attributes.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(target, name, value)


@contextmanager
def exact_mode() -> Iterator[None]:
    with (
        patched(loop_module, MultiViewAugment=RankFreeAugment),
        patched(step_module, build_network=network_without_batch_norm),
    ):
        yield


# ----------------------------------------------------------------------------- the 2-process side


def _plain_run_counting_writes(out: Path) -> dict[str, Any]:
    """A plain run (real views, batch norm, Adam) that counts what this rank writes."""
    counts = {"checkpoints": 0, "configs": 0, "metric_records": 0}
    seen: list[torch.Tensor] = []
    real_save = build_module.save_checkpoint
    real_config_save = PretrainConfig.save
    real_write = loop_module.MetricsLog.write

    def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
        counts["checkpoints"] += 1
        return real_save(state, path)

    def config_save(self: PretrainConfig, path: Path) -> None:
        counts["configs"] += 1
        real_config_save(self, path)

    def write(self: Any, record: dict[str, Any]) -> None:
        if self.enabled:
            counts["metric_records"] += 1
        real_write(self, record)

    class RecordingAugment(MultiViewAugment):
        def forward(
            self, images: torch.Tensor, num_views: int, generator: torch.Generator | None = None
        ) -> torch.Tensor:
            if not seen:  # the first call is step 0's local batch
                seen.append(images.clone())
            return super().forward(images, num_views, generator)

    with (
        patched(build_module, save_checkpoint=save_checkpoint),
        patched(loop_module, MultiViewAugment=RecordingAugment),
        patched(PretrainConfig, save=config_save),
        patched(loop_module.MetricsLog, write=write),
    ):
        ckpt = pretrain(config(out, BASE))
    return {**counts, "checkpoint": str(ckpt), "step0_images": seen[0]}


def ddp_worker(rank: int, world_size: int, root: str) -> dict[str, Any]:
    """Every 2-process scenario, one after the other, in one spawn of the process group."""
    base = Path(root)
    result = _plain_run_counting_writes(base / "plain2")
    with exact_mode():
        pretrain(config(base / "exact2", EXACT))
        # stop after epoch 1; keep a copy for the parent's 1-process resume; resume with 2
        pretrain(config(base / "stop2", EXACT, stop_at_epoch=1))
        if rank == 0:
            shutil.copytree(base / "stop2", base / "stop2_resume1")
        dist.barrier()
        pretrain(config(base / "stop2", EXACT), resume=True)
        # a checkpoint written by 1 process (the parent, before the spawn), resumed by 2
        pretrain(config(base / "stop1", EXACT), resume=True)
    result["world_size"] = world_size
    return result


# ----------------------------------------------------------------------------- the comparisons


def step_losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1)), "each step logged once"
    return [r["loss"] for r in steps]


def assert_same_trajectory(actual: Path, expected: Path, exact: bool = False) -> None:
    """Same losses at every step and the same final weights (bit for bit, or to tolerance)."""
    a, b = step_losses(actual), step_losses(expected)
    assert len(a) == len(b)
    if exact:
        assert a == b
    else:
        assert a == pytest.approx(b, rel=RTOL)
    state_a, state_b = load_checkpoint(actual / "last.pt"), load_checkpoint(expected / "last.pt")
    assert state_a["step"] == state_b["step"] == len(b)
    for key, value in state_b["model"].items():
        other = state_a["model"][key]
        if exact:
            assert torch.equal(other, value), key
        elif value.is_floating_point():
            scale = value.abs().max().clamp_min(1e-12)
            assert float((other - value).abs().max() / scale) <= WEIGHT_RTOL, key


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """The 1-process references, then one 2-process spawn, then the 2 -> 1 resume."""
    root = tmp_path_factory.mktemp("ddp_pretrain")
    threads = torch.get_num_threads()
    try:
        with exact_mode():
            pretrain(config(root / "exact1", EXACT))
            pretrain(config(root / "stop1", EXACT, stop_at_epoch=1))
            shutil.copytree(root / "stop1", root / "stop1_checkpoint")
        ranks: list[dict[str, Any]] = run_distributed(
            ddp_worker, root, world_size=WORLD_SIZE, args=(str(root),), timeout=TIMEOUT_S
        )
        with exact_mode():
            pretrain(config(root / "stop2_resume1", EXACT), resume=True)
    finally:
        torch.set_num_threads(threads)
    yield root, ranks


def test_two_processes_complete_and_rank0_alone_writes(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    root, ranks = runs
    out = root / "plain2"
    assert [r["world_size"] for r in ranks] == [WORLD_SIZE] * WORLD_SIZE
    assert all(Path(r["checkpoint"]) == out / "last.pt" for r in ranks)
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "last.pt"}
    losses = step_losses(out)
    assert len(losses) == TOTAL_STEPS and all(torch.isfinite(torch.tensor(losses)))
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == TOTAL_STEPS and state["reason"] == "end"
    assert ranks[0]["checkpoints"] == 3 and ranks[0]["configs"] == 1  # one per epoch
    assert ranks[0]["metric_records"] == len(out.joinpath("metrics.jsonl").read_text().splitlines())
    assert ranks[1]["checkpoints"] == ranks[1]["configs"] == ranks[1]["metric_records"] == 0


def test_each_rank_takes_its_contiguous_share_of_the_global_batch(
    runs: tuple[Path, list[dict[str, Any]]],
) -> None:
    root, ranks = runs
    cfg = config(root / "plain2", BASE)
    data = build_module.load_data(cfg)
    order = step_module.epoch_order(cfg.seed, 0, len(data.train))
    batch = order[: cfg.batch_size]
    local = cfg.batch_size // WORLD_SIZE
    for rank, result in enumerate(ranks):
        expected = data.train.images[batch[rank * local : (rank + 1) * local]]
        assert torch.equal(result["step0_images"], expected), f"rank {rank}"


def test_two_processes_follow_the_one_process_trajectory(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    """Same global batch -> same loss at step 1 and every step after, same weights."""
    root, _ = runs
    assert_same_trajectory(root / "exact2", root / "exact1")


def test_resume_with_the_same_world_size_is_exact(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    root, _ = runs
    assert_same_trajectory(root / "stop2", root / "exact2", exact=True)


def test_resume_a_two_process_checkpoint_with_one_process(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    """2 processes to epoch 1, then 1 process: the uninterrupted 2-process trajectory."""
    root, _ = runs
    assert_same_trajectory(root / "stop2_resume1", root / "exact2")


def test_resume_a_one_process_checkpoint_with_two_processes(runs: tuple[Path, list[dict[str, Any]]]) -> None:
    """1 process to epoch 1, then 2 processes: the uninterrupted 1-process trajectory."""
    root, _ = runs
    assert load_checkpoint(root / "stop1_checkpoint" / "last.pt")["step"] == STEPS_PER_EPOCH
    assert_same_trajectory(root / "stop1", root / "exact1")


def test_torchrun_launch_of_the_cli(tmp_path: Path) -> None:
    """The real launcher: env:// rendezvous on a free port (--standalone), 2 processes."""
    out = tmp_path / "torchrun"
    flags = {**BASE, "max_steps": 3, "out": str(out)}
    args: list[str] = []
    for key, value in flags.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        "-m",
        "mmcr.cli",
        "pretrain",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = _run(command, env, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    config_lines = [line for line in done.stdout.splitlines() if line.startswith('{"config"')]
    assert len(config_lines) == 1, "rank 0 alone prints the resolved configuration"
    assert json.loads(config_lines[0])["world_size"] == WORLD_SIZE
    assert step_losses(out) and len(step_losses(out)) == 3
    assert load_checkpoint(out / "last.pt")["step"] == 3


def _run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run that kills the launcher's whole process group on a timeout."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        pytest.fail(f"torchrun did not finish within {timeout:.0f} s: {' '.join(command)}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
