"""Paired image-text pretraining under data parallelism: 2 gloo processes on CPU against 1.

- Exactness: on a tiny image-caption table held in memory, 2 processes with 2 pairs each
  follow the trajectory of 1 process with the 4 (the same loss at every step and the same
  weights at the end, to float tolerance), for the objectives mmcr and clip. A datum's
  image views are drawn from the global batch's augmentation parameters and its captions
  from (seed, epoch, datum), so nothing but batch norm depends on the number of processes;
  as in tests/training/test_ddp_pretrain.py the exactness runs replace the batch norms by
  identities (torch's SyncBatchNorm refuses CPU tensors).
- Rank 0 alone writes the run folder; each step is logged once.
- A 2-process run stopped after epoch 1 and resumed with 2 processes ends bit for bit where
  the uninterrupted one does; so does a run streamed from paired webdataset shards, split
  over the ranks and interrupted in the middle of an epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from mmcr.checkpoint import load_checkpoint
from mmcr.config import PretrainConfig, build_config
from mmcr.data.paired import PairedDataset
from mmcr.data.stream.paired_shards import write_paired_shards
from mmcr.training import paired as paired_module
from mmcr.training import pretrain

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
    from paired_helpers import TINY_PAIRED_RUN, TINY_TOWERS, write_shapes_corpus
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]
    from tests.paired_helpers import (  # type: ignore[no-redef]
        TINY_PAIRED_RUN,
        TINY_TOWERS,
        write_shapes_corpus,
    )

pytest.importorskip("tokenizers")
pytestmark = pytest.mark.distributed

RTOL = 1e-4  # losses
WEIGHT_RTOL = 1e-3  # weights, relative to each tensor's largest entry
STOP_AT = 3  # the interrupted shard run stops here, inside its first epoch


def write_shards(root: Path) -> Path:
    """32 pairs of random images and two captions each, in 8 shards of 4."""
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (32, 3, 20, 20), generator=generator, dtype=torch.uint8)
    captions = [[f"picture {i} of {n}", f"{n} colour number {i % 5}"] for i, n in enumerate(range(32))]
    data = PairedDataset(images=images, captions=captions, name="toy", keys=[str(i) for i in range(32)])
    write_paired_shards(data, root / "train", shard_size=4)
    return root


#: The flags of every run here but ``data_dir`` and ``out``: no ``max_steps``, 3 epochs of 2 steps
BASE: dict[str, Any] = {
    "dataset": "csv",
    "paired": True,
    "encoder": "convnet",
    **TINY_TOWERS,
    "image_views": 2,
    "text_views": 2,
    **{key: value for key, value in TINY_PAIRED_RUN.items() if key != "max_steps"},
    "batch_size": 4,  # 2 steps an epoch of the 8 pairs
    "epochs": 3,
    # SGD: its update is linear in the gradient, so float-level differences stay float-level
    "optimizer": "sgd",
    "lr": 0.05,
    "schedule": "constant",
}


def config(data: str, out: Path, **overrides: Any) -> PretrainConfig:
    return build_config(None, {**BASE, "data_dir": data, "out": str(out), **overrides})


def shard_config(data: str, out: Path) -> PretrainConfig:
    # 8 shards: a rank reads 4, 16 pairs, 4 steps of 4 (8 a step over both ranks)
    return config(
        data,
        out,
        dataset="webdataset",
        batch_size=8,
        epochs=2,
        max_steps=6,
        num_workers=0,
        cache_dir=str(out.parent / "cache"),
        objective="clip",
    )


_REAL_BUILD = paired_module.build_paired_network


def network_without_batch_norm(*args: Any, **kwargs: Any) -> nn.Module:
    network = _REAL_BUILD(*args, **kwargs)
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return network


class _Stop(KeyboardInterrupt):
    pass


def exact_runs(data: str, base: Path, suffix: str) -> None:
    """The exactness runs: mmcr and clip straight, and mmcr stopped after epoch 1 then resumed."""
    paired_module.build_paired_network = network_without_batch_norm  # type: ignore[assignment]
    try:
        for objective in ("mmcr", "clip"):
            pretrain(config(data, base / f"{objective}{suffix}", objective=objective))
        if suffix == "2":
            pretrain(config(data, base / "stop2", stop_at_epoch=1))
            dist.barrier()
            pretrain(config(data, base / "stop2"), resume=True)
    finally:
        paired_module.build_paired_network = _REAL_BUILD  # type: ignore[assignment]


def worker(rank: int, world_size: int, data: str, shards: str, root: str) -> dict[str, Any]:
    base = Path(root)
    exact_runs(data, base, "2")
    pretrain(shard_config(shards, base / "shards-straight"))
    real_step = paired_module.paired_train_step

    def interrupted(state: Any, batch: Any) -> Any:
        if state.step == STOP_AT:
            raise _Stop("stopped for the test")
        return real_step(state, batch)

    paired_module.paired_train_step = interrupted  # type: ignore[assignment]
    try:
        pretrain(shard_config(shards, base / "shards-stopped"))
    except _Stop:
        pass
    finally:
        paired_module.paired_train_step = real_step  # type: ignore[assignment]
    dist.barrier()  # rank 0 has written the interrupted run's checkpoint
    pretrain(shard_config(shards, base / "shards-stopped"), resume=True)
    return {"world_size": world_size}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp_paired")
    data = str(write_shapes_corpus(root / "corpus"))
    shards = str(write_shards(root / "shards"))
    threads = torch.get_num_threads()
    try:
        exact_runs(data, root, "1")
        ranks = run_distributed(worker, root, world_size=2, args=(data, shards, str(root)), timeout=400.0)
    finally:
        torch.set_num_threads(threads)
    assert [r["world_size"] for r in ranks] == [2, 2]
    return root


def step_losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1)), "each step logged once"
    return [r["loss"] for r in steps]


def assert_same_weights(a: Path, b: Path, exact: bool) -> None:
    state_a, state_b = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert state_a["step"] == state_b["step"]
    assert state_a["model"].keys() == state_b["model"].keys()
    for key, value in state_b["model"].items():
        other = state_a["model"][key]
        if exact or not value.is_floating_point():
            assert torch.equal(other, value), key
        else:
            scale = value.abs().max().clamp_min(1e-12)
            assert float((other - value).abs().max() / scale) <= WEIGHT_RTOL, key


@pytest.mark.parametrize("objective", ["mmcr", "clip"])
def test_two_processes_follow_the_one_process_trajectory(runs: Path, objective: str) -> None:
    one, two = runs / f"{objective}1", runs / f"{objective}2"
    losses = step_losses(one)
    assert len(losses) == 6
    assert step_losses(two) == pytest.approx(losses, rel=RTOL)
    assert len(set(losses)) > 1  # the towers moved: not a comparison of two untouched networks
    assert_same_weights(two, one, exact=False)


def test_rank0_alone_writes_the_run_folder(runs: Path) -> None:
    out = runs / "clip2"
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "last.pt"}
    assert load_checkpoint(out / "last.pt")["reason"] == "end"


def test_a_resumed_two_process_run_is_bitwise_the_uninterrupted_one(runs: Path) -> None:
    assert step_losses(runs / "stop2") == step_losses(runs / "mmcr2")
    assert_same_weights(runs / "stop2", runs / "mmcr2", exact=True)


def test_streamed_shards_resume_mid_epoch_bitwise(runs: Path) -> None:
    straight, stopped = runs / "shards-straight", runs / "shards-stopped"
    assert load_checkpoint(stopped / "last.pt")["reason"] == "end"
    assert step_losses(straight) == step_losses(stopped) and len(step_losses(straight)) == 6
    assert_same_weights(stopped, straight, exact=True)


def test_torchrun_launch_of_paired_pretraining(tmp_path: Path) -> None:
    """The real launcher: ``torchrun --standalone --nproc_per_node=2 -m mmcr.cli pretrain``."""
    import os
    import subprocess
    import sys

    data = write_shapes_corpus(tmp_path / "corpus")
    out = tmp_path / "torchrun"
    flags = {**BASE, "data_dir": str(data), "max_steps": 2, "objective": "clip", "out": str(out)}
    args: list[str] = []
    for key, value in flags.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "mmcr.cli", "pretrain", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        pytest.fail("torchrun did not finish within 300 s")
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "2 process(es)" in stderr and stderr.count("training pairs") == 1  # rank 0 alone reports
    assert len(step_losses(out)) == 2
    assert load_checkpoint(out / "last.pt")["step"] == 2
