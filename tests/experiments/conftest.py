"""Fixtures of the experiment tests: torch's thread count restored, pretrain calls counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcr.experiments import runner


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """pretrain applies ``threads`` process-wide; give the other tests their setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count pretrain calls (the runner looks pretrain up at call time)."""
    calls: list[str] = []
    real = runner.pretrain

    def counting(cfg: Any, resume: bool = False, overwrite: bool = False) -> Path:
        calls.append(cfg.out)
        return real(cfg, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(runner, "pretrain", counting)
    return calls
