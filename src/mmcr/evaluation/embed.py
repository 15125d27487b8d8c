"""Turning images into features and embeddings: batched inference on plain and augmented views.

Images held in memory go through :func:`batched_apply`; images of a streamed data set are
read from their files by DataLoader workers in :func:`streamed_apply`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmcr.data import AugmentConfig, plain_view
from mmcr.data.stream import LoaderOptions, SquareDataset, StreamedSplit, make_loader


@torch.no_grad()
def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    config: AugmentConfig,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """Apply ``fn`` to the plain views of ``images`` in batches; returns a CPU float32 tensor."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = plain_view(images[start : start + batch_size].to(device), config)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(fn(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def streamed_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    split: StreamedSplit,
    config: AugmentConfig,
    options: LoaderOptions,
    *,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """:func:`batched_apply` on images read from their files by DataLoader workers.

    The workers decode each file's centre square at the crop size; only the features are
    kept, so memory does not grow with the split. Returns a CPU float32 tensor, in the
    split's order.
    """
    dataset = SquareDataset(split, config.crop_size, options.skip_bad)
    batches = [list(range(s, min(s + batch_size, len(split)))) for s in range(0, len(split), batch_size)]
    out = []
    for images, _labels, _skipped in make_loader(dataset, batches, options):
        out.append(fn(plain_view(images.to(device), config)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def multiview_embeddings(
    network: torch.nn.Module,
    images: torch.Tensor,
    augment: torch.nn.Module,
    num_views: int,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """Projector outputs of ``num_views`` augmented views per image: CPU float32 ``(N, K, D)``.

    ``network`` returns ``(features, projections)`` (an :class:`~mmcr.models.MMCRNetwork`).
    """
    zs = []
    for start in range(0, images.shape[0], batch_size):
        views = augment(images[start : start + batch_size].to(device), num_views, generator=generator)
        b, k = views.shape[:2]
        _, z = network(views.flatten(0, 1))
        zs.append(z.float().reshape(b, k, -1).cpu())
    return torch.cat(zs)


def view_geometry(
    network: torch.nn.Module,
    images: torch.Tensor,
    augment: torch.nn.Module,
    num_views: int,
    *,
    points: int,
    seed: int,
    device: torch.device | str = "cpu",
    chunk: int = 256,
) -> tuple[dict[str, float], dict[str, float]]:
    """The geometry of ``num_views`` fresh views of ``images``: ``(geometry, mi)``.

    ``geometry`` is :func:`batched_geometry` at ``points`` samples per batch (the training
    batch size, since PPE depends on P); ``mi`` the terms of
    :func:`~mmcr.geometry.mi_lower_bound` over all images (empty for a single view). The
    views are drawn ``chunk`` images at a time from a generator seeded with ``seed``.
    """
    from mmcr.geometry.mutual_information import mi_lower_bound

    generator = torch.Generator().manual_seed(seed)
    z = multiview_embeddings(
        network, images, augment, num_views, generator=generator, device=device, batch_size=chunk
    )
    # the bound's numbers only: its "reliability" entry is a sentence
    terms = mi_lower_bound(z).items() if z.shape[1] >= 2 else ()
    mi = {key: float(value) for key, value in terms if isinstance(value, (int, float))}
    return batched_geometry(z, points), mi


def batched_geometry(z: torch.Tensor, points: int) -> dict[str, float]:
    """:func:`~mmcr.geometry.geometry_summary` over consecutive batches of ``points`` samples, averaged.

    PPE depends on the number of points P, so geometry is measured at the training batch
    size to be comparable with the training loss.
    """
    from mmcr.geometry.metrics import geometry_summary

    size = min(points, z.shape[0])
    parts = [geometry_summary(z[s : s + size]) for s in range(0, z.shape[0] - size + 1, size)]
    out = {key: sum(p[key] for p in parts) / len(parts) for key in parts[0]}
    out["batch_points"] = float(size)
    return out
