"""End-to-end pretraining on scikit-learn's digits: logs, checkpoints, exact resume, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcr.checkpoint import load_checkpoint, save_checkpoint
from mmcr.config import build_config, load_recipe
from mmcr.training import pretrain
from mmcr.training import step as step_module

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import TINY_DIGITS, streamed_recipe
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import TINY_DIGITS, streamed_recipe  # type: ignore[no-redef]

TINY = TINY_DIGITS


def run(tmp_path: Path, name: str, **overrides: Any) -> Path:
    cfg = build_config(None, {**TINY, "out": str(tmp_path / name), **overrides})
    return pretrain(cfg)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pretrain_writes_config_metrics_and_checkpoint(tmp_path: Path) -> None:
    ckpt = run(tmp_path, "a")
    out = ckpt.parent
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == "digits" and saved["batch_size"] == 128
    logs = records(out / "metrics.jsonl")
    steps = [r for r in logs if r["kind"] == "step"]
    epochs = [r for r in logs if r["kind"] == "epoch"]
    assert [r["step"] for r in steps][:3] == [2, 4, 6]
    assert {"loss", "global_nuclear_norm", "ppe", "lr", "images_per_s"} <= set(steps[0])
    assert len(epochs) == 2
    assert {"knn_val_acc", "val_ppe", "val_alignment", "val_uniformity", "val_effective_rank"} <= set(
        epochs[-1]
    )
    state = load_checkpoint(ckpt)
    assert state["step"] == steps[-1]["step"]
    assert state["config"]["encoder"] == "convnet"
    # training did something: the MMCR loss went down and kNN beats chance (10 classes)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert epochs[-1]["knn_val_acc"] > 0.5


@pytest.mark.parametrize("path", ["memory", "stream"])
def test_resume_gives_the_same_trajectory(tmp_path: Path, path: str) -> None:
    base = TINY if path == "memory" else streamed_recipe(tmp_path)
    # the streamed runs read with different worker counts: which worker reads a file changes nothing
    straight = pretrain(build_config(None, {**base, "out": str(tmp_path / "straight")}))
    cfg = build_config(None, {**base, "out": str(tmp_path / "stopped"), "stop_at_epoch": 1})
    stopped = pretrain(cfg)
    assert load_checkpoint(stopped)["step"] == load_checkpoint(straight)["step"] // 2
    workers = {"num_workers": 2} if path == "stream" else {}
    cfg = build_config(None, {**base, "out": str(tmp_path / "stopped"), **workers})
    resumed = pretrain(cfg, resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    losses_a = [r["loss"] for r in records(straight.parent / "metrics.jsonl") if r["kind"] == "step"]
    losses_b = [r["loss"] for r in records(resumed.parent / "metrics.jsonl") if r["kind"] == "step"]
    assert losses_a == losses_b


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    cfg = build_config(None, {**TINY, "out": str(tmp_path / "r"), "stop_at_epoch": 1})
    pretrain(cfg)
    with pytest.raises(ValueError, match="lr"):
        pretrain(build_config(None, {**TINY, "out": str(tmp_path / "r"), "lr": 0.5}), resume=True)


def test_momentum_encoder_and_local_term_run(tmp_path: Path) -> None:
    ckpt = run(
        tmp_path,
        "m",
        momentum_encoder=True,
        momentum_tau_schedule="cosine",
        lmbda=0.01,
        num_views=3,
        max_steps=4,
        eval_every=0,
    )
    state = load_checkpoint(ckpt)
    assert "momentum" in state
    logs = [r for r in records(ckpt.parent / "metrics.jsonl") if r["kind"] == "step"]
    assert all(r["local_nuclear_norm"] is not None for r in logs)


@pytest.mark.parametrize("objective", ["simclr", "barlow_twins", "vicreg"])
def test_baseline_objectives_train(tmp_path: Path, objective: str) -> None:
    ckpt = run(tmp_path, objective, objective=objective, max_steps=3, eval_every=0)
    assert load_checkpoint(ckpt)["step"] == 3


def test_non_finite_embeddings_raise_naming_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = step_module.build_network

    def poisoned(cfg: Any, in_channels: int) -> Any:
        net = real(cfg, in_channels)
        net.projector.register_forward_hook(lambda m, i, o: o * float("nan"))
        return net

    monkeypatch.setattr(step_module, "build_network", poisoned)
    with pytest.raises(ValueError, match="non-finite at step 0"):
        run(tmp_path, "nan")


def test_config_errors(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text('dataset = "digits"\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match=r"unknown key.*learning_rate.*valid keys: dataset"):
        load_recipe(recipe)
    with pytest.raises(ValueError, match="batch_size"):
        build_config(None, {"batch_size": "1"})
    with pytest.raises(ValueError, match="epochs: cannot read"):
        build_config(None, {"epochs": "two"})
    cfg = build_config(None, {"projector_hidden": "256,256", "bf16": "true", "data_dir": "none"})
    assert cfg.projector_hidden == [256, 256] and cfg.bf16 is True and cfg.data_dir is None
    yaml_recipe = tmp_path / "r.yaml"
    yaml_recipe.write_text("epochs: 3\nlr: 0.01\n")
    assert build_config(yaml_recipe, {"epochs": "5"}).epochs == 5


def test_checkpoints_refuse_pickled_code(tmp_path: Path) -> None:
    path = save_checkpoint({"model": {"w": torch.ones(2)}, "config": {"a": 1}}, tmp_path / "ok.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed away
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": Path("x")}, evil)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(evil)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_pretrain_restores_the_callers_thread_count(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    run(tmp_path, "threads", threads=wanted, epochs=1, max_steps=2)
    assert torch.get_num_threads() == before


def test_the_cache_path_trains_exactly_like_the_memory_path(tmp_path: Path) -> None:
    short = {"max_steps": 3, "log_every": 1, "eval_every": 0}
    memory = run(tmp_path, "memory", loader="memory", **short)
    cached = run(tmp_path, "cache", loader="cache", **short)
    a, b = load_checkpoint(memory), load_checkpoint(cached)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
