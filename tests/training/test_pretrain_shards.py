"""Pretraining on webdataset shards: packed from a tree, streamed by workers, resumed exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcr.build import Checkpoint, choose_loader, load_data
from mmcr.checkpoint import load_checkpoint
from mmcr.cli import main
from mmcr.config import build_config
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.training import loop as loop_module
from mmcr.training import pretrain

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import TINY_DIGITS, make_tree
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import TINY_DIGITS, make_tree  # type: ignore[no-redef]

pytest.importorskip("webdataset")


def pack(tree: Path, dest: Path, split: str, shard_size: int) -> None:
    args = ["data", "pack", str(tree), str(dest / split), "--split", split, "--shard-size", str(shard_size)]
    assert main([*args, "--no-progress"]) == 0


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """24 train samples in 8 shards of 3 (22 pretrained on, 2 held out), 12 test in 3 shards."""
    tree = make_tree(tmp_path / "tree", per_class=8)
    root = tmp_path / "shards"
    pack(tree, root, "train", 3)
    pack(tree, root, "test", 4)
    return root


def recipe(shards: Path, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        **TINY_DIGITS,
        "dataset": "webdataset",
        "augment": "imagenet",
        "data_dir": str(shards),
        "cache_dir": str(tmp_path / "cache"),
        "loader": "stream",
        "crop_size": 16,
        "encoder_width": 4,
        "batch_size": 6,  # 22 samples: 3 steps an epoch
        "monitor_size": 16,
        "log_every": 1,
        "num_workers": 2,
        **overrides,
    }


def step_records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "step"]


def test_pretrain_streams_the_shards_and_writes_metrics_and_a_checkpoint(
    shards: Path, tmp_path: Path
) -> None:
    cfg = build_config(None, recipe(shards, tmp_path, out=str(tmp_path / "run"), epochs=1))
    assert choose_loader(cfg) == "stream"
    data = load_data(cfg)
    assert data.shards is not None and data.stream is None
    assert (len(data.shards), len(data.val), data.num_classes) == (22, 2, 3)
    assert data.train.classes == ["c0", "c1", "c2"]
    ckpt = pretrain(cfg)
    state = load_checkpoint(ckpt)
    assert state["step"] == 3 and state["reason"] == "end"
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    steps = step_records(ckpt.parent)
    assert [r["step"] for r in steps] == [1, 2, 3]
    records = [json.loads(line) for line in (ckpt.parent / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"]
    assert len(epoch) == 1 and 0.0 <= epoch[0]["knn_val_acc"] <= 1.0
    # evaluation reads every sample of the train, val and test shards
    results = evaluate(EvalOptions(checkpoint=str(ckpt), probe=False, report=False))
    assert (results["num_train"], results["num_val"], results["num_test"]) == (22, 2, 12)
    assert 0.0 <= results["knn"]["test_accuracy"] <= 1.0


def test_auto_reads_small_shards_into_memory_and_streams_over_the_budget(
    shards: Path, tmp_path: Path
) -> None:
    base = recipe(shards, tmp_path, loader="auto", image_size=16)
    assert choose_loader(build_config(None, base)) == "memory"
    assert choose_loader(build_config(None, {**base, "memory_budget_gb": 1e-6})) == "stream"
    whole = load_data(build_config(None, base))
    streamed = load_data(build_config(None, {**base, "loader": "stream"}))
    assert whole.shards is None and whole.train.images.shape == (22, 3, 16, 16)
    assert streamed.shards is not None and torch.equal(whole.train.labels, streamed.train.labels)
    assert torch.equal(whole.val.labels, streamed.val.labels)  # the same held-out samples


@pytest.mark.slow
def test_the_imagenet100_recipe_pretrains_on_shards(shards: Path, tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / "imagenet100.toml"
    small = {
        "dataset": "webdataset",
        "data_dir": str(shards),
        "cache_dir": str(tmp_path / "cache"),
        "memory_budget_gb": 1e-6,  # the recipe's own loader choice (auto), with a budget the shards exceed
        "image_size": 72,
        "crop_size": 64,
        "batch_size": 4,
        "projector_hidden": [32, 32],
        "projector_dim": 16,
        "val_fraction": 0.25,
        "max_steps": 2,
        "eval_every": 0,
        "monitor_size": 8,
        "num_workers": 1,
        "progress": False,
        "threads": 1,
        "out": str(tmp_path / "in100"),
    }
    cfg = build_config(path, small)
    assert cfg.loader == "auto" and choose_loader(cfg) == "stream"
    assert (cfg.encoder, cfg.momentum_encoder, cfg.bf16) == ("resnet50", True, True)
    state = load_checkpoint(pretrain(cfg))
    assert state["step"] == 2 and "momentum" in state
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_an_interrupted_and_resumed_run_is_the_uninterrupted_run(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = pretrain(build_config(None, recipe(shards, tmp_path, out=str(tmp_path / "straight"))))
    real_step = loop_module.train_step

    def interrupted_after_4(state: Any, *args: Any, **kwargs: Any) -> Any:
        if state.step == 4:  # 4 steps done and logged: the middle of epoch 1 (3 steps an epoch)
            raise KeyboardInterrupt("stopped for the test")
        return real_step(state, *args, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(loop_module, "train_step", interrupted_after_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain(build_config(None, recipe(shards, tmp_path, out=str(stopped))))
    assert Checkpoint.load(stopped / "last.pt").step == 4
    monkeypatch.undo()
    resumed = pretrain(build_config(None, recipe(shards, tmp_path, out=str(stopped))), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [r["loss"] for r in step_records(straight.parent)] == [r["loss"] for r in step_records(stopped)]


def test_resuming_with_another_worker_count_says_the_order_changes(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "run")
    pretrain(build_config(None, recipe(shards, tmp_path, out=out, stop_at_epoch=1, num_workers=0)))
    capsys.readouterr()
    pretrain(build_config(None, recipe(shards, tmp_path, out=out, num_workers=1)), resume=True)
    err = capsys.readouterr().err
    assert "num_workers = 0 and this one with 1" in err and "another order" in err
    assert Checkpoint.load(Path(out) / "last.pt").step == 6


def test_the_shuffle_buffer_sets_the_sample_order(shards: Path, tmp_path: Path) -> None:
    def losses(name: str, **overrides: Any) -> list[float]:
        out = tmp_path / name
        pretrain(build_config(None, recipe(shards, tmp_path, out=str(out), max_steps=2, **overrides)))
        return [r["loss"] for r in step_records(out)]

    mixed = losses("mixed", num_workers=0)
    assert losses("mixed-again", num_workers=0) == mixed
    assert losses("shard-order", num_workers=0, shuffle_buffer=1) != mixed  # other samples per batch
    with pytest.raises(ValueError, match="shuffle_buffer must be >= 1"):
        build_config(None, recipe(shards, tmp_path, shuffle_buffer=0))
    with pytest.raises(ValueError, match=r"shuffle_buffer \(1000 -> 1\)"):
        other = recipe(shards, tmp_path, out=str(tmp_path / "mixed"), max_steps=2, shuffle_buffer=1)
        pretrain(build_config(None, other), resume=True)
