"""Alignment, uniformity and effective rank against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from mmcr.geometry import alignment, effective_rank, geometry_summary, uniformity


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_alignment_zero_for_identical_views_and_scale_free() -> None:
    z = torch.randn(10, 1, 5).expand(10, 3, 5) * torch.rand(10, 3, 1).add(0.1)
    assert alignment(z) == pytest.approx(0.0, abs=1e-10)
    assert alignment(z, form="pairwise") == pytest.approx(0.0, abs=1e-10)


def test_alignment_forms_against_direct_computation() -> None:
    torch.manual_seed(0)
    z = torch.randn(7, 2, 4, dtype=torch.float64)
    v = unit(z)
    direct_pair = float(((v[:, 0] - v[:, 1]) ** 2).sum(-1).mean())
    mu = v.mean(1)
    direct_centroid = float(((v - mu[:, None]) ** 2).sum(-1).mean())
    assert alignment(z, form="pairwise") == pytest.approx(direct_pair, rel=1e-12)
    assert alignment(z) == pytest.approx(direct_centroid, rel=1e-12)
    assert alignment(z, form="pairwise") == pytest.approx(4 * alignment(z), rel=1e-12)  # K = 2
    assert alignment(z) == pytest.approx(1 - float((mu**2).sum(-1).mean()), rel=1e-12)


def test_alignment_pairwise_over_all_view_pairs() -> None:
    torch.manual_seed(1)
    z = torch.randn(5, 4, 3, dtype=torch.float64)
    v = unit(z)
    pairs = [((v[:, a] - v[:, b]) ** 2).sum(-1) for a in range(4) for b in range(4) if a != b]
    assert alignment(z, form="pairwise") == pytest.approx(float(torch.stack(pairs).mean()), rel=1e-12)
    with pytest.raises(ValueError, match="form"):
        alignment(z, form="other")
    with pytest.raises(ValueError, match="K = 2"):
        alignment(z[:, :1], form="pairwise")


def test_uniformity_against_direct_double_loop() -> None:
    torch.manual_seed(0)
    x = unit(torch.randn(9, 3, dtype=torch.float64))
    terms = [math.exp(-2 * float(((x[i] - x[j]) ** 2).sum())) for i in range(9) for j in range(9) if i < j]
    assert uniformity(x) == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-10)


def test_uniformity_prefers_spread_points() -> None:
    torch.manual_seed(0)
    spread = torch.randn(400, 8)
    clumped = torch.randn(1, 8) + 0.05 * torch.randn(400, 8)
    assert uniformity(spread) < uniformity(clumped)
    # antipodal pair: ||x - y||^2 = 4
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0, rel=1e-6)


def test_uniformity_of_multiview_is_mean_over_view_positions() -> None:
    torch.manual_seed(0)
    z = torch.randn(30, 3, 5)
    expected = sum(uniformity(z[:, k]) for k in range(3)) / 3
    assert uniformity(z) == pytest.approx(expected, rel=1e-9)


def test_effective_rank_extremes() -> None:
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0, rel=1e-5)
    line = torch.randn(20, 1) * torch.randn(1, 8)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-3)
    s = torch.tensor([3.0, 1.0])
    p = s / s.sum()
    expected = math.exp(-float((p * p.log()).sum()))
    assert effective_rank(torch.diag(s)) == pytest.approx(expected, rel=1e-5)


def test_effective_rank_of_multiview_uses_centroids() -> None:
    z = torch.eye(4)[:, None, :].expand(4, 2, 4)
    assert effective_rank(z) == pytest.approx(4.0, rel=1e-5)


def test_summary_and_bad_input() -> None:
    torch.manual_seed(0)
    summary = geometry_summary(torch.randn(16, 2, 8))
    assert set(summary) == {"alignment", "alignment_pairwise", "uniformity", "effective_rank", "ppe"}
    assert all(math.isfinite(v) for v in summary.values())
    with pytest.raises(ValueError):
        uniformity(torch.randn(1, 4))
    with pytest.raises(ValueError):
        effective_rank(torch.randn(4))
    bad = torch.randn(4, 2, 3)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        alignment(bad)
