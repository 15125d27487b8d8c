"""Worker datasets of the streaming path, and the augmentation of pre-cut crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmcr.data import MultiViewAugment, preset
from mmcr.data.augment import AugmentConfig
from mmcr.data.stream import (
    BadImageError,
    CropDataset,
    LoaderOptions,
    PrecroppedAugment,
    SquareDataset,
    StreamedSplit,
    folder_index,
    make_loader,
    stream_batches,
)


def split_of(tree: Path, tmp_path: Path, skip_bad: bool = False) -> StreamedSplit:
    index = folder_index(tree, "train", cache_dir=tmp_path / "c", skip_bad=skip_bad)
    return StreamedSplit(index, np.arange(len(index)), 3)


def test_crops_depend_on_seed_epoch_and_image_only(tree: Path, tmp_path: Path) -> None:
    dataset = CropDataset(split_of(tree, tmp_path), preset("imagenet", crop_size=16), 2, seed=3)
    crops, label, skipped = dataset[(1, 5)]
    assert crops.shape == (2, 3, 16, 16) and crops.dtype == torch.uint8
    assert label == 1 and skipped == -1
    assert torch.equal(dataset[(1, 5)][0], crops)
    assert not torch.equal(dataset[(2, 5)][0], crops)
    assert not torch.equal(CropDataset(dataset.split, dataset.config, 2, seed=4)[(1, 5)][0], crops)


def test_workers_read_the_batches_in_order_whatever_their_number(tree: Path, tmp_path: Path) -> None:
    dataset = CropDataset(split_of(tree, tmp_path), preset("imagenet", crop_size=16), 2, seed=0)
    keys = [[(0, 3), (0, 1), (0, 7)], [(1, 0), (1, 11), (1, 4)], [(1, 2), (1, 9), (1, 6)]]
    alone = [b[0] for b in make_loader(dataset, keys, LoaderOptions(num_workers=0))]
    workers = [b[0] for b in make_loader(dataset, keys, LoaderOptions(num_workers=2, prefetch_factor=1))]
    assert len(alone) == len(workers) == 3
    for a, b in zip(alone, workers, strict=True):
        assert a.shape == (3, 2, 3, 16, 16) and torch.equal(a, b)


def test_an_unreadable_file_stops_or_is_skipped_and_counted(tree: Path, tmp_path: Path) -> None:
    (tree / "train" / "c0" / "2.jpg").write_bytes(b"garbage")
    config = preset("imagenet", crop_size=8)
    with pytest.raises(BadImageError, match=r"c0/2\.jpg"):
        CropDataset(split_of(tree, tmp_path), config, 2, seed=0)[(0, 2)]
    dataset = CropDataset(split_of(tree, tmp_path, skip_bad=True), config, 2, seed=0, skip_bad=True)
    skipped: set[int] = set()
    keys = [[(0, i) for i in range(6)], [(0, i) for i in range(6, 12)]]
    batches = list(stream_batches(make_loader(dataset, keys, LoaderOptions(num_workers=0)), skipped))
    assert [b.shape[0] for b in batches] == [6, 6]
    assert skipped == {2}


def test_square_dataset_gives_the_centre_square(tree: Path, tmp_path: Path) -> None:
    square, label, _ = SquareDataset(split_of(tree, tmp_path), 12)[4]
    assert square.shape == (3, 12, 12) and label == 1
    assert float(square[1].float().mean()) > 150  # class c1 is green


def test_precropped_augment_leaves_plain_crops_alone() -> None:
    config = AugmentConfig(crop_size=8, flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    crops = torch.randint(0, 256, (4, 2, 3, 8, 8), dtype=torch.uint8)
    views = PrecroppedAugment(config)(crops, 2, generator=torch.Generator().manual_seed(0))
    assert views.shape == (4, 2, 3, 8, 8)
    torch.testing.assert_close(views, crops.float() / 255, atol=1e-5, rtol=0)


def test_precropped_augment_keeps_view_positions_and_flips() -> None:
    config = AugmentConfig(crop_size=8, flip_p=(1.0, 0.0), jitter_p=0.0, gray_p=(0.0, 1.0))
    crops = torch.randint(0, 256, (3, 2, 3, 8, 8), dtype=torch.uint8)
    views = PrecroppedAugment(config)(crops, 2)
    torch.testing.assert_close(views[:, 0], crops[:, 0].flip(-1).float() / 255, atol=1e-5, rtol=0)
    grey = views[:, 1]
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    assert isinstance(PrecroppedAugment(config), MultiViewAugment)


def test_precropped_augment_rejects_uncropped_images() -> None:
    with pytest.raises(ValueError, match=r"expected crops \(N, 2, C, 8, 8\)"):
        PrecroppedAugment(AugmentConfig(crop_size=8))(torch.zeros((4, 3, 8, 8), dtype=torch.uint8), 2)


def test_crop_boxes_lie_in_the_image_within_the_scale_and_ratio() -> None:
    from mmcr.data.stream import crop_generator, draw_crops

    draws = [draw_crops(crop_generator(0, 0, i), 8, 300, 500, (0.08, 1.0), (0.75, 4 / 3)) for i in range(50)]
    boxes = np.concatenate(draws)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and (left + w <= 500).all()
    area = h * w / (300 * 500)
    assert area.min() > 0.07 and area.max() <= 1.0 and area.std() > 0.1
    assert ((w / h) > 0.7).all() and ((w / h) < 1.4).all()
    # no attempt fits (a wide aspect on a tall image at full area): the centred whole-image fallback
    fallback = draw_crops(crop_generator(0, 0, 0), 2, 400, 100, (1.0, 1.0), (2.0, 3.0))
    assert fallback.tolist() == [[175, 0, 50, 100]] * 2
