"""Paired pretraining streamed from webdataset shards of images and ``.txt`` captions, and its eval.

The shards are written by :func:`~mmcr.data.stream.paired_shards.write_paired_shards` from
small in-memory pairs (coloured shapes, two captions each, one per line), or by hand for
the bad-input cases. The GPU recipe configs/cc3m_image_text_gpu.toml runs its own
architecture (ResNet-50, the width-512 text Transformer) for two CPU steps here.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mmcr.build import Checkpoint
from mmcr.config import build_config
from mmcr.data.paired import PairedDataset, PairedOptions, load_paired
from mmcr.data.readers import webdataset as webdataset_reader
from mmcr.data.stream.paired_shards import paired_shards, shard_captions, write_paired_shards
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.training import paired as paired_module
from mmcr.training import pretrain

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from paired_helpers import shape_image, step_losses, tiny_paired_recipe
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.paired_helpers import shape_image, step_losses, tiny_paired_recipe  # type: ignore[no-redef]

pytest.importorskip("tokenizers")
pytest.importorskip("webdataset")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 20),
    "purple": (140, 30, 160),
    "orange": (240, 140, 20),
}
SHAPES = ("square", "stripe", "dot", "frame")


def _pairs(rows: list[tuple[str, str]]) -> PairedDataset:
    images = torch.from_numpy(np.stack([shape_image(COLOURS[c], s) for c, s in rows])).permute(0, 3, 1, 2)
    captions = [[f"a {c} {s}", f"{s} in {c}"] for c, s in rows]
    return PairedDataset(
        images=images.contiguous(), captions=captions, name="shapes", keys=[f"{c}-{s}" for c, s in rows]
    )


ALL = [(c, s) for c in COLOURS for s in SHAPES]  # 24 pairs


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """``train/``: the 24 pairs in 6 shards of 4; ``test/``: 8 of them in 2 shards."""
    root = tmp_path / "shards"
    write_paired_shards(_pairs(ALL), root / "train", shard_size=4)
    write_paired_shards(_pairs(ALL[::3]), root / "test", shard_size=4)
    return root


def _cfg(data: Path, out: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    values = {"cache_dir": str(out.parent / "cache"), "epochs": 2, "num_workers": 0, **overrides}
    return build_config(None, tiny_paired_recipe("webdataset", data, out, **values))


@pytest.mark.parametrize(("objective", "workers"), [("mmcr", 0), ("clip", 1)])
def test_two_streamed_steps_then_eval(shards: Path, tmp_path: Path, objective: str, workers: int) -> None:
    out = tmp_path / objective
    cfg = _cfg(shards, out, objective=objective, image_views=2, text_views=2, num_workers=workers)
    path = pretrain(cfg)
    checkpoint = Checkpoint.load(path)
    assert checkpoint.step == 2 and checkpoint.reason == "end" and checkpoint.in_channels == 3
    losses = step_losses(out)
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values())
    results = evaluate(EvalOptions(checkpoint=str(path), out=str(tmp_path / f"eval-{objective}")))
    retrieval = results["retrieval"]
    assert retrieval["num_images"] == 8  # the test shards, read whole
    for direction in ("image_to_text", "text_to_image"):
        assert 0.0 <= retrieval[direction]["recall@1"] <= retrieval[direction]["recall@10"] == 1.0


def test_a_run_interrupted_mid_epoch_resumes_exactly(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 6 steps an epoch; the interrupted run stops at step 3 and resumes with 2 workers as before
    settings = {"epochs": 2, "max_steps": 8, "num_workers": 2, "objective": "clip"}
    pretrain(_cfg(shards, tmp_path / "straight", **settings))
    real = paired_module.paired_train_step

    class Stop(KeyboardInterrupt):
        pass

    def interrupted(state: Any, batch: Any) -> Any:
        if state.step == 3:
            raise Stop("stopped for the test")
        return real(state, batch)

    monkeypatch.setattr(paired_module, "paired_train_step", interrupted)
    with pytest.raises(Stop):
        pretrain(_cfg(shards, tmp_path / "parts", **settings))
    assert Checkpoint.load(tmp_path / "parts" / "last.pt").step == 3
    monkeypatch.setattr(paired_module, "paired_train_step", real)
    pretrain(_cfg(shards, tmp_path / "parts", **settings), resume=True)
    a, b = Checkpoint.load(tmp_path / "straight" / "last.pt"), Checkpoint.load(tmp_path / "parts" / "last.pt")
    assert a.step == b.step == 8
    for key, value in a.model.items():
        assert torch.equal(value, b.model[key]), key
    assert step_losses(tmp_path / "straight") == step_losses(tmp_path / "parts")


def test_captions_are_one_per_line_and_the_tokenizer_reads_the_first(shards: Path) -> None:
    captions = shard_captions(shards, "train")
    assert len(captions) == 48  # two lines per sample, every sample
    assert captions[:3] == ["a red square", "square in red", "a red stripe"]
    assert shard_captions(shards, "train", limit=5) == captions[:5]
    test = load_paired("webdataset", "test", shards, image_size=16)
    assert len(test) == 8 and test.captions[0] == ["a red square", "square in red"]
    assert test.images.shape == (8, 3, 16, 16) and not test.labels
    assert len(paired_shards(shards, "train")) == 24


def test_a_split_too_large_for_memory_is_refused(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webdataset_reader, "MAX_PAIRS_IN_MEMORY", 4)
    with pytest.raises(ValueError, match="8 samples, more than the 4 read into memory"):
        load_paired("webdataset", "test", shards)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"txt": b"caf\xe9 au lait"}, "not UTF-8"),
        ({"txt": b"  \n \n"}, "the caption is empty"),
        ({"png": b"not an image at all"}, "bad-key"),
    ],
    ids=["not-utf8", "empty", "undecodable-image"],
)
def test_bad_samples_name_shard_and_key_or_are_skipped(
    shards: Path, tmp_path: Path, bad: dict[str, bytes], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "bad"
    write_paired_shards(_pairs(ALL[:20]), root / "train", shard_size=4)  # 5 shards of 4
    # a sixth shard of 4: three good samples and one bad one, 24 in all (6 steps of 4 read them all)
    members: list[tuple[str, bytes]] = []
    for i, (colour, shape) in enumerate(ALL[20:23]):
        members += [
            (f"good{i}.png", _png(shape_image(COLOURS[colour], shape))),
            (f"good{i}.txt", b"a good one"),
        ]
    sample = {"png": _png(shape_image(COLOURS["red"], "dot")), "txt": b"a red dot", **bad}
    members += [(f"bad-key.{suffix}", data) for suffix, data in sample.items()]
    _write_tar(root / "train" / "shard-000005.tar", members)
    with pytest.raises(ValueError, match=message) as caught:
        pretrain(_cfg(root, tmp_path / "strict", max_steps=6, epochs=1))
    assert "shard-000005.tar" in str(caught.value) and "bad-key" in str(caught.value)

    capsys.readouterr()
    path = pretrain(_cfg(root, tmp_path / "skip", max_steps=6, epochs=1, skip_bad_images=True))
    assert Checkpoint.load(path).step == 6
    assert "replaced 1 bad samples" in capsys.readouterr().err


def test_write_paired_shards_refuses_a_caption_with_a_line_break(tmp_path: Path) -> None:
    data = _pairs(ALL[:2])
    data.captions[1] = ["two\nlines"]
    with pytest.raises(ValueError, match="line break"):
        write_paired_shards(data, tmp_path / "out")


def test_the_cc3m_gpu_recipe_runs_two_cpu_steps_and_eval(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its own towers on CPU: ResNet-50 at 32 px, batch 4, and its 8-block text Transformer.

    Shrunk in cost only: the text tower keeps its type, blocks, heads and context, at width 64
    with a 1000-id vocabulary (the recipe's width 512 and 16k ids make a 64M-parameter run whose
    two steps, 775 MB checkpoint and eval took about 40 s here, against about 11 s). One thread: on
    shared cores two intra-op threads made the evaluation's forward passes several times slower.
    """
    path = CONFIGS / "cc3m_image_text_gpu.toml"
    recipe = build_config(path)
    assert (recipe.device, recipe.bf16, recipe.batch_size) == ("cuda", True, 1024)
    overrides = {
        "data_dir": str(shards),
        "cache_dir": str(tmp_path / "cache"),
        "device": "cpu",
        "bf16": False,
        "text_width": 64,
        "text_vocab_size": 1000,
        "batch_size": 4,
        "image_size": 32,
        "crop_size": 32,
        "max_steps": 2,
        "num_workers": 0,
        "pin_memory": False,
        "threads": 1,
        "progress": False,
        "log_every": 1,
        "out": str(tmp_path / "cc3m"),
    }
    cfg = build_config(path, overrides)
    for key in ("encoder", "text_encoder", "text_layers", "text_heads", "text_context_length", "objective"):
        assert getattr(cfg, key) == getattr(recipe, key), key
    ckpt = pretrain(cfg)
    state = Checkpoint.load(ckpt)
    assert state.step == 2 and state.config["encoder"] == "resnet50"
    assert "24 training pairs in shards" in capsys.readouterr().err
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = evaluate(EvalOptions(checkpoint=str(ckpt), out=str(tmp_path / "cc3m-eval"), probe=False))
    finally:
        torch.set_num_threads(threads)
    assert results["retrieval"]["num_images"] == 8
    assert (tmp_path / "cc3m-eval" / "report.md").is_file()


