"""Applying sampled parameters to a whole batch at once: :func:`apply_params`, the fast path.

Crop, resize and flip of all N x K views are one ``grid_sample``; colour jitter runs in
four steps on contiguous slices of views sorted by the component they get at each step;
grayscale, blur and solarize gather the views that get them. Views are ``(N, K, C, S, S)``
float32 with S = ``config.crop_size`` pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mmcr.data.augment.config import AugmentConfig
from mmcr.data.augment.ops import (
    INPLACE_JITTER_OPS,
    gaussian_blur,
    grayscale_,
    jitter_enabled,
    solarize_,
)
from mmcr.data.augment.pixels import check_images, norm_stats, to_unit_float
from mmcr.data.augment.sampling import AugmentParams, wide_float
from mmcr.data.augment.workspace import Workspace

__all__ = ["apply_params", "crop_grid"]

# Step code of a view that gets no jitter component at that step.
_NO_OP = 4


def crop_grid(
    params: AugmentParams, size: int, device: torch.device, workspace: Workspace | None = None
) -> torch.Tensor:
    """Sampling grid ``(N, K * size, size, 2)`` for crop + resize + flip of all views.

    Output pixel j of a crop (left, width) samples input x = left + (j + 0.5) width / size
    - 0.5, clamped to the crop, exactly as ``F.interpolate(crop, bilinear,
    align_corners=False)`` does; a flip reverses the sample positions.
    """
    height, width = params.image_size
    n, k = params.num_images, params.num_views
    crop = params.crop.to(device=device, dtype=wide_float(device))
    top, left, h, w = crop.unbind(dim=-1)  # (N, K) each
    steps = torch.arange(size, dtype=crop.dtype, device=device) + 0.5
    xs = left[..., None] + (steps * (w / size)[..., None] - 0.5).clamp(min=0.0)
    xs = torch.minimum(xs, (left + w - 1.0)[..., None])
    ys = top[..., None] + (steps * (h / size)[..., None] - 0.5).clamp(min=0.0)
    ys = torch.minimum(ys, (top + h - 1.0)[..., None])
    flip = params.flip.to(device)[..., None]
    xs = torch.where(flip, xs.flip(-1), xs)
    # Pixel coordinate p -> normalised grid coordinate for align_corners=False.
    gx = ((2.0 * xs + 1.0) / width - 1.0).to(torch.float32)
    gy = ((2.0 * ys + 1.0) / height - 1.0).to(torch.float32)
    shape = (n, k, size, size, 2)
    if workspace is None:
        grid = torch.empty(shape, dtype=torch.float32, device=device)
    else:
        grid = workspace.get("grid", shape, torch.float32, device)
    grid[..., 0] = gx[:, :, None, :]
    grid[..., 1] = gy[:, :, :, None]
    return grid.view(n, k * size, size, 2)


def _apply_subset(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable[..., torch.Tensor], *args: torch.Tensor
) -> None:
    """``x[mask] = fn(x[mask], *(a[mask] for a in args))`` in place, for a bool mask ``(B,)``."""
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        return
    if idx.numel() == mask.numel():
        x.copy_(fn(x, *args))
        return
    x.index_copy_(0, idx, fn(x.index_select(0, idx), *(a.index_select(0, idx) for a in args)))


def _jitter(
    crops: torch.Tensor,
    params: AugmentParams,
    config: AugmentConfig,
    workspace: Workspace | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour jitter of the crops ``(N, C, K, S, S)`` (grid_sample's layout).

    Before step t the views are sorted by the component they get at step t, so each
    component runs in place on one contiguous slice. That costs a gather per step but
    keeps the number of kernels (and of thread pool wake-ups) independent of the 24
    possible orders. The first gather is the copy that turns grid_sample's layout into one
    image per view anyway: blocks of S*S pixels, one per (view, channel).

    Returns:
        ``(work, order)``: the jittered views ``(N * K, C, S, S)`` in sorted order, and
        ``order`` ``(N * K,)``: sorted position -> view index ``n * K + k``.
    """
    n, c, k, size = crops.shape[0], crops.shape[1], crops.shape[2], crops.shape[3]
    m = n * k
    device = crops.device
    enabled = torch.zeros(_NO_OP + 1, dtype=torch.bool, device=device)
    enabled[jitter_enabled(config, c)] = True
    if config.jitter_random_order:
        digits = params.jitter_order.reshape(m, 4)
    else:
        digits = torch.arange(4, device=device).expand(m, 4)
    active = params.jitter.reshape(m, 1) & enabled[digits]
    step_ops = torch.where(active, digits, _NO_OP)  # (M, 4): component of view v at step t
    factors = params.jitter_factors.reshape(m, 4)

    order = torch.argsort(step_ops[:, 0], stable=True)
    channels = torch.arange(c, device=device)
    blocks = ((order // k)[:, None] * c + channels) * k + (order % k)[:, None]
    blocks_flat = blocks.reshape(-1)
    if workspace is None:
        work = crops.reshape(n * c * k, size * size).index_select(0, blocks_flat)
    else:
        work = workspace.get("work", (n * c * k, size * size), torch.float32, device)
        torch.index_select(crops.reshape(n * c * k, size * size), 0, blocks_flat, out=work)
    work = work.view(m, c, size, size)
    spare: torch.Tensor | None = None
    for step in range(4):
        ops_now = step_ops[order, step]
        if step > 0 and not bool((ops_now[1:] >= ops_now[:-1]).all()):
            resort = torch.argsort(ops_now, stable=True)
            if spare is None:
                spare = (
                    torch.empty_like(work)
                    if workspace is None
                    else workspace.get("spare", tuple(work.shape), torch.float32, device)
                )
            torch.index_select(work, 0, resort, out=spare)
            work, spare = spare, work
            order = order[resort]
            ops_now = ops_now[resort]
        counts = torch.bincount(ops_now, minlength=_NO_OP + 1).tolist()
        start = 0
        for op in range(4):
            if counts[op]:
                stop = start + counts[op]
                INPLACE_JITTER_OPS[op](work[start:stop], factors[order[start:stop], op])
                start = stop
    return work, order


def _gray_blur_solarize(
    work: torch.Tensor, params: AugmentParams, order: torch.Tensor, config: AugmentConfig
) -> None:
    """Grayscale, blur and solarize the views ``work`` ``(M, C, S, S)`` (sorted by ``order``)
    that get them, in place: each touches a subset, so gather, transform, scatter back."""
    m = work.shape[0]
    if work.shape[1] == 3:
        _apply_subset(work, params.gray.reshape(m)[order], grayscale_)
    blur = params.blur.reshape(m)[order]
    if bool(blur.any()):
        sigma = params.blur_sigma.reshape(m)[order]
        kernel = int(config.blur_kernel or 3)
        _apply_subset(work, blur, lambda v, sd: gaussian_blur(v, sd, kernel), sigma)
    threshold = config.solarize_threshold
    _apply_subset(work, params.solarize.reshape(m)[order], lambda v: solarize_(v, threshold))


def apply_params(
    images: torch.Tensor,
    params: AugmentParams,
    config: AugmentConfig,
    *,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """Apply sampled parameters to a batch: the fast path.

    Crop, resize and flip of all N x K views are one ``grid_sample`` (the K views of an
    image are stacked along the grid's height, so the input is not repeated). Colour
    jitter then runs step by step: before each of its four steps the views are sorted by
    the component they get at that step, so each component runs in place on one
    contiguous slice with per-view factors. Grayscale, blur and solarize gather the views
    that get them, transform them and scatter them back. The first sort is folded into the
    copy from grid_sample's layout and the last one into the copy to the output.

    Args:
        images: uint8 ``(N, C, H, W)`` (0-255) or float in [0, 1], C in {1, 3}.
        params: from :func:`~mmcr.data.augment.sample_params` for these N images and ``(H, W)``.
        config: the recipe the parameters were drawn for.
        workspace: scratch memory reused across calls (internal; MultiViewAugment passes
            its own on CPU). Results do not depend on it.

    Returns:
        float32 ``(N, K, C, crop_size, crop_size)``, normalised with ``config.mean/std``.
    """
    images = check_images(images)
    n, c, height, width = images.shape
    if params.num_images != n or tuple(params.image_size) != (height, width):
        raise ValueError(
            f"params were drawn for {params.num_images} images of size {params.image_size}, "
            f"got {n} images of size {(height, width)}"
        )
    k, size = params.num_views, config.crop_size
    device = images.device
    if workspace is not None and images.dtype == torch.uint8:
        x = workspace.get("input", tuple(images.shape), torch.float32, device)
        x.copy_(images).div_(255.0)
    else:
        x = to_unit_float(images)
    stats = norm_stats(config, c, 1, 4, x)
    if n == 0:
        return x.new_zeros((0, k, c, size, size))
    p = params.to(device)
    m = n * k

    # All K views read the same image: stack them along the grid's height instead of
    # repeating the input K times.
    crops = F.grid_sample(
        x,
        crop_grid(p, size, device, workspace),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    ).view(n, c, k, size, size)
    work, order = _jitter(crops, p, config, workspace)
    _gray_blur_solarize(work, p, order, config)
    if stats is not None:
        work.sub_(stats[0]).div_(stats[1])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(m, device=device)
    # The crops are dead after the gather: reuse their memory for the output.
    out = crops.view(m, c * size * size)
    torch.index_select(work.view(m, c * size * size), 0, inverse, out=out)
    return out.view(n, k, c, size, size)
