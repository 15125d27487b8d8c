"""``mmcr geometry`` end to end on a tiny run: pretrain 2 steps on digits, then the job."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mmcr.cli import geometry as geometry_cli
from mmcr.config import build_config
from mmcr.manifolds import GeometryOptions, encoder_stages, measure_geometry
from mmcr.models.convnet import ConvNet
from mmcr.models.resnet import resnet18
from mmcr.training import pretrain


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = build_config(
        None,
        {
            "dataset": "digits",
            "augment": "digits",
            "encoder_width": 4,
            "projector_hidden": [32],
            "projector_dim": 16,
            "batch_size": 64,
            "max_steps": 2,
            "progress": False,
            "out": str(out),
            "threads": 2,
        },
    )
    return pretrain(cfg)


def test_stages_of_the_encoders() -> None:
    assert [name for name, _ in encoder_stages(ConvNet(1, width=4))] == [
        "stage1",
        "stage2",
        "stage3",
        "stage4",
    ]
    assert [name for name, _ in encoder_stages(resnet18(3))] == ["stage1", "stage2", "stage3", "stage4"]


def test_geometry_job_on_a_tiny_run(checkpoint: Path, tmp_path: Path) -> None:
    options = GeometryOptions(
        checkpoints=[str(checkpoint)],
        out=str(tmp_path / "geo"),
        manifolds=6,
        views=4,
        images_per_class=5,
        n_t=10,
        max_features=32,
    )
    results = measure_geometry(options)
    written = json.loads((tmp_path / "geo" / "geometry.json").read_text())
    entry = written["checkpoints"][0]
    depths = ["input", "stage1", "stage2", "stage3", "stage4", "pooled", "projector"]
    for kind in ("exemplar", "class"):
        assert list(entry[kind]) == depths
        for values in entry[kind].values():
            assert values["capacity"] > 0 and values["radius"] > 0 and values["dimension"] > 0
            assert values["features"] <= 32
        assert "capacity_vs_samples" in entry[kind]["projector"]
    assert entry["exemplar"]["input"]["manifolds"] == 6 and entry["exemplar"]["input"]["samples"] == 4
    assert entry["class_manifolds"] == 6 and entry["class_samples"] == 5
    for kind in ("exemplar", "class"):
        assert (tmp_path / "geo" / f"geometry_{kind}.png").stat().st_size > 0
    assert results["checkpoints"][0]["label"].startswith("mmcr")


def test_geometry_command_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="mmcr")
    geometry_cli.register(parser.add_subparsers(dest="command"))
    flags = ["--kinds", "exemplar", "--manifolds", "5", "--views", "3", "--n-t", "5", "--max-features", "16"]
    args = parser.parse_args(
        ["geometry", str(checkpoint), "--out", str(tmp_path / "cli"), *flags, "--no-plots"]
    )
    assert args.func(args) == 0
    assert "exemplar" in capsys.readouterr().out
    assert (tmp_path / "cli" / "geometry.json").exists() and not (
        tmp_path / "cli" / "geometry_exemplar.png"
    ).exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["geometry", "--help"])
    assert "exemplar" in capsys.readouterr().out
    with pytest.raises(ValueError, match="views"):
        measure_geometry(GeometryOptions(checkpoints=[str(checkpoint)], views=1))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        measure_geometry(GeometryOptions(checkpoints=[str(tmp_path / "missing.pt")]))
    with pytest.raises(ValueError, match="is a file, not a folder"):
        measure_geometry(GeometryOptions(checkpoints=[str(checkpoint)], out=str(checkpoint)))
