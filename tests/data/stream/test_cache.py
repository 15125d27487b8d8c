"""The decoded cache: memory-mapped, shared, rebuilt when damaged, never trusted half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmcr.data import ImageDataset
from mmcr.data.stream import cache as cache_module
from mmcr.data.stream import cache_entry, decoded_cache


def parts(n: int = 6) -> tuple[dict[str, ImageDataset], dict[str, Any]]:
    images = torch.arange(n * 3 * 4 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(n, 3, 4, 4)
    labels = torch.arange(n) % 2
    return {"train": ImageDataset(images, labels, 2, "toy", ["a", "b"])}, {"memory": n - 1}


def test_the_cache_gives_back_what_was_built_memory_mapped(tmp_path: Path) -> None:
    calls: list[int] = []

    def build() -> tuple[dict[str, ImageDataset], dict[str, Any]]:
        calls.append(1)
        return parts()

    first, notes = decoded_cache({"k": 1}, build, tmp_path)
    again, _ = decoded_cache({"k": 1}, build, tmp_path)
    assert len(calls) == 1 and notes == {"memory": 5}
    expected = parts()[0]["train"]
    for got in (first["train"], again["train"]):
        assert torch.equal(got.images, expected.images) and torch.equal(got.labels, expected.labels)
        assert got.classes == ["a", "b"] and got.num_classes == 2
    entry = cache_entry({"k": 1}, tmp_path)
    mapped = np.load(entry / "train.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    assert not list(tmp_path.glob("*.tmp"))


def test_an_interrupted_build_leaves_nothing_a_later_run_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = np.save

    def dies_half_way(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed while writing the labels")

    monkeypatch.setattr(cache_module.np, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        decoded_cache({"k": 2}, parts, tmp_path)
    assert not cache_entry({"k": 2}, tmp_path).exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    monkeypatch.setattr(cache_module.np, "save", real_save)
    rebuilt, _ = decoded_cache({"k": 2}, parts, tmp_path)
    assert torch.equal(rebuilt["train"].images, parts()[0]["train"].images)


def test_a_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    decoded_cache({"k": 3}, parts, tmp_path)
    entry = cache_entry({"k": 3}, tmp_path)
    (entry / "train.npy").write_bytes((entry / "train.npy").read_bytes()[:150])
    rebuilt, _ = decoded_cache({"k": 3}, parts, tmp_path)
    assert torch.equal(rebuilt["train"].images, parts()[0]["train"].images)


def test_another_key_is_another_entry(tmp_path: Path) -> None:
    assert cache_entry({"k": 1}, tmp_path) != cache_entry({"k": 2}, tmp_path)
    assert cache_entry({"a": 1, "b": 2}, tmp_path) == cache_entry({"b": 2, "a": 1}, tmp_path)
