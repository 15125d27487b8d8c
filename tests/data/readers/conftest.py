"""Data tests never see the user's data directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcr.data.readers import idx


@pytest.fixture(autouse=True)
def _isolated_search_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's MMCR_DATA_DIR, nor (unless it asks) the system Fashion-MNIST."""
    monkeypatch.delenv("MMCR_DATA_DIR", raising=False)
    monkeypatch.setattr(idx, "_FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-system-dir")
