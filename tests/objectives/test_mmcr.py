"""MMCRLoss and the nuclear norms behind it, against plain formulas and analytic cases."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mmcr import MMCRLoss, pretraining_percent_error
from mmcr.objectives.mmcr import local_nuclear_norms
from mmcr.objectives.spectral import nuclear_norm, two_view_nuclear_norm


class _SubgradientNuclearNorm(torch.autograd.Function):
    """Reference in float64: SVD values, gradient U_r V_r^T over the nonzero singular values."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        keep = s > 1e-6 * s.amax(-1, keepdim=True)
        ctx.save_for_backward((u * keep.unsqueeze(-2)) @ vh)
        return torch.where(keep, s, 0).sum(-1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (polar,) = ctx.saved_tensors
        return grad[..., None, None] * polar


def reference_loss(z: torch.Tensor, lmbda: float, subgradient: bool = False) -> torch.Tensor:
    """The plain formula (normalise, centroids, nuclear norms by svdvals) in float64."""
    nuc = _SubgradientNuclearNorm.apply if subgradient else lambda m: torch.linalg.svdvals(m).sum(-1)
    views = z / z.norm(dim=-1, keepdim=True)
    loss = -nuc(views.mean(dim=1))
    if lmbda > 0:
        loss = loss + lmbda * nuc(views.transpose(1, 2)).mean()
    return loss


def grads(fn: Any, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = z.clone().requires_grad_(True)
    value = fn(x)
    value.backward()
    assert x.grad is not None
    return value.detach(), x.grad


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


SHAPES = [(16, 2, 32), (64, 2, 16), (32, 4, 64), (48, 8, 12), (8, 40, 128), (128, 3, 128), (5, 1, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lmbda", [0.0, 0.05])
def test_loss_and_gradient_match_svdvals(shape: tuple[int, int, int], lmbda: float) -> None:
    torch.manual_seed(sum(shape))
    z = torch.randn(*shape)
    value, grad = grads(MMCRLoss(lmbda=lmbda), z)
    ref_value, ref_grad = grads(lambda x: reference_loss(x, lmbda), z.double())
    assert value.dtype == torch.float32
    assert abs(float(value) - float(ref_value)) <= 1e-5 * abs(float(ref_value))
    assert rel(grad, ref_grad) <= 1e-4
    # and against the float32 plain formula, as a user would run it
    ref32_value, ref32_grad = grads(lambda x: reference_loss(x, lmbda), z)
    assert abs(float(value) - float(ref32_value)) <= 1e-5 * abs(float(ref32_value))
    assert rel(grad, ref32_grad) <= 1e-4


@pytest.mark.parametrize("shape", [(6, 40), (40, 6), (64, 64), (3, 5, 9), (129, 128)])
def test_nuclear_norm_matches_svdvals(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(*shape)
    value, grad = grads(lambda m: nuclear_norm(m).sum(), x)
    ref_value, ref_grad = grads(lambda m: torch.linalg.svdvals(m).sum(), x.double())
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4


def test_ill_conditioned_square_matrix_stays_accurate() -> None:
    # Square Gaussian matrices have singular values near 0: the float32 Gram route would
    # lose the gradient there, so the fallback tiers must take over.
    torch.manual_seed(1)
    x = torch.randn(256, 256)
    x[:, 0] = x[:, 1] + 1e-4 * torch.randn(256)  # one singular value ~1e-4 of the largest
    value, grad = grads(lambda m: nuclear_norm(m), x)
    ref_value, ref_grad = grads(lambda m: torch.linalg.svdvals(m).sum(), x.double())
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4


@pytest.mark.parametrize("rows,cols,rank", [(64, 32, 3), (32, 64, 5), (40, 40, 1), (8, 128, 2)])
def test_rank_deficient_matrix_gives_minimum_norm_subgradient(rows: int, cols: int, rank: int) -> None:
    torch.manual_seed(rows + rank)
    basis = torch.linalg.qr(torch.randn(cols, rank)).Q.T  # rank x cols, orthonormal rows
    x = torch.randn(rows, rank) @ basis
    x[:rank] = basis * torch.arange(1, rank + 1)[:, None]  # make the rank exact and known
    value, grad = grads(lambda m: nuclear_norm(m), x)
    ref_value, ref_grad = grads(lambda m: _SubgradientNuclearNorm.apply(m), x.double())
    assert torch.isfinite(grad).all()
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4
    assert abs(float(torch.linalg.matrix_norm(grad, ord=2)) - 1.0) < 1e-4


@pytest.mark.parametrize("k", [2, 3, 8])
def test_collapsed_views_give_finite_exact_gradients(k: int) -> None:
    # Every sample's K views coincide (Z_n has rank 1), and 4 samples share a direction
    # (C has rank 8 of 12). The local term, minimised, takes the minimum-norm subgradient;
    # the global term, maximised, the full polar factor of C (U_r V_r^T completed beyond
    # the rank, so that it ascends), carried to z through the centroids.
    from mmcr.objectives.mmcr import centroids_of, views_and_centroids

    torch.manual_seed(k)
    base = torch.randn(12, 1, 16)
    base[4:8] = base[0]
    z = base.expand(12, k, 16) * torch.rand(12, k, 1).add(0.5)  # different scales, same direction
    value, grad = grads(MMCRLoss(lmbda=0.1), z)
    ref_value, _ = grads(lambda x: reference_loss(x, 0.1, subgradient=True), z.double())
    assert torch.isfinite(grad).all()
    assert abs(float(value) - float(ref_value)) <= 1e-5 * abs(float(ref_value))
    # The gradient is that of the minimum-norm local term minus <P, C>, P a full polar
    # factor of these centroids (computed as the loss computes them: which directions
    # complete the rank-8 part depends on C's rounding).
    centroids = views_and_centroids(z)[1]
    _, polar = grads(lambda m: nuclear_norm(m, subgradient="complete"), centroids)
    u, s, vh = torch.linalg.svd(centroids.double(), full_matrices=False)
    rank = int((s > 1e-6 * s[0]).sum())
    assert rank == 8
    p = polar.double()
    assert rel(u[:, :rank].T @ p, vh[:rank]) <= 1e-5 and rel(p @ vh[:rank].T, u[:, :rank]) <= 1e-5
    assert torch.allclose(torch.linalg.svdvals(p), torch.ones(12, dtype=p.dtype), atol=1e-5)

    def local_reference(x: torch.Tensor) -> torch.Tensor:
        views = x / x.norm(dim=-1, keepdim=True)
        return 0.1 * _SubgradientNuclearNorm.apply(views.transpose(1, 2)).mean()

    _, ref_grad = grads(lambda x: local_reference(x) - (centroids_of(x) * p).sum(), z.double())
    assert rel(grad, ref_grad) <= 1e-4


def test_repeated_singular_values() -> None:
    q = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64)).Q[:, :8].float()  # 32 x 8, orthonormal
    value, grad = grads(lambda m: nuclear_norm(m), q)
    assert float(value) == pytest.approx(8.0, rel=1e-6)
    assert rel(grad, q) <= 1e-5  # polar factor of an isometry is itself


def test_float64_gradcheck() -> None:
    torch.manual_seed(0)
    for shape in [(6, 3, 5), (4, 2, 9), (7, 1, 3)]:
        z = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for lmbda in (0.0, 0.3):  # centroids alone, and views + centroids
            assert torch.autograd.gradcheck(lambda x, lm=lmbda: MMCRLoss(lmbda=lm)(x), (z,))
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(nuclear_norm, (x,))


def test_half_precision_inputs_are_computed_in_float32() -> None:
    torch.manual_seed(0)
    z = torch.randn(32, 4, 16)
    for dtype in (torch.bfloat16, torch.float16):
        zh = z.to(dtype).requires_grad_(True)
        loss = MMCRLoss(lmbda=0.01)(zh)
        assert loss.dtype == torch.float32
        loss.backward()
        assert zh.grad is not None and zh.grad.dtype == dtype
        expected = reference_loss(zh.detach().double(), 0.01)
        assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_orthonormal_centroids_reach_the_bound() -> None:
    b, d = 16, 32
    basis = torch.linalg.qr(torch.randn(d, b, dtype=torch.float64)).Q.T.float()  # B x D orthonormal rows
    z = basis[:, None, :].expand(b, 3, d)
    loss_fn = MMCRLoss()
    loss = loss_fn(z)
    assert float(loss) == pytest.approx(-b, rel=1e-6)
    assert float(loss_fn.components["ppe"]) == pytest.approx(0.0, abs=1e-6)
    assert float(pretraining_percent_error(z)) == pytest.approx(0.0, abs=1e-6)


def test_all_samples_equal_gives_sqrt_b() -> None:
    b = 25
    z = torch.randn(1, 1, 10).expand(b, 2, 10)
    assert float(MMCRLoss()(z)) == pytest.approx(-math.sqrt(b), rel=1e-6)
    assert float(pretraining_percent_error(z)) == pytest.approx(
        1 - math.sqrt(b) / math.sqrt(b * 10), rel=1e-6
    )


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_identical_views_local_term(k: int) -> None:
    # K identical unit views form a rank-1 D x K matrix with singular value sqrt(K).
    z = torch.randn(10, 1, 6).expand(10, k, 6) * torch.rand(10, k, 1).add(0.1)
    views = z / z.norm(dim=-1, keepdim=True)
    assert torch.allclose(local_nuclear_norms(views), torch.full((10,), math.sqrt(k)), rtol=1e-6)
    loss_fn = MMCRLoss(lmbda=1.0)
    loss_fn(z)
    assert float(loss_fn.components["local_nuclear_norm"]) == pytest.approx(math.sqrt(k), rel=1e-6)


def test_two_view_closed_form_matches_svd() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.functional.normalize(torch.randn(2, 50, 9, dtype=torch.float64), dim=-1)
    b[0] = a[0]  # identical
    b[1] = -a[1]  # antipodal
    expected = torch.linalg.svdvals(torch.stack([a, b], dim=-1)).sum(-1)
    assert torch.allclose(two_view_nuclear_norm(a, b), expected, rtol=1e-12)


def test_scale_invariance_of_every_view() -> None:
    torch.manual_seed(0)
    z = torch.randn(20, 4, 8)
    scales = torch.rand(20, 4, 1) * 100 + 1e-3
    loss_fn = MMCRLoss(lmbda=0.2)
    assert float(loss_fn(z * scales)) == pytest.approx(float(loss_fn(z)), rel=1e-5)


def test_components_are_recorded() -> None:
    torch.manual_seed(0)
    z = torch.randn(20, 4, 8)
    loss_fn = MMCRLoss(lmbda=0.0)
    loss = loss_fn(z)
    c = loss_fn.components
    assert float(c["loss"]) == float(loss)
    assert float(c["global_nuclear_norm"]) == pytest.approx(-float(loss))
    assert math.isnan(float(c["local_nuclear_norm"]))  # skipped when lmbda == 0
    assert float(c["ppe"]) == pytest.approx(float(pretraining_percent_error(z)), rel=1e-6)
    assert int(c["batch_size"]) == 20
    loss_fn = MMCRLoss(lmbda=0.5)
    loss = loss_fn(z)
    c = loss_fn.components
    assert float(loss) == pytest.approx(
        0.5 * float(c["local_nuclear_norm"]) - float(c["global_nuclear_norm"]), rel=1e-6
    )


def test_momentum_centroids_are_averaged() -> None:
    torch.manual_seed(0)
    z = torch.randn(10, 2, 6, requires_grad=True)
    zm = torch.randn(10, 2, 6)
    loss = MMCRLoss()(z, zm)
    nz = torch.nn.functional.normalize(z.detach(), dim=-1).mean(1)
    nm = torch.nn.functional.normalize(zm, dim=-1).mean(1)
    assert float(loss.detach()) == pytest.approx(
        -float(torch.linalg.svdvals(0.5 * (nz + nm)).sum()), rel=1e-5
    )
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="z_momentum"):
        MMCRLoss()(z, zm[:5])


@pytest.mark.parametrize("b,d", [(16, 32), (32, 32)])
def test_optimising_free_embeddings_drives_ppe_to_zero(b: int, d: int) -> None:
    torch.manual_seed(0)
    z = torch.randn(b, 2, d).requires_grad_(True)
    loss_fn = MMCRLoss()
    start = float(pretraining_percent_error(z.detach()))
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss_fn(z).backward()
        opt.step()
    end = float(pretraining_percent_error(z.detach()))
    assert start > 0.2
    assert end < 0.01


BAD_INPUTS = [
    (torch.randn(8, 16), "shape \\(B, K, D\\)"),
    (torch.randn(2, 3, 4, 5), "shape \\(B, K, D\\)"),
    (torch.randn(1, 2, 8), "at least B = 2"),
    (torch.randn(8, 0, 4), "at least K = 1"),
    (torch.randint(0, 3, (4, 2, 3)), "floating-point"),
]


@pytest.mark.parametrize("z,message", BAD_INPUTS)
def test_bad_input_raises(z: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MMCRLoss()(z)


def test_non_finite_embeddings_raise_with_count() -> None:
    z = torch.randn(8, 2, 4)
    z[1, 0, 2] = float("nan")
    z[3, 1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite.*2 of 64"):
        MMCRLoss()(z)
    with pytest.raises(ValueError, match="non-finite"):
        pretraining_percent_error(z)


@pytest.mark.parametrize("lmbda", [-0.1, float("nan"), float("inf")])
def test_bad_lmbda_raises(lmbda: float) -> None:
    with pytest.raises(ValueError, match="lmbda"):
        MMCRLoss(lmbda=lmbda)


def test_ppe_of_centroid_matrix() -> None:
    c = torch.eye(4, 8) * 0.5
    # ||C||_* = 2, bound sqrt(4 * 4) = 4
    assert float(pretraining_percent_error(c)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="centroid matrix"):
        pretraining_percent_error(torch.randn(1, 8))


@pytest.mark.parametrize("route", ["auto", "float64", "svd"])
@pytest.mark.parametrize("kind", ["random", "square", "rank-deficient"])
def test_every_route_is_exact(route: str, kind: str) -> None:
    torch.manual_seed(3)
    if kind == "random":
        x = torch.randn(40, 24)
    elif kind == "square":
        x = torch.randn(96, 96)
    else:
        x = torch.randn(48, 3) @ torch.randn(3, 40)
        x[:3] = torch.linalg.qr(torch.randn(40, 3)).Q.T * 5  # exact rank 3, known
        x = torch.randn(48, 3) @ x[:3]
    value, grad = grads(lambda m: nuclear_norm(m, route=route), x)
    ref_value, ref_grad = grads(lambda m: _SubgradientNuclearNorm.apply(m), x.double())
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4
    with pytest.raises(ValueError, match="route"):
        nuclear_norm(x, route="fast")


@pytest.mark.parametrize("rows,cols", [(256, 256), (270, 256), (256, 264), (96, 96)])
def test_near_square_matrices_take_the_refined_gram_route_exactly(
    rows: int, cols: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Near-square Gaussian matrices have singular values down to ~1e-3 of the largest:
    # the float32 Gram tier alone misses its tolerances there, and the refinement of
    # the small-eigenvalue subspace must resolve them without a fallback.
    from mmcr.objectives import spectral

    torch.manual_seed(rows + cols)
    x = torch.randn(rows, cols)
    values, polar, ok = spectral._gram_tier(x[None], need_polar=True)
    assert bool(ok[0])
    assert polar is not None
    ref_value, ref_polar = grads(lambda m: torch.linalg.svdvals(m).sum(), x.double())
    assert abs(float(values[0]) - float(ref_value)) <= 1e-6 * float(ref_value)
    assert rel(polar[0], ref_polar) <= 2e-5
    # the refinement is what resolved it: without it the tier declines
    monkeypatch.setattr(spectral, "REFINE_MAX_FRACTION", 0.0)
    assert not bool(spectral._gram_tier(x[None], need_polar=True)[2][0])
    if rows == cols:
        # and the plain float32 Gram polar factor is far off
        plain = torch.linalg.eigh(spectral._gram(x[None]))
        inv_sigma = plain.eigenvalues.clamp_min(1e-30).rsqrt()
        assert rel(spectral._polar(x[None], plain.eigenvectors, inv_sigma)[0], ref_polar) > 1e-4


def test_refinement_refuses_what_it_cannot_resolve() -> None:
    # one singular value ~1e-5 of the largest: the coupling left by float32 eigenvectors
    # is too large for a first-order correction, so the refinement must decline
    from mmcr.objectives import spectral

    torch.manual_seed(1)
    x = torch.randn(128, 128)
    x[:, 0] = x[:, 1] + 1e-4 * torch.randn(128)
    lam, vecs = torch.linalg.eigh(spectral._gram(x[None])[0])
    small = int((lam < spectral.REFINE_RATIO * lam[-1]).sum())
    assert spectral._refine_small_subspace(x, lam, vecs, small) is None
    value, grad = grads(lambda m: nuclear_norm(m), x)
    ref_value, ref_grad = grads(lambda m: torch.linalg.svdvals(m).sum(), x.double())
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4


def test_views_and_centroids_gradients_from_either_output() -> None:
    from mmcr.objectives.mmcr import centroids_of, views_and_centroids

    torch.manual_seed(0)
    z = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: views_and_centroids(x)[1], (z,))
    assert torch.autograd.gradcheck(lambda x: views_and_centroids(x)[0], (z,))
    assert torch.autograd.gradcheck(
        lambda x: views_and_centroids(x)[0].sum() + views_and_centroids(x)[1].sum(), (z,)
    )
    assert torch.autograd.gradcheck(centroids_of, (z,))
    assert torch.allclose(centroids_of(z), views_and_centroids(z)[1])


def test_local_term_route_follows_the_views_and_never_changes_the_result() -> None:
    torch.manual_seed(0)
    spread = torch.randn(64, 4, 256)  # independent views: float32 Gram tier suffices
    close = torch.randn(64, 1, 256) + 1e-3 * torch.randn(64, 4, 256)  # near-identical views
    for z, route in ((spread, "auto"), (close, "float64")):
        loss_fn = MMCRLoss(lmbda=0.1)
        first_value, first_grad = grads(loss_fn, z)
        assert loss_fn._local_route == route
        again_value, again_grad = grads(loss_fn, z)  # second call starts at the chosen route
        ref_value, ref_grad = grads(lambda x: reference_loss(x, 0.1), z.double())
        for value, grad in ((first_value, first_grad), (again_value, again_grad)):
            assert abs(float(value) - float(ref_value)) <= 1e-5 * abs(float(ref_value))
            assert rel(grad, ref_grad) <= 1e-4


@pytest.mark.parametrize("route", ["auto", "float64"])
def test_report_gives_the_float32_tier_share(route: str) -> None:
    torch.manual_seed(0)
    good = torch.randn(3, 4, 64)
    bad = torch.randn(2, 1, 64).expand(2, 4, 64) + 1e-4 * torch.randn(2, 4, 64)
    report: dict[str, float] = {}
    nuclear_norm(torch.cat([good, bad]), route=route, report=report)
    assert report["float32_share"] == pytest.approx(3 / 5)


def test_near_square_rank_deficient_matrix_gives_minimum_norm_subgradient() -> None:
    # two exact zeros among near-zero singular values: the refinement must not decide the
    # rank; the float64 tier does, and the gradient is the minimum-norm subgradient
    torch.manual_seed(5)
    x = torch.randn(128, 126) @ torch.randn(126, 128) / 10
    value, grad = grads(lambda m: nuclear_norm(m), x)
    ref_value, ref_grad = grads(lambda m: _SubgradientNuclearNorm.apply(m), x.double())
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value)
    assert rel(grad, ref_grad) <= 1e-4


@pytest.mark.parametrize("lmbda", [0.0, 0.1])
def test_a_callers_autocast_region_does_not_lower_the_precision(lmbda: float) -> None:
    # the encoder may run under bf16 autocast with the loss in the same region: the
    # loss's products must stay in float32 (bf16 matmuls are off by ~1e-4 here)
    torch.manual_seed(0)
    z = torch.randn(256, 4, 128)
    value, grad = grads(MMCRLoss(lmbda=lmbda), z)

    def under_autocast(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out: torch.Tensor = MMCRLoss(lmbda=lmbda)(x)
            return out

    auto_value, auto_grad = grads(under_autocast, z)
    assert abs(float(auto_value) - float(value)) <= 1e-6 * abs(float(value))
    assert rel(auto_grad, grad) <= 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = nuclear_norm(z[:, 0])
    assert float(inside) == pytest.approx(float(nuclear_norm(z[:, 0])), rel=1e-6)


def _stress_matrices() -> list[tuple[str, torch.Tensor]]:
    """Shapes and spectra met in training and in the sweeps, small enough for a unit test.

    Every nonzero singular value stays above 3e-6 of the largest, clear of the band where
    a rank decision (ours at 4.7e-7, the reference's at 1e-6) is a matter of convention.
    """
    g = torch.Generator().manual_seed(11)
    out: list[tuple[str, torch.Tensor]] = []
    for n in (48, 96, 160):
        for rows in (n, n + n // 16, n + n // 4, 2 * n):
            out.append((f"gauss {rows}x{n}", torch.randn(rows, n, generator=g)))
            out.append((f"gauss {n}x{rows}", torch.randn(n, rows, generator=g)))
        for decades in (1, 2, 3, 4):
            scale = torch.logspace(0, -decades, n)
            out.append((f"graded 1e-{decades} {2 * n}x{n}", torch.randn(2 * n, n, generator=g) * scale))
            q1 = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
            q2 = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
            square = ((q1 * torch.logspace(0, -decades, n, dtype=torch.float64)) @ q2).float()
            out.append((f"graded-square 1e-{decades} {n}", square))
        x = torch.randn(n, n, generator=g)
        x[:, 0] = x[:, 1] + 1e-3 * torch.randn(n, generator=g)
        out.append((f"nearly-dependent {n}", x))
        low_rank = torch.randn(n, n - 2, generator=g) @ torch.randn(n - 2, n, generator=g)
        out.append((f"rank {n - 2} of {n}", low_rank))
    return out


@pytest.mark.parametrize("name,x", _stress_matrices(), ids=lambda v: v if isinstance(v, str) else "")
def test_nuclear_norm_stress(name: str, x: torch.Tensor) -> None:
    # whichever tier resolves it, the result matches float64 (minimum-norm subgradient)
    ratios = torch.linalg.svdvals(x.double()) / torch.linalg.svdvals(x.double())[0]
    assert not ((ratios > 1e-7) & (ratios < 3e-6)).any(), f"{name}: a singular value in the rank band"
    value, grad = grads(lambda m: nuclear_norm(m), x)
    ref_value, ref_grad = grads(lambda m: _SubgradientNuclearNorm.apply(m), x.double())
    assert torch.isfinite(grad).all()
    assert abs(float(value) - float(ref_value)) <= 1e-5 * float(ref_value), name
    assert rel(grad, ref_grad) <= 1e-4, name
