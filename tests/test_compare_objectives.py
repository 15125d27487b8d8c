"""A tiny end-to-end run of benchmarks/compare_objectives.py on scikit-learn's digits."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_objectives.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare_objectives", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_objectives"] = module
    spec.loader.exec_module(module)
    return module


def _argv(tmp_path: Path) -> list[str]:
    sets = [
        "dataset=digits",
        "augment=digits",
        "encoder_width=4",
        "projector_hidden=32",
        "projector_dim=16",
        "batch_size=64",
        "channels_last=false",
        "bf16=false",
        "monitor_size=128",
    ]
    argv = [
        "--methods",
        "mmcr_k2,simclr",
        "--seeds",
        "0",
        "--lrs",
        "1e-3,3e-3",
        "--search-steps",
        "2",
        "--budget-epochs",
        "0.1",
        "--probe-weight-decays",
        "1e-3",
        "--probe-max-iter",
        "5",
        "--parallel",
        "1",
        "--work-dir",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "out"),
    ]
    for s in sets:
        argv += ["--set", s]
    return argv


@pytest.mark.slow
def test_compare_objectives_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = _load()
    argv = _argv(tmp_path)

    plan = module.main([*argv, "--dry-run"])
    assert plan["dry_run"] is True
    assert not (tmp_path / "runs").exists()

    results = module.main(argv)
    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["chosen_lr"] == results["chosen_lr"]
    assert set(saved["methods"]) == {"mmcr_k2", "simclr"}
    assert saved["budget"]["batch_size"] == 64
    assert saved["budget"]["steps"] >= 1
    assert saved["budget"]["images_per_run"] == saved["budget"]["steps"] * 64
    for name, row in saved["methods"].items():
        assert row["chosen_lr"] in (1e-3, 3e-3)
        assert row["seeds_finished"] == 1, name
        for key in ("knn_test_acc", "probe_test_acc", "effective_rank", "ppe", "images_per_s"):
            assert row[key]["n"] == 1 and row[key]["mean"] is not None, (name, key)
        assert 0.0 <= row["knn_test_acc"]["mean"] <= 1.0
        assert 0.0 <= row["probe_test_acc"]["mean"] <= 1.0
        assert row["time_per_epoch_s"]["mean"] > 0
        search = saved["lr_search"][name]
        assert sorted(r["lr"] for r in search) == [1e-3, 3e-3]
        assert all(r["knn_val_acc"] is not None for r in search)
        best = max(search, key=lambda r: r["knn_val_acc"])["knn_val_acc"]
        chosen = next(r for r in search if r["lr"] == row["chosen_lr"])
        assert chosen["knn_val_acc"] == best  # selected on validation
    table = (out / "table.md").read_text()
    for text in ("MMCR (K=2)", "SimCLR", "Linear probe", "Learning-rate search", "B = 64", "Hardware"):
        assert text in table
    # one summary per run: 2 methods x 2 lrs (search) + 2 methods x 1 seed (final)
    assert len(list((tmp_path / "runs").glob("*/summary.json"))) == 6

    # resumable: a second invocation skips every finished run
    capsys.readouterr()
    again = module.main(argv)
    printed = capsys.readouterr().out
    assert "4/4 runs already finished" in printed and "2/2 runs already finished" in printed
    assert again["chosen_lr"] == results["chosen_lr"]
    assert again["methods"]["simclr"]["knn_test_acc"] == results["methods"]["simclr"]["knn_test_acc"]

    # --report-only runs nothing and reports the unfinished seed as not run
    partial = module.main([*argv, "--seeds", "0,1", "--report-only"])
    assert not (tmp_path / "runs" / "simclr_lr{:g}_s1".format(results["chosen_lr"]["simclr"])).exists()
    for row in partial["methods"].values():
        assert row["seeds_finished"] == 1 and row["seeds_not_run"] == 1 and row["seeds_failed"] == 0
    assert "(1 not run)" in (out / "table.md").read_text()

    # a changed recipe does not silently reuse runs made with the old one
    with pytest.raises(SystemExit, match="different configuration"):
        module.main([*argv, "--set", "projector_dim=8", "--report-only"])
