"""Shards as pretraining data: their index, the split of kept samples, the resume, bad members."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcr.cli import main
from mmcr.data import load_dataset, preset
from mmcr.data.stream import BadImageError, LoaderOptions, ShardSplit, ShardStream, shard_batches, shard_index
from mmcr.data.stream.shard_loader import round_robin

pytest.importorskip("webdataset")


def packed(tree: Path, dest: Path, shard_size: int) -> Path:
    assert main(["data", "pack", str(tree), str(dest), "--shard-size", str(shard_size), "--no-progress"]) == 0
    return dest


def position(sample: dict) -> int:
    return int(sample["__index__"])


def test_the_index_lists_each_sample_as_a_byte_range_of_its_shard(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=5)
    index = shard_index(root, "train", cache_dir=tmp_path / "c")
    assert len(index) == 12 and index.classes == ["c0", "c1", "c2"]
    assert index.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    files = sorted((tree / "train").rglob("*.jpg"))
    assert index.source(7) == files[7].read_bytes()
    assert index.name(7).endswith("shard-000001.tar:000000007.jpg")
    assert list((tmp_path / "c").glob("shards-*.npz"))  # cached, and trusted while unchanged
    assert shard_index(root, "train", cache_dir=tmp_path / "c").offsets.tolist() == index.offsets.tolist()
    # the reader of the registry reads the same samples whole, into memory
    whole = load_dataset("webdataset", "train", root, image_size=16)
    assert whole.images.shape == (12, 3, 16, 16) and torch.equal(whole.labels, torch.from_numpy(index.labels))
    with pytest.raises(FileNotFoundError, match=r"no webdataset shards for split 'test'"):
        shard_index(root, "test", cache_dir=tmp_path / "c")


def test_a_changed_shard_is_indexed_again(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=5)
    before = shard_index(root, "train", cache_dir=tmp_path / "c")
    (root / "shard-000002.tar").unlink()
    after = shard_index(root, "train", cache_dir=tmp_path / "c")
    assert (len(before), len(after)) == (12, 10)


def test_kept_samples_are_read_once_an_epoch_over_2_ranks_x_2_workers(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=1)
    index = shard_index(root, "train", cache_dir=tmp_path / "c")
    keep = np.ones(12, dtype=bool)
    keep[[2, 9]] = False  # held out for validation: never pretrained on
    shards = ShardSplit(index, keep, 3).shards
    for epoch in (0, 1):
        seen: Counter[int] = Counter()
        for rank in (0, 1):
            stream = ShardStream(
                shards, seed=1, epoch=epoch, rank=rank, world=2, shuffle_buffer=3, decode=position,
                index=index, keep=keep,
            )
            seen.update(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))
        assert sorted(seen) == [i for i in range(12) if keep[i]] and set(seen.values()) == {1}


def test_skipped_samples_are_each_workers_first(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=2)
    index = shard_index(root, "train", cache_dir=tmp_path / "c")
    shards = ShardSplit(index, np.ones(12, dtype=bool), 3).shards

    def read(skip: tuple[int, ...]) -> dict[int, list[int]]:
        stream = ShardStream(
            shards, seed=0, shuffle_buffer=4, decode=position, index=index, skip=skip, tag_workers=True
        )
        out: dict[int, list[int]] = {0: [], 1: []}
        for worker, item in torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2):
            out[int(worker)].append(int(item))
        return out

    whole, skipped = read(()), read((2, 1))
    assert skipped == {0: whole[0][2:], 1: whole[1][1:]}


def test_the_round_robin_takes_one_sample_of_each_worker_in_turn() -> None:
    assert list(round_robin([3, 1, 2])) == [0, 1, 2, 0, 2, 0]
    assert list(round_robin([0, 2])) == [1, 1]


def batches_from(
    split: ShardSplit, start: int, workers: int, skip_bad: bool = False, skipped: set[int] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    options = LoaderOptions(num_workers=workers, prefetch_factor=1, skip_bad=skip_bad)
    batches = shard_batches(
        split, preset("imagenet", crop_size=8), num_views=2, seed=5, rank=0, world=1, local_batch=3,
        start_step=start, total_steps=6, options=options, skipped=set() if skipped is None else skipped,
    )
    return list(batches)


def test_batches_resumed_mid_epoch_are_the_uninterrupted_runs(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=2)
    split = ShardSplit(shard_index(root, "train", cache_dir=tmp_path / "c"), np.ones(12, dtype=bool), 3)
    assert split.steps_per_epoch(1, 3) == 4 and split.steps_per_epoch(2, 3) == 2
    whole = batches_from(split, 0, workers=2)
    assert len(whole) == 6 and whole[0][0].shape == (3, 2, 3, 8, 8) and whole[0][0].dtype == torch.uint8
    for start in (1, 5):  # inside epoch 0 and inside epoch 1
        resumed = batches_from(split, start, workers=2)
        assert len(resumed) == 6 - start
        for (a, la), (b, lb) in zip(whole[start:], resumed, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb)


def test_too_few_shards_or_samples_for_the_processes_are_sentences(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=5)  # 3 shards: 5, 5 and 2 samples
    split = ShardSplit(shard_index(root, "train", cache_dir=tmp_path / "c"), np.ones(12, dtype=bool), 3)
    assert split.steps_per_epoch(2, 2) == 1  # a rank may get only the 2-sample shard
    with pytest.raises(ValueError, match="3 shards cannot be split over 4 processes"):
        split.steps_per_epoch(4, 1)
    with pytest.raises(ValueError, match="only 2 samples of the shards an epoch, fewer than its batch of 3"):
        split.steps_per_epoch(2, 3)


def broken_member(shard: Path, member: str) -> None:
    """Rewrite ``shard`` with ``member``'s bytes replaced by garbage."""
    with tarfile.open(shard) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar]  # type: ignore[union-attr]
    with tarfile.open(shard, "w") as tar:
        for info, data in members:
            data = b"not a jpeg" if info.name == member else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_an_unreadable_member_stops_naming_it_or_is_replaced_and_counted(tree: Path, tmp_path: Path) -> None:
    root = packed(tree, tmp_path / "shards", shard_size=2)
    broken_member(root / "shard-000001.tar", "000000003.jpg")
    split = ShardSplit(shard_index(root, "train", cache_dir=tmp_path / "c"), np.ones(12, dtype=bool), 3)
    with pytest.raises(BadImageError, match=r"shard-000001\.tar:000000003\.jpg.*skip_bad_images"):
        batches_from(split, 0, workers=0)
    skipped: set[int] = set()
    batches = batches_from(split, 0, workers=2, skip_bad=True, skipped=skipped)[:4]  # epoch 0
    assert skipped == {3}
    labels = torch.cat([lab for _, lab in batches])
    # sample 3 (class 0) took the pixels and label of a neighbour in its batch
    assert labels.shape == (12,) and int((labels == 0).sum()) in (3, 4, 5)
    crops = torch.cat([c for c, _ in batches])
    assert len({c.numpy().tobytes() for c in crops}) == 11
