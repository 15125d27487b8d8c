"""Generated image-folder trees of small JPEGs, for the tests of the streaming path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_tree(root: Path, per_class: int = 4, classes: int = 3, size: tuple[int, int] = (48, 64)) -> Path:
    """``root/train/c<k>/<i>.jpg``: each class a different dominant colour, sizes varying a little."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", max(1, per_class // 2))):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (size[0] + 2 * i, size[1], 3), dtype=np.uint8)
                pixels[..., c % 3] += 180
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


#: The small digits recipe of the training tests (two epochs of a width-8 ConvNet).
TINY_DIGITS: dict[str, object] = {
    "dataset": "digits",
    "augment": "digits",
    "encoder_width": 8,
    "projector_hidden": [64],
    "projector_dim": 32,
    "batch_size": 128,
    "epochs": 2,
    "log_every": 2,
    "progress": False,
    "monitor_size": 256,
    "threads": 2,
}


def streamed_recipe(tmp_path: Path, base: dict[str, object] | None = None) -> dict[str, object]:
    """A tiny image-folder recipe on the streaming path (DataLoader workers read the JPEGs)."""
    tree = make_tree(tmp_path / "tree", per_class=8)
    return {
        **(TINY_DIGITS if base is None else base),
        "dataset": "imagefolder",
        "augment": "imagenet",
        "data_dir": str(tree),
        "image_size": 16,
        "crop_size": 16,
        "encoder_width": 4,
        "batch_size": 8,
        "monitor_size": 16,
        "loader": "stream",
        "num_workers": 0,
    }
