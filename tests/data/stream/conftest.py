"""A small generated image-folder tree of JPEGs for the streaming tests."""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from image_trees import make_tree
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.image_trees import make_tree  # type: ignore[no-redef]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp_path/tree``: 3 classes x 4 train (2 test) JPEGs of about 48 x 64 pixels."""
    return make_tree(tmp_path / "tree")
