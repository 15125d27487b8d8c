"""Sweep files: bad keys named, plans deduplicated, the spec stored and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from mmcr.cli import main
from mmcr.experiments.spec import SweepSpec, load_sweep, parse_sweep, plan_runs

from .sweep_files import DOUBLE_DESCENT, SCALING, write


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (DOUBLE_DESCENT + "grdi = 1\n", "grdi"),
        (DOUBLE_DESCENT.replace("P = [16, 32]", 'P = ["16", 32]'), "grid.P"),
        (DOUBLE_DESCENT.replace("P = [16, 32]", "P = [1, 32]"), "grid.P"),
        (DOUBLE_DESCENT.replace("D = [16, 32]", "D = []"), "grid.D"),
        (DOUBLE_DESCENT.replace("D = [16, 32]", "Dims = [16]"), "grid.Dims"),
        (DOUBLE_DESCENT.replace("max_steps = 2", "max_step = 2"), "budget.max_step"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nbatchsize = 3"), "batchsize"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nbatch_size = 3"), "base.batch_size"),
        (DOUBLE_DESCENT.replace("log_every = 1", "log_every = 1\nlr = -1.0"), "lr"),
        (DOUBLE_DESCENT.replace("ppe_last = 2", "ppe_last = 0"), "ppe_last"),
        (DOUBLE_DESCENT.replace("[grid]\nP = [16, 32]\nD = [16, 32]", ""), "grid"),
        (DOUBLE_DESCENT.replace('kind = "double-descent"', 'kind = "scaling"'), "kind"),
        (SCALING.replace("num_views = 2", "views = 2"), "point.views"),
        (SCALING.replace("num_views = 2\n", ""), "point.num_views"),
        (SCALING.replace("projector_dim = [8, 16]", "projector_dim = 8"), "axes.projector_dim"),
        (SCALING + "[budget]\nmax_steps = 3\n", "budget"),
    ],
)
def test_bad_sweep_files_name_the_bad_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ValueError, match=key):
        load_sweep(path, kind="double-descent" if "double-descent" in text else "scaling")


def test_invalid_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid TOML"):
        load_sweep(write(tmp_path, "x.toml", "kind = [\n"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "absent.toml")
    assert main(["sweep", "double-descent", "--config", str(tmp_path / "absent.toml")]) == 2


def test_plans_are_deduplicated_and_cover_axes_and_joint_grid() -> None:
    spec = parse_sweep(tomllib.loads(SCALING + "[joint]\nsteps = [2, 3]\nbatch_size = [16, 32]\n"))
    names = [run.name for run in plan_runs(spec)]
    assert len(names) == len(set(names))
    # point, S3, B32, D16 (axes) + S3_B32 (the only new joint cell)
    assert len(names) == 5 and "S3_B32_D8_K2_s0" in names
    point = plan_runs(spec)[0]
    assert {"point", "axis:steps", "axis:batch_size", "joint"} <= set(point.groups)


def test_spec_round_trips_through_json() -> None:
    spec = parse_sweep(tomllib.loads(DOUBLE_DESCENT))
    again = SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert [r.name for r in plan_runs(again)] == ["P16_D16_s0", "P32_D16_s0", "P16_D32_s0", "P32_D32_s0"]
