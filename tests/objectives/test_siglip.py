"""SigLIP's loss against the explicit pairwise sum; its learned temperature and bias."""

from __future__ import annotations

import math

import pytest
import torch

from mmcr.objectives import SigLIPLoss, build_objective


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def reference_siglip(z: torch.Tensor, image_views: int, log_t: float, bias: float) -> torch.Tensor:
    """The paper's double sum, written out: -(1/B) sum_i sum_j log(1 / (1 + exp(-y_ij x_ij)))."""
    b, k, _ = z.shape
    t = math.exp(log_t)
    pairs = []
    for a in range(image_views):
        for c in range(image_views, k):
            u, v = unit(z[:, a]), unit(z[:, c])
            total = torch.zeros((), dtype=z.dtype)
            for i in range(b):
                for j in range(b):
                    y = 1.0 if i == j else -1.0
                    x = t * (u[i] @ v[j]) + bias
                    total = total + torch.log(1 + torch.exp(-y * x))
            pairs.append(total / b)
    return torch.stack(pairs).mean()


@pytest.mark.parametrize(("k", "image_views"), [(2, 1), (4, 1), (3, 2)])
def test_siglip_equals_the_explicit_pairwise_sum(k: int, image_views: int) -> None:
    generator = torch.Generator().manual_seed(k + 7 * image_views)
    z = torch.randn(5, k, 4, dtype=torch.float64, generator=generator)
    loss_fn = SigLIPLoss(image_views=image_views, init_log_temperature=0.75, init_bias=-1.5).double()
    torch.testing.assert_close(loss_fn(z), reference_siglip(z, image_views, 0.75, -1.5), rtol=1e-12, atol=0)


def test_siglip_at_its_initial_values_matches_the_sum_too() -> None:
    z = torch.randn(6, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    loss_fn = build_objective("siglip").double()
    assert isinstance(loss_fn, SigLIPLoss)
    assert loss_fn.log_temperature.item() == pytest.approx(math.log(10)) and loss_fn.bias.item() == -10.0
    # the parameter holds ln 10 rounded to float32; the reference takes that value
    log_t = loss_fn.log_temperature.item()
    torch.testing.assert_close(loss_fn(z), reference_siglip(z, 1, log_t, -10.0), rtol=1e-12, atol=0)
    assert loss_fn.components["temperature"].item() == pytest.approx(10.0, rel=1e-6)
    assert loss_fn.components["bias"].item() == -10.0


def test_gradients_reach_the_temperature_and_the_bias_and_equal_the_reference() -> None:
    z = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    loss_fn = SigLIPLoss(init_log_temperature=0.25, init_bias=0.5).double()
    z1 = z.clone().requires_grad_(True)
    loss_fn(z1).backward()
    z2 = z.clone().requires_grad_(True)
    log_t = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    u, v = unit(z2[:, :1]), unit(z2[:, 1:])
    x = log_t.exp() * torch.einsum("iad,jcd->acij", u, v) + bias
    y = 2 * torch.eye(5, dtype=torch.float64) - 1
    ref = torch.log1p(torch.exp(-y * x)).sum(dim=(-2, -1)).mean() / 5
    ref.backward()
    assert z1.grad is not None and z2.grad is not None
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss_fn.log_temperature.grad, log_t.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss_fn.bias.grad, bias.grad, rtol=1e-10, atol=1e-14)
    assert loss_fn.log_temperature.grad.abs() > 0 and loss_fn.bias.grad.abs() > 0


def test_the_parameters_are_what_the_optimiser_gets_and_after_step_leaves_them() -> None:
    loss_fn = SigLIPLoss()
    assert sorted(name for name, _ in loss_fn.named_parameters()) == ["bias", "log_temperature"]
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    loss_fn(torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(0))).backward()
    optimizer.step()
    moved = (loss_fn.log_temperature.item(), loss_fn.bias.item())
    assert moved[1] != -10.0
    loss_fn.after_step()
    assert (loss_fn.log_temperature.item(), loss_fn.bias.item()) == moved


def test_the_bias_starts_the_loss_near_the_all_negative_prior() -> None:
    # with b = -10 every pair starts near "unmatched": the B - 1 negatives of a row cost
    # about exp(-10) each, the positive about 10 - t cos; so the loss is close to 10 - t mean cos
    z = torch.randn(32, 2, 16, generator=torch.Generator().manual_seed(1))
    loss_fn = SigLIPLoss()
    loss = loss_fn(z)
    positive = loss_fn.components["positive_cosine"]
    assert abs(loss.item() - (10 - 10 * positive.item())) < 0.05


def test_bad_settings_are_refused_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="image_views must be an integer >= 1"):
        SigLIPLoss(image_views=-1)
    with pytest.raises(ValueError, match="init_bias must be a finite number"):
        SigLIPLoss(init_bias=float("inf"))
    with pytest.raises(ValueError, match="siglip compares images with captions"):
        SigLIPLoss(image_views=3)(torch.randn(4, 3, 5))
