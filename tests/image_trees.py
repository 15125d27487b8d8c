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
