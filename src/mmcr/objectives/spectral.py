"""Nuclear norms (sums of singular values) that are exact, fast and safely differentiable.

The plain formula ``torch.linalg.svdvals(x).sum()`` runs a full singular value
decomposition (with singular vectors, as soon as a gradient is needed) of an ``m x n``
matrix. The nuclear norm only needs the eigenvalues of the smaller Gram matrix:

    ||X||_* = sum_i sqrt(lambda_i(G)),   G = X X^T if m <= n else X^T X   (s x s, s = min(m, n))

and its gradient is the polar factor ``U V^T`` of ``X = U S V^T``, which the
eigenvectors of ``G`` give without an SVD:

    m <= n:  U V^T = W S^-1 W^T X      (G = X X^T = W S^2 W^T)
    m >  n:  U V^T = X W S^-1 W^T      (G = X^T X = W S^2 W^T)

The Gram route squares the condition number, so it is only used where it is accurate.
Every matrix goes through three tiers, each taken only by the matrices the tier before
could not resolve:

1. float32 Gram + ``eigh``. The error of eigenvalue ``i`` is estimated as
   ``delta = 2 eps lambda_max``, so singular value ``i`` is off by a relative
   ``delta / (2 lambda_i)`` (checked against float64 SVD: the realised errors of values
   and polar factors stay below these estimates on random, Gaussian-square and
   training-like matrices). The result is kept if the estimated value error is below
   ``VALUE_RTOL`` and, when a gradient is needed, the root-mean-square error of the
   polar factor's components is below ``GRAD_RTOL`` and no eigenvalue is lost in noise.
2. float64 Gram + ``eigh`` for the rest. Eigenvalues below ``1000 eps lambda_max``
   (singular values below about ``5e-7 sigma_max``, the rounding level of float32
   data) are taken as exact zeros, as a rank decision; their
   polar components are dropped, which gives the minimum-norm subgradient at
   rank-deficient matrices (collapsed views, collapsed centroids) instead of the
   arbitrary singular vectors an SVD returns there.
3. float64 SVD for matrices whose small singular values lie in the band where the
   float64 Gram route would still lose gradient accuracy.

Near-square matrices (the centroids when P ~ D) have singular values near zero by the
Marchenko-Pastur law; for them the first tier is a float32 SVD with its own accuracy
test (``route="svd"``), since a float64 eigendecomposition costs more than that SVD.

Half and bfloat16 inputs are computed in float32. Gradients stay finite for zero and
repeated singular values.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

VALUE_RTOL = 5e-6
"""Largest estimated relative error of a nuclear norm accepted from a fast tier."""

GRAD_RTOL = 1e-5
"""Largest estimated RMS relative error of the polar factor accepted from a fast tier."""

NOISE_FACTOR = 2.0
"""Eigenvalue error of the Gram route, in units of ``eps * lambda_max``."""

ZERO_FACTOR_F64 = 1000.0
"""float64 eigenvalues below ``ZERO_FACTOR_F64 * eps * lambda_max`` are exact zeros."""

ZERO_RATIO = math.sqrt(ZERO_FACTOR_F64 * torch.finfo(torch.float64).eps)
"""The same rule for singular values: below ``ZERO_RATIO * sigma_max`` (about 4.7e-7)."""


def _gram(x: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of each matrix in a (N, m, n) batch: (N, s, s)."""
    m, n = x.shape[-2:]
    return x @ x.mT if m <= n else x.mT @ x


def _polar(x: torch.Tensor, vecs: torch.Tensor, inv_sigma: torch.Tensor) -> torch.Tensor:
    """U V^T from the eigenvectors of the smaller Gram matrix and 1/sigma (0 where dropped)."""
    m, n = x.shape[-2:]
    proj = (vecs * inv_sigma.unsqueeze(-2)) @ vecs.mT
    return proj @ x if m <= n else x @ proj


def _eps_lambda_max(lam: torch.Tensor) -> torch.Tensor:
    """``eps * lambda_max`` per matrix of ascending eigenvalues (N, s): shape (N, 1)."""
    return torch.finfo(lam.dtype).eps * lam[..., -1:].clamp_min(0)