def test_eval_reads_classes_as_a_label_kind_and_skips_bad_samples(tmp_path: Path) -> None:
    root = tmp_path / "labelled"
    members: list[tuple[str, bytes]] = []
    for i, (colour, shape) in enumerate(ALL[:6]):
        members += [
            (f"s{i}.png", _png(shape_image(COLOURS[colour], shape))),
            (f"s{i}.txt", f"a {colour} {shape}\n{shape}, {colour}".encode()),
            (f"s{i}.cls", str(SHAPES.index(shape)).encode()),
        ]
    members += [("broken.png", b"\x89PNG but not really"), ("broken.txt", b"a broken one")]
    _write_tar(root / "test" / "shard-000000.tar", members)
    (root / "test" / "classes.json").write_text(json.dumps(list(SHAPES)))
    with pytest.raises(ValueError, match="broken"):
        load_paired("webdataset", "test", root, image_size=16)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        test = load_paired(
            "webdataset", "test", root, image_size=16, options=PairedOptions(skip_bad_rows=True)
        )
    assert len(test) == 6 and len(test.skipped) == 1 and "shard-000000.tar" in test.skipped[0]
    assert test.captions[1] == ["a red stripe", "stripe, red"]
    assert test.label_names == {"class": list(SHAPES)}
    assert test.labels["class"].tolist() == [0, 1, 2, 3, 0, 1]


def test_mmcr_data_pack_writes_paired_shards_from_a_table(tmp_path: Path) -> None:
    from mmcr.cli import main

    (tmp_path / "images").mkdir()
    rows = ["filepath\ttitle"]
    for colour, shape in ALL[:3]:
        file = f"images/{colour}_{shape}.png"
        Image.fromarray(shape_image(COLOURS[colour], shape)).save(tmp_path / file)
        rows += [f"{file}\ta {colour} {shape}", f'{file}\t"{shape}\nin {colour}"']
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    dest = tmp_path / "packed" / "train"
    assert main(["data", "pack", str(tmp_path / "train.tsv"), str(dest), "--no-progress"]) == 0
    pairs = load_paired("webdataset", "train", tmp_path / "packed", image_size=16)
    assert len(pairs) == 3  # rows naming the same image: one sample, its captions one per line
    assert pairs.captions[0] == ["a red square", "square in red"]
