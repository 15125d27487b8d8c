"""Shared fixtures: a tiny pretrained checkpoint for the tests of the jobs that read one."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcr.config import build_config
from mmcr.training import pretrain

#: Two steps on scikit-learn's digits with a 4-wide ConvNet: seconds on a CPU.
TINY_RUN = {
    "dataset": "digits",
    "encoder_width": 4,
    "projector_hidden": [16],
    "projector_dim": 8,
    "batch_size": 32,
    "epochs": 1,
    "max_steps": 2,
    "log_every": 1,
    "progress": False,
    "monitor_size": 64,
    "threads": 2,
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.pt`` of a tiny digits run (one per test module)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    return pretrain(build_config(None, {**TINY_RUN, "out": str(out)}))


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """File indices and decoded caches go to a temporary folder, never the user's cache."""
    monkeypatch.setenv("MMCR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mmcr-cache"))
