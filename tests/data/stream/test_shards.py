"""webdataset shards: packing (atomic, from a tree or a TSV) and the split over ranks and workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from mmcr.cli import main
from mmcr.data.stream import folder_index
from mmcr.data.stream.shards import ShardStream, assigned_shards, pack_shards, shard_files, tsv_rows


def key_of(sample: dict) -> tuple[str, int]:
    return sample["__key__"], int(sample["cls"])


def as_read(sample: dict) -> dict:
    return sample


def packed(tree: Path, dest: Path, shard_size: int = 2) -> list[Path]:
    assert main(["data", "pack", str(tree), str(dest), "--shard-size", str(shard_size), "--no-progress"]) == 0
    return shard_files(dest)


def test_pack_writes_complete_shards_of_the_chosen_size(tree: Path, tmp_path: Path) -> None:
    shards = packed(tree, tmp_path / "shards", shard_size=5)
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not list((tmp_path / "shards").glob("*.tmp"))
    samples = list(ShardStream(shards, seed=0, shuffle_buffer=1, decode=as_read))
    index = folder_index(tree, "train")
    assert len(samples) == len(index) == 12
    by_key = dict(sorted(key_of(s) for s in samples))
    assert list(by_key.values()) == index.labels.tolist()
    assert samples[0]["jpg"] == index.path(int(samples[0]["__key__"])).read_bytes()
    assert (tmp_path / "shards" / "classes.json").read_text() == '["c0", "c1", "c2"]'


def test_every_sample_is_read_once_per_epoch_over_2_ranks_x_2_workers(tree: Path, tmp_path: Path) -> None:
    shards = packed(tree, tmp_path / "shards", shard_size=1)  # 12 shards of one sample
    for epoch in (0, 1):
        seen: Counter[str] = Counter()
        for rank in (0, 1):
            stream = ShardStream(shards, seed=3, epoch=epoch, rank=rank, world=2, shuffle_buffer=4)
            stream.decode = key_of
            loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
            seen.update(key for key, _ in loader)
        assert sorted(seen) == [f"{i:09d}" for i in range(12)] and set(seen.values()) == {1}


def test_the_shard_order_is_seeded_and_the_buffer_shuffles(tree: Path, tmp_path: Path) -> None:
    shards = packed(tree, tmp_path / "shards", shard_size=3)
    first = assigned_shards(shards, seed=0, epoch=0, rank=0, world=1, worker=0, workers=1)
    assert first == assigned_shards(shards, seed=0, epoch=0, rank=0, world=1, worker=0, workers=1)
    assert sorted(first) == shards
    orders = {tuple(assigned_shards(shards, 0, e, 0, 1, 0, 1)) for e in range(6)}
    assert len(orders) > 1
    plain = [k for k, _ in ShardStream(shards, seed=0, shuffle_buffer=1, decode=key_of)]
    mixed = [k for k, _ in ShardStream(shards, seed=0, shuffle_buffer=6, decode=key_of)]
    again = [k for k, _ in ShardStream(shards, seed=0, shuffle_buffer=6, decode=key_of)]
    assert sorted(plain) == sorted(mixed) and mixed == again and mixed != plain


def test_pack_reads_a_tsv_of_captions(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv = tree / "captions.tsv"
    tsv.write_text("filepath\ttitle\ntrain/c0/0.jpg\ta red square\ntrain/c1/1.jpg\tgreen, of course\n")
    samples = list(ShardStream(packed(tsv, tmp_path / "tsv"), seed=0, shuffle_buffer=1))
    pairs = sorted((label, caption) for _, label, caption in samples)
    assert pairs == [(-1, "a red square"), (-1, "green, of course")]
    assert samples[0][0][:2] == b"\xff\xd8"  # the JPEG's own bytes
    bad = tree / "bad.tsv"
    bad.write_text("path\tcaption\nx.jpg\tx\n")
    with pytest.raises(ValueError, match="has no column filepath or title"):
        tsv_rows(bad)
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        pack_shards([], tmp_path / "x", shard_size=0)
