"""CLIP and SigLIP are exact under data parallelism: 2 gloo processes equal one process on the full batch.

Rank ``r`` holds rows ``r*B/2 : (r+1)*B/2`` of a fixed ``z`` (images first, then captions).
Every rank must return the loss of the global batch and receive ``W`` times the
single-process gradient of its rows (DDP's averaging divides it back); the learned scale
(and SigLIP's bias) must get the single-process gradient on every rank, identically, so
that the ranks stay in step without an all-reduce; and two towers wrapped in
DistributedDataParallel must get the single-process parameter gradients. One spawn runs
every check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmcr.objectives import CLIPLoss, Objective, SigLIPLoss

try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
    from distributed_helpers import run_distributed
except ImportError:  # pragma: no cover - layout with tests/__init__.py
    from tests.distributed_helpers import run_distributed  # type: ignore[no-redef]

pytestmark = pytest.mark.distributed

WORLD_SIZE = 2
BATCH = 8
IMAGE_DIM, TEXT_DIM, OUT_DIM = 10, 7, 6
#: (image views, caption views) per datum
SPLITS = ((1, 1), (1, 3), (2, 2))
OBJECTIVES = ("clip", "siglip")
RTOL = 1e-5


def make_objective(name: str, image_views: int) -> Objective:
    # SigLIP at a milder start than its init, so that every term carries gradient
    if name == "clip":
        return CLIPLoss(image_views=image_views)
    return SigLIPLoss(image_views=image_views, init_log_temperature=1.5, init_bias=-2.0)


def make_inputs(k_img: int, k_txt: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z`` (B, K, D), tower inputs: images (B, K_img, IMAGE_DIM) and captions (B, K_txt, TEXT_DIM)."""
    generator = torch.Generator().manual_seed(100 * k_img + k_txt)
    z = torch.randn(BATCH, k_img + k_txt, OUT_DIM, generator=generator)
    images = torch.randn(BATCH, k_img, IMAGE_DIM, generator=generator)
    captions = torch.randn(BATCH, k_txt, TEXT_DIM, generator=generator)
    return z, images, captions


def make_towers() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    image_tower = nn.Sequential(nn.Linear(IMAGE_DIM, 12), nn.ReLU(), nn.Linear(12, OUT_DIM))
    return image_tower, nn.Linear(TEXT_DIM, OUT_DIM)


def flat_grads(*modules: nn.Module) -> torch.Tensor:
    return torch.cat(
        [p.grad.detach().reshape(-1).clone() for m in modules for p in m.parameters() if p.grad is not None]
    )


def objective_grads(objective: Objective) -> torch.Tensor:
    return torch.stack([p.grad.detach().clone() for p in objective.parameters() if p.grad is not None])


def worker(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    per_rank = BATCH // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    out: dict[str, torch.Tensor] = {}
    for name in OBJECTIVES:
        for k_img, k_txt in SPLITS:
            key = f"{name}/{k_img}+{k_txt}"
            z, images, captions = make_inputs(k_img, k_txt)
            objective = make_objective(name, k_img)
            z_local = z[rows].clone().requires_grad_(True)
            loss = objective(z_local)
            loss.backward()
            out[f"{key}/loss"] = loss.detach()
            out[f"{key}/grad"] = z_local.grad.detach().clone()  # type: ignore[union-attr]
            out[f"{key}/objective_grad"] = objective_grads(objective)
            # two towers under DDP; the objective's own parameters outside it
            image_tower, text_tower = (DistributedDataParallel(t) for t in make_towers())
            objective = make_objective(name, k_img)
            z_model = torch.cat([image_tower(images[rows]), text_tower(captions[rows])], dim=1)
            objective(z_model).backward()
            out[f"{key}/towers"] = flat_grads(image_tower.module, text_tower.module)
            out[f"{key}/towers_objective_grad"] = objective_grads(objective)
    return out


def test_clip_and_siglip_are_exact_under_data_parallelism(tmp_path: Path) -> None:
    results = run_distributed(worker, tmp_path, world_size=WORLD_SIZE)
    per_rank = BATCH // WORLD_SIZE
    for name in OBJECTIVES:
        for k_img, k_txt in SPLITS:
            key = f"{name}/{k_img}+{k_txt}"
            z, images, captions = make_inputs(k_img, k_txt)
            objective = make_objective(name, k_img)
            z_ref = z.clone().requires_grad_(True)
            loss = objective(z_ref)
            loss.backward()
            assert z_ref.grad is not None
            reference_objective_grad = objective_grads(objective)
            assert bool((reference_objective_grad.abs() > 0).all()), key
            image_tower, text_tower = make_towers()
            objective = make_objective(name, k_img)
            objective(torch.cat([image_tower(images), text_tower(captions)], dim=1)).backward()
            towers_ref = flat_grads(image_tower, text_tower)
            towers_objective_ref = objective_grads(objective)
            for rank, result in enumerate(results):
                rows = slice(rank * per_rank, (rank + 1) * per_rank)
                torch.testing.assert_close(result[f"{key}/loss"], loss.detach(), rtol=RTOL, atol=0)
                torch.testing.assert_close(
                    result[f"{key}/grad"], WORLD_SIZE * z_ref.grad[rows], rtol=RTOL, atol=1e-7
                )
                torch.testing.assert_close(
                    result[f"{key}/objective_grad"], reference_objective_grad, rtol=RTOL, atol=1e-7
                )
                torch.testing.assert_close(result[f"{key}/towers"], towers_ref, rtol=RTOL, atol=1e-7)
                torch.testing.assert_close(
                    result[f"{key}/towers_objective_grad"], towers_objective_ref, rtol=RTOL, atol=1e-7
                )
            # the ranks agree with each other exactly on the learned parameters' gradients
            assert torch.equal(results[0][f"{key}/objective_grad"], results[1][f"{key}/objective_grad"])
