"""Tiny paired image-text recipes and data for the tests of paired pretraining and its eval.

- :data:`TINY_TOWERS`: a 16-px ConvNet image tower and a one-block, width-16 text
  Transformer (8 tokens, 300 ids), for the coloured-shape captions; :data:`TINY_EMOJI_TOWERS`
  the same with the context and vocabulary the longer emoji captions want (12 tokens, 400 ids).
- :func:`tiny_paired_recipe`: the overrides of a two-step CPU run of those towers on a data
  set, for ``build_config(None, ...)``.
- :func:`write_shapes_corpus`: a table of 8 coloured shapes with two captions each.
- :func:`require_emoji`: skip unless the emoji data set (two Debian packages) is installed.
- :func:`step_losses` and :func:`assert_same_run`: a run's logged losses; two runs that end
  at the same step with the same weights, having logged the same losses.

Imported as the other helpers are::

    try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
        from paired_helpers import tiny_paired_recipe
    except ImportError:  # pragma: no cover - layout with tests/__init__.py
        from tests.paired_helpers import tiny_paired_recipe  # type: ignore[no-redef]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mmcr.build import Checkpoint

#: The image tower: a ConvNet of width 8 on 16-px images, a 32-wide projector to 16 dimensions.
TINY_IMAGE_TOWER: dict[str, Any] = {
    "image_size": 16,
    "encoder_width": 8,
    "projector_hidden": [32],
    "projector_dim": 16,
}

#: Both towers; the text Transformer has one block of width 16, 2 heads, 8 tokens, 300 ids.
TINY_TOWERS: dict[str, Any] = {
    **TINY_IMAGE_TOWER,
    "text_width": 16,
    "text_layers": 1,
    "text_heads": 2,
    "text_context_length": 8,
    "text_vocab_size": 300,
}

#: The towers for the emoji set: its captions want a longer context and a larger vocabulary.
TINY_EMOJI_TOWERS: dict[str, Any] = {**TINY_TOWERS, "text_context_length": 12, "text_vocab_size": 400}

#: Two steps of 4 pairs on one thread, each step logged, seeded.
TINY_PAIRED_RUN: dict[str, Any] = {
    "batch_size": 4,
    "epochs": 1,
    "max_steps": 2,
    "log_every": 1,
    "progress": False,
    "threads": 1,
    "seed": 3,
}

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}
SHAPES = ("square", "stripe")


def tiny_paired_recipe(
    dataset: str,
    data_dir: str | Path,
    out: str | Path,
    towers: Mapping[str, Any] = TINY_TOWERS,
    **overrides: Any,
) -> dict[str, Any]:
    """The overrides of a tiny paired run: ``dataset`` from ``data_dir`` into ``out``.

    A ConvNet image tower and ``towers`` (:data:`TINY_TOWERS` unless given), then
    :data:`TINY_PAIRED_RUN`; ``overrides`` replace any of these.
    """
    values: dict[str, Any] = {
        "dataset": dataset,
        "data_dir": str(data_dir),
        "paired": True,
        "encoder": "convnet",
        **towers,
        **TINY_PAIRED_RUN,
        "out": str(out),
    }
    values.update(overrides)
    return values


def shape_image(colour: tuple[int, int, int], shape: str) -> np.ndarray:
    """A 20x20 white image with a coloured square, stripe, dot or (anything else) frame."""
    pixels = np.full((20, 20, 3), 255, dtype=np.uint8)
    if shape == "square":
        pixels[4:16, 4:16] = colour
    elif shape == "stripe":
        pixels[8:12, :] = colour
    elif shape == "dot":
        pixels[8:12, 8:12] = colour
    else:
        pixels[:3], pixels[-3:], pixels[:, :3], pixels[:, -3:] = colour, colour, colour, colour
    return pixels


def write_shapes_corpus(root: Path) -> Path:
    """``root/train.tsv`` (16 rows: 8 images, each with two captions) and ``test.tsv`` (8 rows).

    The images are :data:`COLOURS` x :data:`SHAPES` under ``root/images``; returns ``root``.
    """
    (root / "images").mkdir(parents=True)
    train, test = ["filepath\ttitle"], ["filepath\ttitle"]
    for name, colour in COLOURS.items():
        for shape in SHAPES:
            file = f"images/{name}_{shape}.png"
            Image.fromarray(shape_image(colour, shape)).save(root / file)
            train += [f"{file}\ta {name} {shape}", f"{file}\t{shape} in {name}"]
            test.append(f"{file}\t{name} {shape}")
    (root / "train.tsv").write_text("\n".join(train) + "\n")
    (root / "test.tsv").write_text("\n".join(test) + "\n")
    return root


def require_emoji() -> None:
    """Skip the calling test or fixture unless the emoji data set loads.

    It needs the Debian packages fonts-noto-color-emoji and unicode-cldr-core; the reason
    given is the loader's message, which names what is missing and how to install it.
    """
    from mmcr.data.paired import load_paired

    try:
        load_paired("emoji", "test", image_size=16)
    except FileNotFoundError as exc:  # the font or CLDR is not installed here
        pytest.skip(f"emoji data not installed: {exc}")


def step_losses(out: Path) -> dict[int, float]:
    """The loss of every step logged in ``out/metrics.jsonl``, by step."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r.get("kind") == "step"}


def assert_same_run(a: Path, b: Path, steps: int) -> None:
    """The runs in ``a`` and ``b`` both end at ``steps`` with equal weights and logged equal losses."""
    first, second = Checkpoint.load(a / "last.pt"), Checkpoint.load(b / "last.pt")
    assert first.step == second.step == steps
    assert first.model.keys() == second.model.keys()
    for key, value in first.model.items():
        assert torch.equal(value, second.model[key]), key
    assert step_losses(a) == step_losses(b)
