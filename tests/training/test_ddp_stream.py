"""The streaming paths under data parallelism: 2 gloo processes, interrupted mid-epoch and resumed.

For an image-folder tree streamed by DataLoader workers and for webdataset shards split
over the ranks, a 2-process run interrupted in the middle of an epoch and resumed with 2
processes ends with the weights and the losses of the uninterrupted 2-process run, bit for
bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from mmcr.checkpoint import load_checkpoint
from mmcr.cli import main
from mmcr.config import build_config
from mmcr.training import loop as loop_module
from mmcr.training import pretrain

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
    from image_trees import TINY_DIGITS, make_tree
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]
    from tests.image_trees import TINY_DIGITS, make_tree  # type: ignore[no-redef]

pytestmark = pytest.mark.distributed

STOP_AT = 3  # steps done when the interrupted runs stop: inside epoch 1 (2 steps an epoch)


def recipe(kind: str, data: str, out: Path) -> dict[str, Any]:
    return {
        **TINY_DIGITS,
        "dataset": "imagefolder" if kind == "tree" else "webdataset",
        "augment": "imagenet",
        "data_dir": data,
        "cache_dir": str(out.parent / f"cache-{kind}"),
        "loader": "stream",
        "image_size": 16,
        "crop_size": 16,
        "encoder_width": 4,
        "batch_size": 8,  # 4 a rank
        "monitor_size": 16,
        "log_every": 1,
        "eval_every": 0,
        "num_workers": 0,
        "threads": 1,
        "out": str(out),
    }


class _Stop(KeyboardInterrupt):
    pass


def stream_worker(rank: int, world_size: int, root: str, sources: dict[str, str]) -> dict[str, Any]:
    base = Path(root)
    real_step = loop_module.train_step

    def interrupted(state: Any, *args: Any, **kwargs: Any) -> Any:
        if state.step == STOP_AT:
            raise _Stop("stopped for the test")
        return real_step(state, *args, **kwargs)

    for kind, data in sources.items():
        pretrain(build_config(None, recipe(kind, data, base / f"{kind}-straight")))
        loop_module.train_step = interrupted
        try:
            pretrain(build_config(None, recipe(kind, data, base / f"{kind}-stopped")))
        except _Stop:
            pass
        finally:
            loop_module.train_step = real_step
        dist.barrier()  # rank 0 has written the interrupted run's checkpoint
        pretrain(build_config(None, recipe(kind, data, base / f"{kind}-stopped")), resume=True)
    return {"world_size": world_size}


def losses(out: Path) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "step"]


@pytest.mark.parametrize("kind", ["tree", "shards"])
def test_two_processes_resume_a_streamed_run_mid_epoch_exactly(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    tree = make_tree(tmp_path / "tree", per_class=8)  # 24 train images, 22 after the held-out 2
    sources = {"tree": str(tree)}
    if kind == "shards":
        # 8 shards of 3: a rank is given 4, at least 10 kept samples, so 2 steps of 4 an epoch
        args = ["data", "pack", str(tree), str(tmp_path / "shards"), "--shard-size", "3", "--no-progress"]
        assert main(args) == 0
        sources = {"shards": str(tmp_path / "shards")}
    ranks = run_distributed(stream_worker, tmp_path, args=(str(tmp_path), sources), timeout=300.0)
    assert [r["world_size"] for r in ranks] == [2, 2]
    straight, stopped = tmp_path / f"{kind}-straight", tmp_path / f"{kind}-stopped"
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(stopped / "last.pt")
    assert a["step"] == b["step"] == 4 and b["reason"] == "end"
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert losses(straight) == losses(stopped) and len(losses(straight)) == 4
