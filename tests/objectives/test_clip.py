"""CLIP's loss against a hand-written cross entropy; its learned scale, the clamp, the view split.

Also the convention of paired data on the MMCR side: the stacked ``(B, K_img + K_txt, D)``
views go to the existing ``MMCRLoss`` unchanged, several captions per image included.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmcr import MMCRLoss
from mmcr.objectives import CLIPLoss, build_objective, objective_class
from mmcr.objectives.clip import INIT_LOGIT_SCALE, MAX_LOGIT_SCALE


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def reference_clip(z: torch.Tensor, image_views: int, logit_scale: float) -> torch.Tensor:
    """Loops and explicit logs: the mean over (image view, caption) pairs of CLIP's loss."""
    b, k, _ = z.shape
    scale = math.exp(logit_scale)
    pairs = []
    for a in range(image_views):
        for c in range(image_views, k):
            u, v = unit(z[:, a]), unit(z[:, c])
            total = torch.zeros((), dtype=z.dtype)
            for i in range(b):
                row = torch.stack([scale * (u[i] @ v[j]) for j in range(b)])
                column = torch.stack([scale * (u[j] @ v[i]) for j in range(b)])
                total = total - (row[i] - torch.log(torch.exp(row).sum()))
                total = total - (column[i] - torch.log(torch.exp(column).sum()))
            pairs.append(total / (2 * b))
    return torch.stack(pairs).mean()


@pytest.mark.parametrize(("k", "image_views"), [(2, 1), (4, 1), (3, 2), (5, 2)])
def test_clip_equals_the_hand_written_cross_entropy(k: int, image_views: int) -> None:
    generator = torch.Generator().manual_seed(k * 10 + image_views)
    z = torch.randn(6, k, 5, dtype=torch.float64, generator=generator)
    loss_fn = CLIPLoss(image_views=image_views).double()
    # the parameter holds ln(1/0.07) rounded to float32; the reference takes that value
    assert loss_fn.logit_scale.item() == pytest.approx(INIT_LOGIT_SCALE, rel=1e-7)
    expected = reference_clip(z, image_views, loss_fn.logit_scale.item())
    torch.testing.assert_close(loss_fn(z), expected, rtol=1e-12, atol=0)


def test_clip_gradients_equal_the_reference_ones_for_views_and_scale() -> None:
    z = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss_fn = CLIPLoss(image_views=1, init_logit_scale=1.25).double()
    z1 = z.clone().requires_grad_(True)
    loss_fn(z1).backward()
    z2 = z.clone().requires_grad_(True)
    scale = torch.tensor(1.25, dtype=torch.float64, requires_grad=True)
    # the reference as a function of the scale too: logits exp(s) u.v
    u, v = unit(z2[:, :1]), unit(z2[:, 1:])
    logits = scale.exp() * torch.einsum("iad,jcd->acij", u, v)
    ref = 0.0
    for a in range(1):
        for c in range(2):
            lg = logits[a, c]
            image_to_text = -(lg.diagonal() - lg.logsumexp(1)).mean()
            text_to_image = -(lg.diagonal() - lg.logsumexp(0)).mean()
            ref = ref + (image_to_text + text_to_image) / 2
    (ref / 2).backward()
    assert z1.grad is not None and z2.grad is not None and scale.grad is not None
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss_fn.logit_scale.grad, scale.grad, rtol=1e-10, atol=1e-14)
    assert loss_fn.logit_scale.grad.abs() > 0


def test_the_scale_starts_at_clips_value_and_is_a_parameter_the_optimiser_moves() -> None:
    loss_fn = build_objective("clip")
    assert isinstance(loss_fn, CLIPLoss) and objective_class("CLIP") is CLIPLoss
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert [name for name, _ in loss_fn.named_parameters()] == ["logit_scale"]
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.1)
    z = torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(0))
    before = loss_fn.logit_scale.item()
    loss_fn(z).backward()
    assert loss_fn.components["logit_scale"].item() == pytest.approx(math.exp(before))
    optimizer.step()
    assert loss_fn.logit_scale.item() != before


