"""The untrained-network control of a double-descent sweep against a plain reference loop."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mmcr import pretraining_percent_error
from mmcr.build import Data, augment_config, build_network, load_data
from mmcr.config import PretrainConfig, build_config
from mmcr.data import MultiViewAugment
from mmcr.experiments.double_descent import init_ppe


def _reference_init_ppe(cfg: PretrainConfig) -> float:
    """K views of chunks of P held-out images through the untrained network, PPE per chunk, averaged."""
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)
    network = build_network(cfg, data.channels).eval()
    augment = MultiViewAugment(augment_config(cfg))
    P, K = cfg.batch_size, cfg.num_views
    images = data.val.images if len(data.val) >= P else data.memory.images
    images = images[: max(cfg.monitor_size, P)]
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    values = []
    with torch.no_grad():
        for start in range(0, images.shape[0] - P + 1, P):
            views = augment(images[start : start + P], K, generator=generator)
            _, z = network(views.flatten(0, 1))
            values.append(float(pretraining_percent_error(z.float().reshape(P, K, -1))))
    return sum(values) / len(values)


@pytest.mark.parametrize(("batch_size", "monitor_size", "num_views"), [(16, 40, 2), (32, 64, 3)])
def test_init_ppe_matches_the_reference_loop(batch_size: int, monitor_size: int, num_views: int) -> None:
    cfg = build_config(
        None,
        {
            "dataset": "digits",
            "augment": "digits",
            "encoder_width": 4,
            "projector_hidden": [16],
            "projector_dim": 16,
            "batch_size": batch_size,
            "monitor_size": monitor_size,
            "num_views": num_views,
            "seed": 3,
        },
    )
    cache: dict[tuple[Any, ...], Data] = {}
    value = init_ppe(cfg, cache)
    assert 0 < value < 1 and len(cache) == 1
    assert value == pytest.approx(_reference_init_ppe(cfg), rel=1e-5)
    assert init_ppe(cfg, cache) == pytest.approx(value, rel=1e-6)  # served from the cache, same draws


def test_init_ppe_without_a_whole_chunk_is_nan() -> None:
    overrides = {"dataset": "digits", "augment": "digits", "encoder_width": 4, "batch_size": 2048}
    cfg = build_config(None, overrides)
    assert math.isnan(init_ppe(cfg))
