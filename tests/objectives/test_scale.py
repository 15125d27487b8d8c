"""The loss is scale-invariant for every finite input, and PPE checks its domain."""

from __future__ import annotations

import pytest
import torch

from mmcr import MMCRLoss, pretraining_percent_error


@pytest.mark.parametrize("lmbda", [0.0, 0.1])
@pytest.mark.parametrize("scale", [1e20, 1e30, 5e37, 1e-20, 1e-30])
def test_loss_and_gradient_do_not_depend_on_the_views_scale(lmbda: float, scale: float) -> None:
    z = torch.randn(64, 2, 32, generator=torch.Generator().manual_seed(0))
    reference = z.clone().requires_grad_()
    loss_fn = MMCRLoss(lmbda=lmbda)
    expected = loss_fn(reference)
    expected.backward()
    assert reference.grad is not None
    scaled = (z * scale).requires_grad_()
    loss = loss_fn(scaled)
    loss.backward()
    assert scaled.grad is not None
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)  # was exactly -0.0 above ~1e19
    torch.testing.assert_close(scaled.grad * scale, reference.grad, rtol=1e-4, atol=1e-5)
    assert float(loss_fn.components["ppe"]) < 1


def test_views_of_very_different_scales_in_one_batch() -> None:
    z = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(1))
    mixed = z * torch.logspace(-30, 30, 16)[:, None, None]
    torch.testing.assert_close(MMCRLoss()(mixed), MMCRLoss()(z), rtol=1e-5, atol=0)


def test_ppe_of_a_centroid_matrix_checks_its_domain() -> None:
    with pytest.raises(ValueError, match="rows of norm <= 1"):
        pretraining_percent_error(torch.full((8, 4), 5.0))
    with pytest.raises(ValueError, match="must be floating point"):
        pretraining_percent_error(torch.ones(8, 4, dtype=torch.int64))
    unit = torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(2)), dim=1)
    assert 0.0 <= float(pretraining_percent_error(unit)) <= 1.0
