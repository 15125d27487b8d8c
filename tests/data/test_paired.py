"""The paired data set type, the grouped split and the caption of a webdataset sample."""

from __future__ import annotations

import pytest
import torch

from mmcr.data import PairedDataset, dataset_info, load_paired
from mmcr.data.paired import decode_caption, grouped_split, paired_dataset_names, sample_captions


def toy(n: int = 4) -> PairedDataset:
    return PairedDataset(
        images=torch.arange(n * 3 * 2 * 2, dtype=torch.uint8).reshape(n, 3, 2, 2),
        captions=[[f"item {i}"] + [f"alt {i}.{j}" for j in range(i)] for i in range(n)],
        name="toy",
        keys=[f"k{i}" for i in range(n)],
        labels={"kind": torch.tensor([0, 1, -1, 1][:n])},
        label_names={"kind": ["a", "b"]},
        groups=["g0", "g0", "g1", "g2"][:n],
    )


def test_subset_keeps_everything_aligned() -> None:
    data = toy()
    part = data.subset([3, 1])
    assert part.keys == ["k3", "k1"] and part.groups == ["g2", "g0"]
    assert part.captions == [data.captions[3], data.captions[1]]
    assert torch.equal(part.images, data.images[[3, 1]])
    assert part.labels["kind"].tolist() == [1, 1] and part.label_names == {"kind": ["a", "b"]}
    assert part.caption_counts().tolist() == [4, 2]
    texts, owner = part.flat_captions()
    assert len(texts) == 6 and owner.tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="1-D"):
        data.subset(torch.zeros(2, 2, dtype=torch.long))


def test_image_dataset_for_probes() -> None:
    images = toy().image_dataset("kind")
    assert images.labels.tolist() == [0, 1, -1, 1] and images.classes == ["a", "b"]
    assert images.num_classes == 2
    with pytest.raises(ValueError, match="label kinds"):
        toy().image_dataset("colour")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"captions": [["a"], ["b"]]}, "caption lists"),
        ({"captions": [["a"], [], ["c"], ["d"]]}, "one or more non-empty captions"),
        ({"captions": [["a"], [" "], ["c"], ["d"]]}, "one or more non-empty captions"),
        ({"images": torch.zeros(4, 3, 2, 2)}, "uint8"),
        ({"labels": {"kind": torch.tensor([0, 5, 0, 0])}}, "only 2 names"),
        ({"labels": {}}, "must be the same"),
        ({"groups": ["g"]}, "groups"),
    ],
)
def test_invalid_paired_data_are_refused(change: dict, message: str) -> None:
    fields = {**toy().__dict__, **change}
    with pytest.raises(ValueError, match=message):
        PairedDataset(**fields)


def test_grouped_split_never_splits_a_group() -> None:
    generator = torch.Generator().manual_seed(1)
    groups = [f"g{int(g)}" for g in torch.randint(0, 60, (500,), generator=generator)]
    parts = grouped_split(groups, {"test": 0.2, "val": 0.1}, seed=3)
    assert set(parts) == {"test", "val", "train"}
    every = torch.cat(list(parts.values()))
    assert torch.equal(torch.sort(every).values, torch.arange(500))  # disjoint and complete
    sides = [{groups[i] for i in part.tolist()} for part in parts.values()]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert 100 <= len(parts["test"]) < 100 + 30 and 50 <= len(parts["val"]) < 50 + 30
    again = grouped_split(groups, {"test": 0.2, "val": 0.1}, seed=3)
    assert all(torch.equal(again[p], parts[p]) for p in parts)
    other = grouped_split(groups, {"test": 0.2, "val": 0.1}, seed=4)
    assert not torch.equal(other["test"], parts["test"])
    with pytest.raises(ValueError, match="sum to less than 1"):
        grouped_split(groups, {"test": 0.6, "val": 0.4})


def test_paired_names_in_the_registry() -> None:
    assert {"emoji", "csv"} <= set(paired_dataset_names())
    assert dataset_info("emoji").channels == 3
    with pytest.raises(ValueError, match="images only"):
        load_paired("digits", "train")


def test_caption_of_a_webdataset_sample() -> None:
    sample = {"__key__": "000017", "__url__": "shards/train-0003.tar", "jpg": b"...", "txt": b" a cat\n"}
    assert sample_captions(sample) == ["a cat"]
    several = {**sample, "txt": b"a cat\n\na small cat\n"}
    assert sample_captions(several, split_lines=True) == ["a cat", "a small cat"]
    where = r"shard shards/train-0003\.tar, sample '000017'"
    with pytest.raises(ValueError, match=where + r": the caption is not UTF-8 \(byte ff at offset 2\)"):
        sample_captions({**sample, "txt": b"a \xff cat"})
    with pytest.raises(ValueError, match=where + ": the caption is empty"):
        sample_captions({**sample, "txt": b"  \n"})
    with pytest.raises(ValueError, match=where + r": no \.txt caption member \(members: jpg\)"):
        sample_captions({k: v for k, v in sample.items() if k != "txt"})
    assert decode_caption("\ufeffhello ", "x") == "hello"