def _eig_tier(
    x: torch.Tensor, need_polar: bool, exact_zeros: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Nuclear norms (N,), polar factors (N, m, n) or None, and an accuracy mask (N,)."""
    gram = _gram(x)
    if need_polar:
        lam, vecs = torch.linalg.eigh(gram)
    else:
        lam, vecs = torch.linalg.eigvalsh(gram), None
    unit = _eps_lambda_max(lam)
    delta = NOISE_FACTOR * unit
    cut = ZERO_FACTOR_F64 * unit if exact_zeros else delta
    zero = lam <= cut
    safe_lam = torch.where(zero, torch.ones_like(lam), lam)
    sigma = torch.where(zero, torch.zeros_like(lam), safe_lam.sqrt())
    values = sigma.sum(-1)
    rel = torch.where(zero, torch.zeros_like(lam), delta / (2 * safe_lam))
    value_err = (sigma * rel).sum(-1)
    if not exact_zeros:
        # Eigenvalues lost in rounding noise: their singular values are only known to
        # be below sqrt(delta).
        value_err = value_err + zero.sum(-1) * cut.squeeze(-1).sqrt()
    tiny = torch.finfo(x.dtype).tiny
    ok = value_err <= VALUE_RTOL * values.clamp_min(tiny)
    polar = None
    if need_polar:
        assert vecs is not None
        kept = (~zero).sum(-1).clamp_min(1)
        grad_err = ((rel**2).sum(-1) / kept).sqrt()
        ok = ok & (grad_err <= GRAD_RTOL)
        if not exact_zeros:
            ok = ok & ~zero.any(-1)
        polar = _polar(x, vecs, torch.where(zero, torch.zeros_like(lam), safe_lam.rsqrt()))
    return values, polar, ok


def _svd_tier(x: torch.Tensor, need_polar: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Nuclear norms, polar factors and an accuracy mask by SVD.

    float64: singular values below ``ZERO_RATIO * sigma_max`` are exact zeros (as in the
    float64 eigen tier) and the result is always accepted. float32: singular values below
    ``max(m, n) eps sigma_max`` are rounding noise; a matrix that has any, or whose polar
    factor is estimated to be off by more than ``GRAD_RTOL`` (perturbation bound
    ``2 eps sigma_max / (sigma_r + sigma_{r-1})`` over the rank's root), is not accepted.
    """
    if not need_polar:
        s = torch.linalg.svdvals(x)
        u = vh = None
    else:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
    sigma_max = s[..., :1]
    if x.dtype == torch.float64:
        keep = s > ZERO_RATIO * sigma_max
        ok = torch.ones(s.shape[:-1], dtype=torch.bool, device=s.device)
    else:
        eps = torch.finfo(x.dtype).eps
        keep = s > max(x.shape[-2], x.shape[-1]) * eps * sigma_max
        ok = keep.all(-1)
        if need_polar and s.shape[-1] >= 2:
            pair = s[..., -1] + s[..., -2]
            rank = keep.sum(-1).clamp_min(1)
            bound = 2 * eps * sigma_max.squeeze(-1) / pair.clamp_min(torch.finfo(x.dtype).tiny)
            ok = ok & (bound / rank.sqrt() <= GRAD_RTOL)
    values = torch.where(keep, s, torch.zeros_like(s)).sum(-1)
    if u is None or vh is None:
        return values, None, ok
    polar = (u * keep.to(u.dtype).unsqueeze(-2)) @ vh
    return values, polar, ok


def _nuclear_norm_impl(
    x: torch.Tensor, need_polar: bool, route: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tiered evaluation on a (N, m, n) batch; returns values (N,) and polar (N, m, n).

    ``route``: ``"auto"`` starts at the float32 Gram tier; ``"float64"`` at the float64
    Gram tier (matrices known to be ill-conditioned, e.g. views of one sample);
    ``"svd"`` at a float32 SVD (near-square matrices, whose smallest singular values
    are near 0 and for which a float64 eigendecomposition costs more than an SVD).
    Matrices a tier cannot resolve go on to the float64 Gram tier, then a float64 SVD.
    Results come back in the input's working precision.
    """
    out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.to(out_dtype)
    if route == "svd" and out_dtype == torch.float32:
        values, polar, ok = _svd_tier(xw, need_polar)
    elif route == "float64" or out_dtype == torch.float64:
        values, polar, ok = _eig_tier(xw.to(torch.float64), need_polar, exact_zeros=True)
    else:
        values, polar, ok = _eig_tier(xw, need_polar, exact_zeros=False)
    first_is_f64 = values.dtype == torch.float64
    redo = (~ok).nonzero().squeeze(-1)
    if redo.numel() > 0:
        x64 = xw.index_select(0, redo).to(torch.float64)
        if first_is_f64:
            v64, p64, ok64 = values[redo], None if polar is None else polar[redo], ok[redo]
        else:
            v64, p64, ok64 = _eig_tier(x64, need_polar, exact_zeros=True)
        bad = (~ok64).nonzero().squeeze(-1)
        if bad.numel() > 0:
            v_svd, p_svd, _ = _svd_tier(x64.index_select(0, bad), need_polar)
            v64 = v64.index_copy(0, bad, v_svd)
            if p64 is not None and p_svd is not None:
                p64 = p64.index_copy(0, bad, p_svd)
        values = values.index_copy(0, redo, v64.to(values.dtype))
        if polar is not None and p64 is not None:
            polar = polar.index_copy(0, redo, p64.to(polar.dtype))
    return values.to(out_dtype), None if polar is None else polar.to(out_dtype)


class _NuclearNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, route: str) -> torch.Tensor:
        batch_shape = x.shape[:-2]
        flat = x.reshape(-1, x.shape[-2], x.shape[-1])
        values, polar = _nuclear_norm_impl(flat, need_polar=ctx.needs_input_grad[0], route=route)
        if polar is not None:
            ctx.save_for_backward(polar.reshape(x.shape))
        return values.reshape(batch_shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (polar,) = ctx.saved_tensors
        return grad.to(polar.dtype)[..., None, None] * polar, None


ROUTES = ("auto", "float64", "svd")


def nuclear_norm(x: torch.Tensor, route: str = "auto") -> torch.Tensor:
    """Nuclear norm of every matrix in ``x`` of shape ``(..., m, n)``; returns shape ``(...)``.

    Matches ``torch.linalg.svdvals(x).sum(-1)`` (relative error below about 1e-6 in
    float32), through the eigenvalues of the smaller Gram matrix where that is accurate
    (see the module docstring). Differentiable: the gradient is the polar factor
    ``U V^T``, with singular values below ~1e-7 of the largest treated as exact zeros.
    Results come in float32 for half/bfloat16/float32 inputs and float64 for float64.
    ``route`` picks the first tier (see :func:`_nuclear_norm_impl`): ``"auto"``,
    ``"float64"`` (ill-conditioned matrices such as the views of one sample) or ``"svd"``
    (near-square matrices); later tiers guarantee the accuracy whatever the route.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if x.ndim < 2:
        raise ValueError(f"nuclear_norm needs matrices of shape (..., m, n), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"nuclear_norm needs non-empty matrices, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"nuclear_norm needs a floating-point tensor, got dtype {x.dtype}")
    out: torch.Tensor = _NuclearNorm.apply(x, route)
    return out


def two_view_nuclear_norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Nuclear norm of ``[a b]`` for unit vectors ``a``, ``b`` of shape ``(..., D)``.

    With ``c = a.b`` the singular values are ``sqrt(1 + c)`` and ``sqrt(1 - c)``, and
    ``||a + b||^2 = 2 (1 + c)``, ``||a - b||^2 = 2 (1 - c)``, so

        ||[a b]||_* = (||a + b|| + ||a - b||) / sqrt(2),

    which, unlike the cosine form, has no cancellation when the views nearly coincide.
    As in :func:`nuclear_norm`, a singular value below ``ZERO_RATIO`` times the other
    (rounding noise: views that coincide up to float32 rounding) is an exact zero, so
    the gradient there is the minimum-norm subgradient rather than a unit vector along
    the rounding noise. Only valid for unit vectors (the MMCR loss normalises every
    view first).
    """
    plus = torch.linalg.vector_norm(a + b, dim=-1)
    minus = torch.linalg.vector_norm(a - b, dim=-1)
    zero = torch.zeros_like(plus)
    plus_kept = torch.where(plus <= ZERO_RATIO * minus, zero, plus)
    minus_kept = torch.where(minus <= ZERO_RATIO * plus, zero, minus)
    return (plus_kept + minus_kept) / math.sqrt(2.0)
