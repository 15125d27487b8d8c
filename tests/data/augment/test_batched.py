"""The batched path: shapes, dtypes and errors, equality with the per-image reference
path, and the module (workspace reuse, pickling)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mmcr.data import MultiViewAugment, apply_params, preset, sample_params

from ..augment_reference import augment_one
from .helpers import images


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_views", [1, 2, 5])
def test_output_shape_and_dtype(channels: int, num_views: int) -> None:
    augment = MultiViewAugment(replace(preset("cifar", crop_size=12), mean=(0.5,), std=(0.25,)))
    out = augment(images(3, channels, 20, 20), num_views, torch.Generator().manual_seed(0))
    assert out.shape == (3, num_views, channels, 12, 12) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_float_input_equals_uint8_input() -> None:
    x = images()
    augment = MultiViewAugment(preset("cifar", crop_size=16))
    a = augment(x, 2, torch.Generator().manual_seed(5))
    b = augment(x.double() / 255, 2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_crop_larger_than_image_upsamples() -> None:
    out = MultiViewAugment(preset("cifar", crop_size=40))(images(2, 3, 10, 10), 2)
    assert out.shape == (2, 2, 3, 40, 40)


def test_empty_batch() -> None:
    out = MultiViewAugment(preset("cifar"))(images(0, 3, 32, 32), 3)
    assert out.shape == (0, 3, 3, 32, 32)


def test_bad_inputs() -> None:
    augment = MultiViewAugment(preset("cifar"))
    with pytest.raises(ValueError, match="num_views"):
        augment(images(), 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augment(images()[0], 2)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        augment(images(2, 2), 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(torch.full((2, 3, 8, 8), 2.0), 2)
    with pytest.raises(ValueError, match="uint8"):
        augment(torch.zeros(2, 3, 8, 8, dtype=torch.int32), 2)
    with pytest.raises(ValueError, match="mean/std"):
        MultiViewAugment(replace(preset("cifar"), mean=(0.5, 0.5), std=(0.2, 0.2)))(images(), 1)
    params = sample_params(preset("cifar"), 3, 2, (20, 24))
    with pytest.raises(ValueError, match="params were drawn for 3 images"):
        apply_params(images(4), params, preset("cifar"))


@pytest.mark.parametrize(
    ("name", "shape", "crop"),
    [
        ("cifar", (6, 3, 32, 32), None),
        ("imagenet", (3, 3, 40, 52), 24),
        ("stl10", (3, 3, 48, 48), 32),
        ("fashion-mnist", (5, 1, 28, 28), None),
        ("digits", (5, 1, 8, 8), None),
    ],
)
@pytest.mark.parametrize("random_order", [True, False])
def test_batched_matches_per_image(
    name: str, shape: tuple[int, int, int, int], crop: int | None, random_order: bool
) -> None:
    config = replace(preset(name, crop_size=crop), jitter_random_order=random_order)
    if name == "imagenet":
        config = replace(config, solarize_p=(0.5, 0.5))
    x = images(*shape, seed=3)
    num_views = 4
    params = sample_params(
        config, shape[0], num_views, shape[2:], generator=torch.Generator().manual_seed(9)
    )
    batched = apply_params(x, params, config)
    for n in range(shape[0]):
        for k in range(num_views):
            single = augment_one(x[n], params, config, (n, k))
            torch.testing.assert_close(batched[n, k], single, atol=2e-4, rtol=0)


def test_every_op_exercised_in_matching_test() -> None:
    """The parameters used above switch every op on for some view and off for another."""
    config = replace(preset("imagenet", crop_size=24), solarize_p=(0.5, 0.5))
    params = sample_params(config, 3, 4, (40, 52), generator=torch.Generator().manual_seed(9))
    for flags in (params.flip, params.jitter, params.gray, params.blur, params.solarize):
        assert bool(flags.any()) and not bool(flags.all())


def test_forward_equals_sample_then_apply() -> None:
    augment = MultiViewAugment(preset("cifar"))
    x = images(5, 3, 32, 32)
    out = augment(x, 2, torch.Generator().manual_seed(11))
    params = augment.sample_params(x, 2, torch.Generator().manual_seed(11))
    assert torch.equal(out, apply_params(x, params, augment.config))


def test_workspace_reuse_keeps_results_independent() -> None:
    """On CPU the module reuses scratch memory across calls; outputs must not share it."""
    augment = MultiViewAugment(preset("cifar"))
    big, small = images(8, 3, 32, 32, seed=1), images(3, 3, 40, 36, seed=2)
    first = augment(big, 3, torch.Generator().manual_seed(0))
    kept = first.clone()
    second = augment(small, 2, torch.Generator().manual_seed(1))
    third = augment(big, 3, torch.Generator().manual_seed(0))
    assert torch.equal(first, kept) and torch.equal(first, third)
    params = sample_params(
        augment.config, 3, 2, (40, 36), generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(second, apply_params(small, params, augment.config))
    augment.clear_workspace()
    assert torch.equal(augment(big, 3, torch.Generator().manual_seed(0)), first)


def test_module_pickles_and_has_no_state() -> None:
    import copy
    import pickle

    augment = MultiViewAugment(preset("fashion-mnist"))
    x = images(2, 1, 28, 28)
    out = augment(x, 2, torch.Generator().manual_seed(0))
    for other in (pickle.loads(pickle.dumps(augment)), copy.deepcopy(augment)):
        assert torch.equal(other(x, 2, torch.Generator().manual_seed(0)), out)
    assert augment.state_dict() == {}
