"""The image-text comparison: the lr choice on validation, the aggregation, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmcr.experiments import image_text as it

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from paired_helpers import TINY_EMOJI_TOWERS, require_emoji
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.paired_helpers import TINY_EMOJI_TOWERS, require_emoji  # type: ignore[no-redef]


def _summary(
    seed: int, lr: float, val: float, test: float, method: str = "mmcr", b: int = 16
) -> dict[str, Any]:
    def section(r: float) -> dict[str, dict[str, float]]:
        return {
            d: {"recall@1": r, "recall@5": min(1.0, 2 * r), "recall@10": min(1.0, 3 * r), "median_rank": 7.0}
            for d in it.DIRECTIONS
        }

    return {
        "method": method,
        "batch_size": b,
        "lr": lr,
        "seed": seed,
        "steps": 10,
        "step_ms": 100.0 + seed,
        "val_retrieval": section(val),
        "retrieval": section(test),
        "multi_caption": section(test),
        "zero_shot": {"category": 0.5},
        "knn": {"category": 0.7},
    }


def _options(tmp_path: Path, **kw: Any) -> it.ImageTextOptions:
    values: dict[str, Any] = {
        "config": "configs/emoji_image_text.toml",
        "work_dir": str(tmp_path / "work"),
        "out": str(tmp_path / "out"),
        "methods": ["mmcr"],
        "batch_sizes": [16],
        "seeds": [0, 1, 2],
        "lrs": [1e-3, 3e-3],
    }
    values.update(kw)
    return it.ImageTextOptions(**values)


def test_selection_score_is_the_mean_validation_recall() -> None:
    s = _summary(0, 1e-3, val=0.1, test=0.9)
    # recall@1, @5, @10 = 0.1, 0.2, 0.3 in both directions; the test numbers never enter
    assert it.selection_score(s) == pytest.approx(0.2)


def test_searches_are_the_first_seed_at_every_lr(tmp_path: Path) -> None:
    options = _options(tmp_path, methods=["mmcr", "clip"], batch_sizes=[16, 32])
    base = it.base_recipe(options)
    jobs = it.plan_searches(options, base)
    assert len(jobs) == 2 * 2 * 2 and {j.seed for j in jobs} == {0}
    clip = next(j for j in jobs if j.method == "clip" and j.batch_size == 32 and j.lr == 3e-3)
    assert clip.name == "clip_B32_lr0.003_s0"
    assert clip.overrides["objective"] == "clip" and clip.overrides["batch_size"] == 32
    multi = it.METHODS["mmcr_multi"][1]
    assert multi["text_views"] == 2 and multi["objective"] == "mmcr"


def test_the_lr_is_chosen_on_validation_and_its_run_is_the_first_seed(tmp_path: Path) -> None:
    options = _options(tmp_path)
    schedule = it._Schedule(options, it.base_recipe(options))
    low, high = schedule.group_searches(("mmcr", 16))
    # the higher lr wins on validation although it is worse on test: the test split is not read
    schedule.results[low.name] = _summary(0, low.lr, val=0.1, test=0.5)
    schedule.results[high.name] = _summary(0, high.lr, val=0.2, test=0.1)
    others = schedule.choose(("mmcr", 16))
    assert schedule.chosen[("mmcr", 16)] == high.lr
    assert [j.seed for j in others] == [1, 2] and {j.lr for j in others} == {high.lr}
    assert schedule.finals[("mmcr", 16)][0] == high
    for job, test in zip(others, (0.3, 0.2), strict=True):
        schedule.results[job.name] = _summary(job.seed, job.lr, val=0.2, test=test)
    results = it.aggregate(schedule, options)
    (row,) = results["rows"]
    assert row["lr"] == high.lr and row["seeds"] == [0, 1, 2]
    recall = row["retrieval_image_to_text_recall@1"]
    assert recall["mean"] == pytest.approx(0.2) and recall["std"] == pytest.approx(0.1)
    assert row["search_val_score"] == {"0.001": pytest.approx(0.2), "0.003": pytest.approx(0.4)}
    table = it.render_table(results, options)
    assert "| MMCR, 1 image + 1 caption (K = 2) | 20.0 ± 10.0 |" in table


def test_a_group_whose_searches_all_failed_has_no_finals(tmp_path: Path) -> None:
    options = _options(tmp_path)
    schedule = it._Schedule(options, it.base_recipe(options))
    for job in schedule.group_searches(("mmcr", 16)):
        schedule.results[job.name] = None
    assert schedule.choose(("mmcr", 16)) == [] and ("mmcr", 16) not in schedule.chosen
    (row,) = it.aggregate(schedule, options)["rows"]
    assert row["lr"] is None and row["seeds"] == []
    assert "n/a" in it.render_table(it.aggregate(schedule, options), options)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown method"):
        it.run_image_text(_options(tmp_path, methods=["simclr"]))
    with pytest.raises(SystemExit, match="not a paired recipe"):
        it.run_image_text(_options(tmp_path, config="configs/fashion_mnist.toml"))


TINY = {**TINY_EMOJI_TOWERS, "max_steps": 2}


def test_a_tiny_comparison_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    require_emoji()
    options = _options(
        tmp_path,
        sets=TINY,
        methods=["mmcr", "clip"],
        seeds=[0, 1],
        lrs=[1e-3],
        parallel=1,
        timing_steps=1,
        retrieval_n=300,
    )
    results = it.run_image_text(options)
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"mmcr", "clip"}
    for row in rows.values():
        assert row["seeds"] == [0, 1] and row["lr"] == 1e-3 and row["steps"] == 2
        assert 0.0 <= row["retrieval_text_to_image_recall@1"]["mean"] <= 1.0
    timing = results["timing"]
    assert {(r["method"], r["batch_size"]) for r in timing["rows"]} == {("mmcr", 16), ("clip", 16)}
    assert all(0.0 < r["loss_share"] for r in timing["rows"]) and timing["retrieval"]["n"] == 300
    out = Path(options.out)
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(json.dumps(results["rows"]))
    assert (out / "recall_vs_batch.png").stat().st_size > 0 and "Text-to-image" in (
        out / "table.md"
    ).read_text()
    # every run is finished: a report-only pass trains nothing and keeps the timing
    summary = Path(options.work_dir) / "clip_B16_lr0.001_s1" / it.SUMMARY_NAME
    before = summary.stat().st_mtime_ns
    again = it.run_image_text(_options(tmp_path, **{**options.__dict__, "report_only": True}))
    assert summary.stat().st_mtime_ns == before and again["timing"] == json.loads(json.dumps(timing))