def test_the_clamp_caps_the_scale_at_ln_100_and_leaves_smaller_values() -> None:
    loss_fn = CLIPLoss()
    with torch.no_grad():
        loss_fn.logit_scale.fill_(7.0)
    loss_fn.after_step()
    assert loss_fn.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    assert MAX_LOGIT_SCALE == pytest.approx(math.log(100))
    with torch.no_grad():
        loss_fn.logit_scale.fill_(1.0)
    loss_fn.clamp_logit_scale()
    assert loss_fn.logit_scale.item() == 1.0
    # a step that would push the scale past the cap: the clamp brings it back, grad untouched
    loss_fn = CLIPLoss(init_logit_scale=MAX_LOGIT_SCALE)
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=10.0)
    z = torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(0))
    z = torch.cat([z[:, :1], z[:, :1] + 0.01 * z[:, 1:]], dim=1)  # matched pairs: a larger scale helps
    loss_fn(z).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad < 0
    optimizer.step()
    assert loss_fn.logit_scale.item() > MAX_LOGIT_SCALE
    loss_fn.after_step()
    assert loss_fn.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)


def test_the_view_split_is_checked_with_a_sentence() -> None:
    with pytest.raises(ValueError, match="image_views must be an integer >= 1"):
        CLIPLoss(image_views=0)
    with pytest.raises(ValueError, match="leaves 0 caption views"):
        CLIPLoss(image_views=2)(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match=r"init_logit_scale .* is above max_logit_scale"):
        CLIPLoss(init_logit_scale=5.0)
    with pytest.raises(ValueError, match="non-finite"):
        CLIPLoss()(torch.full((4, 2, 3), float("nan")))


def test_matched_pairs_give_a_lower_loss_than_shuffled_ones() -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(16, 1, 8, generator=g)
    captions = images + 0.05 * torch.randn(16, 1, 8, generator=g)
    loss_fn = CLIPLoss()
    matched = loss_fn(torch.cat([images, captions], dim=1))
    shuffled = loss_fn(torch.cat([images, captions.roll(1, dims=0)], dim=1))
    assert matched < 0.1 < shuffled


def test_under_autocast_the_loss_runs_in_float32() -> None:
    z = torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(3))
    loss_fn = CLIPLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(z.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(z.bfloat16().float()))


# ----------------------------------------------------------------------------- MMCR on paired views


def test_mmcr_takes_the_stacked_views_unchanged_one_caption() -> None:
    g = torch.Generator().manual_seed(4)
    z_image, z_text = torch.randn(10, 1, 6, generator=g, dtype=torch.float64), torch.randn(
        10, 1, 6, generator=g, dtype=torch.float64
    )
    z = torch.cat([z_image, z_text], dim=1)  # (B, K_img + K_txt, D)
    centroids = (unit(z_image[:, 0]) + unit(z_text[:, 0])) / 2
    expected = -torch.linalg.matrix_norm(centroids, ord="nuc")
    torch.testing.assert_close(MMCRLoss()(z), expected, rtol=1e-10, atol=0)


def test_mmcr_takes_several_captions_per_image() -> None:
    g = torch.Generator().manual_seed(5)
    z_image = torch.randn(10, 2, 6, generator=g, dtype=torch.float64)
    z_text = torch.randn(10, 3, 6, generator=g, dtype=torch.float64)
    z = torch.cat([z_image, z_text], dim=1).requires_grad_(True)
    loss_fn = MMCRLoss(lmbda=0.1)
    loss = loss_fn(z)
    views = unit(z.detach())
    centroids = views.mean(dim=1)
    local = torch.stack([torch.linalg.matrix_norm(views[n], ord="nuc") for n in range(10)]).mean()
    expected = 0.1 * local - torch.linalg.matrix_norm(centroids, ord="nuc")
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-10, atol=0)
    loss.backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()) and z.grad[:, 2:].abs().sum() > 0
