"""``mmcr eval`` on a paired checkpoint of the emoji set: retrieval, zero-shot, the image probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcr.config import build_config
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.training import pretrain

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from paired_helpers import TINY_EMOJI_TOWERS, require_emoji
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.paired_helpers import TINY_EMOJI_TOWERS, require_emoji  # type: ignore[no-redef]

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def emoji_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_emoji()
    out = tmp_path_factory.mktemp("emoji") / "run"
    cfg = build_config(
        None,
        {
            "dataset": "emoji",
            "paired": True,
            **TINY_EMOJI_TOWERS,
            "batch_size": 32,
            "max_steps": 2,
            "progress": False,
            "threads": 1,
            "out": str(out),
        },
    )
    return pretrain(cfg)


def test_eval_json_has_retrieval_zero_shot_and_probes(emoji_checkpoint: Path, tmp_path: Path) -> None:
    results = evaluate(EvalOptions(checkpoint=str(emoji_checkpoint), out=str(tmp_path), probe=False))
    saved = json.loads((tmp_path / "eval.json").read_text())
    retrieval = saved["retrieval"]
    assert retrieval["protocol"] == "1:1 primary caption"
    assert retrieval["num_captions"] > retrieval["num_images"] == results["num_test"]
    for section in (retrieval, retrieval["multi_caption"]):
        for direction in ("image_to_text", "text_to_image"):
            r = section[direction]
            assert 0.0 <= r["recall@1"] <= r["recall@5"] <= r["recall@10"] <= 1.0
            assert r["median_rank"] >= 1
    # the validation split's retrieval, for model selection: its own queries, not the test ones
    val = saved["val_retrieval"]
    assert val["num_images"] == saved["num_val"] != results["num_test"]
    assert 0.0 <= val["image_to_text"]["recall@1"] <= val["image_to_text"]["recall@10"] <= 1.0
    zero_shot = saved["zero_shot"]
    assert zero_shot["templates"] and {"category", "subcategory"} <= set(zero_shot)
    category = zero_shot["category"]
    assert category["num_classes"] >= 5 and 0.0 <= category["top1"] <= category["top5"] <= 1.0
    # emoji without a label of a kind are left out of that kind's scores, never counted as a class
    assert category["num_images"] <= results["num_test"]
    probes = saved["image_probes"]
    assert set(probes) == {"category", "subcategory"}
    assert 0.0 <= probes["category"]["knn"]["test_accuracy"] <= 1.0
    assert "linear_probe" not in probes["category"]  # probe=False
    report = (tmp_path / "report.md").read_text()
    assert "Zero-shot" in report and "recall_at_k.png" in report and (tmp_path / "recall_at_k.png").is_file()


def test_paired_recipe_needs_its_checkpoint() -> None:
    with pytest.raises(ValueError, match="from its checkpoint only"):
        evaluate(EvalOptions(config="configs/emoji_image_text.toml", random_init=True))
