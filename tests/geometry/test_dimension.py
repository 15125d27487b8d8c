"""Total data dimension and the Wasserstein uniformity metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmcr.geometry import (
    explained_variance_dimension,
    participation_ratio,
    total_dimension,
    wasserstein_uniformity,
)


def test_participation_ratio_and_explained_variance_of_known_spectra() -> None:
    rng = np.random.default_rng(0)
    isotropic = rng.standard_normal((4000, 10))
    assert participation_ratio(isotropic) == pytest.approx(10, rel=0.02)
    # variances 4, 1, 1, 0: PR = 36 / 18 = 2; 90 % of 6 needs all three non-zero components
    scaled = rng.standard_normal((20000, 4)) * np.array([2.0, 1.0, 1.0, 0.0])
    assert participation_ratio(scaled) == pytest.approx(2.0, rel=0.03)
    assert explained_variance_dimension(scaled, 0.9) == 3
    assert explained_variance_dimension(scaled, 0.5) == 1
    # manifolds are concatenated, and the summary names its parts
    parts = [scaled[:100], scaled[100:300]]
    summary = total_dimension(parts)
    assert summary["features"] == 4 and summary["participation_ratio"] == pytest.approx(
        participation_ratio(scaled[:300])
    )
    with pytest.raises(ValueError, match="part 1 has 3 features"):
        participation_ratio([scaled[:5], scaled[:5, :3]])
    with pytest.raises(ValueError, match="fraction"):
        explained_variance_dimension(scaled, 1.5)


def test_wasserstein_uniformity_of_uniform_and_collapsed_embeddings() -> None:
    gen = torch.Generator().manual_seed(0)
    uniform = torch.randn(20000, 16, generator=gen)
    assert wasserstein_uniformity(uniform) < 0.05
    collapsed = torch.ones(100, 16) + 1e-6 * torch.randn(100, 16, generator=gen)
    assert wasserstein_uniformity(collapsed) == pytest.approx(math.sqrt(2), rel=1e-3)
    # a half-dimensional subspace is less uniform than the sphere, more than a point
    half = torch.cat([torch.randn(5000, 8, generator=gen), torch.zeros(5000, 8)], 1)
    assert 0.05 < wasserstein_uniformity(half) < math.sqrt(2)
    views = torch.randn(50, 3, 16, generator=gen)
    assert wasserstein_uniformity(views) == pytest.approx(
        sum(wasserstein_uniformity(views[:, k]) for k in range(3)) / 3
    )
