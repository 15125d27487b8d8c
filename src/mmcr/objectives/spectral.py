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
   A matrix that misses these only through a few small singular values (below a tenth
   of the largest: near-square matrices such as the centroids when P ~ D, whose
   spectrum reaches down to 0 by the Marchenko-Pastur law) keeps its large eigenpairs
   and has the small-eigenvalue subspace refined in float64 (products of the data with
   the float32 eigenvectors, a small float64 ``eigh``, and a first-order correction of
   the coupling between the two subspaces), with its own error estimate: about 1.25x
   faster than a float32 SVD at 512 x 512, and as accurate. A single matrix that
   misses them through many small singular values under a few large ones (nearly
   collapsed centroids, whose small singular values sit far below this tier's
   resolution but carry the whole gradient) has the large subspace deflated in float64
   and the remainder resolved at its own scale, again with its own error estimate.
2. float64 Gram + ``eigh`` for the rest. Singular values below ``zero_ratio`` of the
   largest (one unit in the last place of the input's precision: ``eps32 sigma_max``
   for float32 data, whose own rounding is about half that) are zeros of the input, a
   rank decision this tier takes only where its eigenvalues (accurate to
   ``2 eps64 lambda_max``) leave no doubt: below ``zero_ratio / RANK_BAND``. Matrices with a
   singular value within a factor ``RANK_BAND`` of it, or with small singular values
   the Gram route would resolve too coarsely, go on to the SVD.
3. float64 SVD for the rest, which resolves singular values down to the input's own
   rounding level and decides the rank there.

At a rank-deficient matrix the nuclear norm has no gradient, and the result is an
element of its subdifferential ``{U_r V_r^T + W : U_r^T W = 0, W V_r = 0, ||W||_2 <= 1}``
chosen by ``subgradient``:

- ``"minimum_norm"`` (the default): ``W = 0``. For a minimised norm (MMCR's local term,
  collapsed views) the negative minimum-norm subgradient is the steepest descent.
- ``"complete"``: the full polar factor, ``W = U_0 V_0^T`` with ``U_0`` and ``V_0``
  orthonormal complements of the ranges of ``U_r`` and ``V_r``, so every singular value of
  the result is 1. For a maximised norm (MMCR's global term) the minimum-norm element is
  the least ascending one: at exact collapse or exact low rank it moves only within the
  present range, and gradient ascent never leaves that rank, whereas the full polar
  factor raises every zero singular value at unit rate. Such matrices are resolved by
  the float64 SVD. Below the zero level but above the SVD's own rounding, its singular
  vectors complete the ranges (the best estimate of the input's small directions that
  its rounding allows: a nearly collapsed C keeps the gradient its data carry); at
  exact zeros, where the SVD's vectors are arbitrary, fixed Gaussian bases projected on
  the complements do (:func:`_completion`). Both are deterministic functions of the
  input, so the same matrix gives the same gradient (every rank of a data-parallel run
  holds the same global centroids; a resumed run replays the same steps), and the fixed
  completion is continuous in the ranges: matrices that differ by rounding get
  gradients that differ by rounding.

Half and bfloat16 inputs are computed in float32. Gradients stay finite for zero and
repeated singular values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from mmcr.objectives.base import full_precision, spectral_dtype

_EPS32 = float(torch.finfo(torch.float32).eps)
_EPS64 = float(torch.finfo(torch.float64).eps)

VALUE_RTOL = 5e-6
"""Largest estimated relative error of a nuclear norm accepted from a fast tier."""

GRAD_RTOL = 1e-5
"""Largest estimated RMS relative error of the polar factor accepted from a fast tier."""

NOISE_FACTOR = 2.0
"""Eigenvalue error of the Gram route, in units of ``eps * lambda_max``."""

ZERO_ULPS = 1.0
"""Singular values below ``ZERO_ULPS * eps * sigma_max`` are zeros of the input (``eps`` of
its working precision); see :func:`zero_ratio`."""

RANK_BAND = 2.0
"""The Gram tiers leave to the SVD every matrix with a singular value between
``zero_ratio / RANK_BAND`` and ``RANK_BAND * zero_ratio`` of the largest: there the
rank decision depends on more digits than their eigenvalues hold."""

REFINE_RATIO = 0.01
"""Gram eigenvalues below ``REFINE_RATIO * lambda_max`` are refined in float64 when the
float32 Gram tier misses its tolerances (singular values below a tenth of the largest)."""

REFINE_MAX_FRACTION = 0.25
"""Refinement is tried when at most this fraction of the eigenvalues is small; beyond it
the float64 tier is cheaper. Deflation, the converse, when at most this fraction is
large (at least ``REFINE_RATIO * lambda_max``)."""

SUBGRADIENTS = ("minimum_norm", "complete")


def zero_ratio(dtype: torch.dtype, size: int = 1) -> float:
    """Singular values below this times ``sigma_max`` are zeros of an input in ``dtype``.

    A matrix computed in precision ``eps`` carries rounding errors of about ``eps / 2``
    relative in every entry (the entries themselves and the normalisations and means
    that produced them): a perturbation of spectral norm about ``eps sigma_max / 2``
    (0.44-0.53 ``eps32 sigma_max`` measured on float32 centroid matrices with B = 64
    to 2048), which lifts exact zeros to 0.1-0.3 ``eps sigma_max``. A singular value
    below ``ZERO_ULPS eps sigma_max`` (1.19e-7 for float32) cannot be told from zero by
    the data; above it, it is real and resolved. ``size`` (``max(m, n)``) adds the float64
    SVD's own error, ``size * eps64``, which matters for float64 inputs only.
    """
    return max(ZERO_ULPS * float(torch.finfo(dtype).eps), size * _EPS64)


def _gram(x: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of each matrix in a (N, m, n) batch: (N, s, s)."""
    m, n = x.shape[-2:]
    if x.shape[0] == 1:  # one matrix: a 2-D product skips the batching overhead
        return (x[0] @ x[0].T if m <= n else x[0].T @ x[0]).unsqueeze(0)
    return x @ x.mT if m <= n else x.mT @ x


def _polar(x: torch.Tensor, vecs: torch.Tensor, inv_sigma: torch.Tensor) -> torch.Tensor:
    """U V^T from the eigenvectors of the smaller Gram matrix and 1/sigma (0 where dropped)."""
    m, n = x.shape[-2:]
    if x.shape[0] == 1:  # one matrix (the global centroids): 2-D products skip batching overhead
        proj = (vecs[0] * inv_sigma[0]) @ vecs[0].T
        return (proj @ x[0] if m <= n else x[0] @ proj).unsqueeze(0)
    proj = (vecs * inv_sigma.unsqueeze(-2)) @ vecs.mT
    return proj @ x if m <= n else x @ proj


def _gram_checks(
    lam64: np.ndarray, eps: float, zero_level: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Gram route's error model, from ascending eigenvalues (N, s) in float64.

    With ``u = eps lambda_max`` (half the eigenvalue error ``delta``), singular value ``i``
    is off by a relative ``u / lambda_i``: the value error is ``u sum_i 1/sigma_i`` and the
    polar factor's root-mean-square error ``u sqrt(mean_i 1/sigma_i^4)``, accepted under
    ``VALUE_RTOL`` and ``GRAD_RTOL``. ``eps`` is the working precision's; the float32
    model applied to float64 eigenvalues tells whether the float32 tier would have
    accepted the same matrices.

    ``zero_level=None`` (the float32 tier, and any tier for the ``"complete"``
    subgradient): no rank decision; an eigenvalue below ``delta`` is lost in noise and
    the matrix is not accepted. ``zero_level = r`` (:func:`zero_ratio`): singular values
    below ``r / RANK_BAND`` of the largest are zeros, left out of the value, of
    ``1/sigma`` and of the estimates, provided the eigenvalues resolve that level
    (``(r / RANK_BAND)^2`` above ``RANK_BAND^2 delta``; float64 inputs, whose zero level
    lies far below the eigenvalues' resolution, never have zeros decided here); a
    matrix with a singular value between ``r / RANK_BAND`` and ``RANK_BAND r`` is not
    accepted, since the rank decision there needs the SVD.

    Returns the acceptance mask (N,), nuclear norms (N,) and ``1/sigma`` (N, s), 0 at zeros.
    """
    # scale-free: r = lambda / lambda_max; below 1e-60 a matrix is rejected anyway, and the
    # clamp keeps 1/r^2 finite
    lam_max = np.maximum(lam64[:, -1:], np.finfo(np.float64).tiny)
    delta = NOISE_FACTOR * eps
    if zero_level is None:
        zero = lam64 <= delta * lam_max
        undecided = zero
    else:
        low, high = (zero_level / RANK_BAND) ** 2, (zero_level * RANK_BAND) ** 2
        if low > RANK_BAND**2 * delta:
            zero = lam64 <= low * lam_max
        else:
            zero = np.zeros(lam64.shape, dtype=bool)
        undecided = ~zero & (lam64 < high * lam_max)
    # sigma_max / sigma_i
    inv_root_r = np.where(zero, 0.0, np.sqrt(lam_max / np.maximum(lam64, 1e-60 * lam_max)))
    values64 = np.where(zero, 0.0, np.sqrt(np.maximum(lam64, 0.0))).sum(-1)
    kept = np.maximum((~zero).sum(-1), 1)
    ok = (eps * inv_root_r.sum(-1) <= VALUE_RTOL * values64 / np.sqrt(lam_max[:, 0])) & (
        np.square(np.square(inv_root_r)).sum(-1) / kept <= (GRAD_RTOL / eps) ** 2
    )
    ok &= ~undecided.any(-1)
    return ok, values64, inv_root_r / np.sqrt(lam_max)


def _gram_tier(
    x: torch.Tensor, need_polar: bool, zero_level: float | None = None, complete: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The first tier: eigenvalues of the Gram matrix in the input's precision.

    Returns nuclear norms (N,), polar factors (N, m, n) or None, and an accuracy mask
    (N,) on the CPU. Written with few tensor operations, since for small matrices their
    count, not the eigendecomposition, sets the cost: well-conditioned matrices pass on
    their extreme eigenvalues alone; the others are checked on the host under
    :func:`_gram_checks`, those with a few small singular values are refined, and a
    single matrix with a few large ones over many small ones (nearly collapsed
    centroids) is deflated (:func:`_deflate_large_subspace`, with ``zero_level`` and
    ``complete`` as there; ``zero_level`` defaults to :func:`zero_ratio` of ``x``). A batch
    (the local term's view matrices) skips the deflation: its members would each need
    their own, and the batched float64 tier costs less.
    """
    gram = _gram(x)
    if need_polar:
        lam, vecs = torch.linalg.eigh(gram)
    else:
        lam, vecs = torch.linalg.eigvalsh(gram), None
    # Quick test on the extreme eigenvalues: every singular value's relative error is at
    # most eps lambda_max / lambda_min, so below VALUE_RTOL all the tolerances hold.
    extremes = lam[:, :: max(lam.shape[-1] - 1, 1)].tolist()  # first and last: a view
    if all(ends[0] > 0 and _EPS32 * ends[-1] <= VALUE_RTOL * ends[0] for ends in extremes):
        values = lam.sqrt().sum(-1)
        polar = _polar(x, vecs, lam.rsqrt()) if vecs is not None else None
        return values, polar, torch.ones(x.shape[0], dtype=torch.bool)
    # otherwise the full checks, in float64 on the host: one transfer instead of a dozen kernels
    lam64 = lam.to("cpu", torch.float64).numpy()
    ok, values64, inv_sigma64 = _gram_checks(lam64, _EPS32, None)
    values = torch.from_numpy(values64).to(x.device, x.dtype)
    if not need_polar:
        return values, None, torch.from_numpy(ok)
    assert vecs is not None
    inv_sigma = torch.from_numpy(inv_sigma64).to(x.device, x.dtype)
    if ok.all():
        return values, _polar(x, vecs, inv_sigma), torch.from_numpy(ok)
    # polar factors only where they are kept; the rest are filled by the next tiers
    polar = torch.empty_like(x)
    kept = np.flatnonzero(ok)
    if kept.size > 0:
        index = torch.from_numpy(kept).to(x.device)
        polar[index] = _polar(x[index], vecs[index], inv_sigma[index])
    # matrices with a few small singular values: refine their subspace in float64
    small = (lam64 < REFINE_RATIO * lam64[:, -1:]).sum(-1)
    for i in np.flatnonzero(~ok & (small > 0) & (small <= REFINE_MAX_FRACTION * lam64.shape[-1])):
        transpose = x.shape[-2] <= x.shape[-1]  # the Gram matrix is X X^T: refine X^T
        refined = _refine_small_subspace(x[i].mT if transpose else x[i], lam[i], vecs[i], int(small[i]))
        if refined is not None:
            values[i], polar_i = refined
            polar[i] = polar_i.mT if transpose else polar_i
            ok[i] = True
    large = lam64.shape[-1] - small
    if zero_level is None:
        zero_level = zero_ratio(x.dtype, max(x.shape[-2], x.shape[-1]))
    if x.shape[0] == 1 and not ok[0] and 0 < large[0] <= REFINE_MAX_FRACTION * lam64.shape[-1]:
        transpose = x.shape[-2] <= x.shape[-1]
        deflated = _deflate_large_subspace(
            x[0].mT if transpose else x[0], lam[0], vecs[0], int(large[0]), zero_level, complete
        )
        if deflated is not None:
            values[0], polar_0 = deflated
            polar[0] = polar_0.mT if transpose else polar_0
            ok[0] = True
    return values, polar, torch.from_numpy(ok)


def _deflate_large_subspace(
    x: torch.Tensor, lam: torch.Tensor, vecs: torch.Tensor, num_large: int, zero_level: float, complete: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Nuclear norm and polar factor of one tall ``m x n`` matrix (``m >= n``), or None.

    For a spectrum of ``num_large`` large singular values (at least a tenth of the
    largest) over many small ones, such as nearly collapsed centroids: one large
    singular value, and small ones far below the float32 Gram tier's resolution that
    are real and carry the whole gradient (the large one's direction is radial, and
    the normalisation of the views removes it).

    ``lam``, ``vecs``: the float32 eigenpairs of ``G = X^T X`` (ascending). The large
    right singular subspace ``W_L`` starts from the float32 eigenvectors and takes one
    subspace iteration in float64, ``W_L <- orth(X^T X W_L)``, which divides its error
    by ``(sigma_S / sigma_L)^2``, then a Rayleigh-Ritz step. The rest,
    ``X_S = X - (X W_L) W_L^T`` in float64, holds the small singular values (and
    ``num_large`` zeros along ``W_L``) at its own scale: scaled to unit Frobenius norm,
    its float32 Gram matrix resolves them with float32's accuracy relative to the
    largest small one, ``(sigma_S,max / sigma_S)^2 eps`` rather than
    ``(sigma_max / sigma_S)^2 eps``. The polar factor is
    ``(X W_L) S_L^-1 W_L^T + X_S W_S S_S^-1 W_S^T``.

    Accepted when the small eigenvalues pass :func:`_gram_checks` at their own scale;
    the coupling ``E = (X W_L)^T X_S`` left between the parts moves the polar factor by
    at most ``||E|| / (s_L s_S)`` (first order; RMS below ``GRAD_RTOL / 2``) and the value
    by ``||E||^2 / (2 lambda_L s_S)`` (second order; below ``VALUE_RTOL / 2``); the
    float64 rounding of ``X_S``, ``eps64 sqrt(n) ||X||_F``, is below ``GRAD_RTOL / 2`` of
    the smallest ``s_S``; and, unless ``complete``, that smallest one lies above
    ``RANK_BAND zero_level sigma_max`` (ranks are decided by the later tiers). With
    ``complete`` a small singular value below ``zero_level sigma_max`` stays in the polar
    factor (as the SVD tier keeps its singular vectors) and out of the value.
    """
    f64 = torch.float64
    n = x.shape[-1]
    x64 = x.to(f64)
    basis = torch.linalg.qr(x64.mT @ (x64 @ vecs[:, n - num_large :].to(f64))).Q
    y_large = x64 @ basis
    mu_large, rotation = torch.linalg.eigh(y_large.mT @ y_large)
    w_large, y_large = basis @ rotation, y_large @ rotation
    x_small = x64 - y_large @ w_large.mT
    coupling = torch.linalg.matrix_norm(y_large.mT @ x_small)
    scale = torch.linalg.matrix_norm(x_small)
    value_large = mu_large.clamp_min(0).sqrt().sum()
    stats = torch.stack((coupling, scale, mu_large.sum(), mu_large[0], mu_large[-1], value_large)).tolist()
    coupling_f, scale_f, lam_large_sum, lam_l_min, lam_max, value_large_f = stats
    if not scale_f > 0 or not lam_l_min > 0:
        return None
    x_norm_f = math.sqrt(scale_f**2 + lam_large_sum)  # ||X||_F: the two parts are orthogonal
    small32 = (x_small / scale_f).to(x.dtype)
    mu, w = torch.linalg.eigh(small32.mT @ small32)
    # the num_large smallest eigenvalues are the deflated directions (X_S W_L = 0 up to
    # rounding); the checks below require every other one to stand clear of the noise
    mu_small = mu[num_large:].to("cpu", f64).numpy()[None]
    ok_small, value_small, inv_sigma = _gram_checks(mu_small, float(torch.finfo(x.dtype).eps), None)
    s_small = scale_f * np.sqrt(np.maximum(mu_small[0], 0.0))
    s_min, s_l_min, sigma_max = float(s_small[0]), math.sqrt(lam_l_min), math.sqrt(lam_max)
    if not bool(ok_small[0]) or not s_min > 0:
        return None
    if complete:
        value_kept = value_large_f + float(s_small[s_small > zero_level * sigma_max].sum())
    else:
        value_kept = value_large_f + scale_f * float(value_small[0])
    ok = (
        coupling_f / (s_l_min * s_min) / math.sqrt(n) <= GRAD_RTOL / 2
        and coupling_f**2 / (2 * lam_l_min * s_min) <= VALUE_RTOL / 2 * value_kept
        and _EPS64 * math.sqrt(n) * x_norm_f / s_min <= GRAD_RTOL / 2
        and (complete or s_min > RANK_BAND * zero_level * sigma_max)
    )
    if not ok:
        return None
    dtype = x.dtype
    w_small = w[:, num_large:]
    inv_small = torch.from_numpy(inv_sigma[0]).to(x.device, dtype)
    polar_small = small32 @ ((w_small * inv_small) @ w_small.mT)
    # the float32 eigenvectors leave a trace of W_L in W_S: project it out
    w_large32 = w_large.to(dtype)
    polar_small = polar_small - (polar_small @ w_large32) @ w_large32.mT
    polar_large = (y_large / mu_large.sqrt()) @ w_large.mT
    value = torch.tensor(value_kept, dtype=dtype, device=x.device)
    return value, polar_large.to(dtype) + polar_small


def _refine_small_subspace(
    x: torch.Tensor, lam: torch.Tensor, vecs: torch.Tensor, num_small: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Nuclear norm and polar factor of one tall ``m x n`` matrix (``m >= n``), or None.

    ``lam``, ``vecs``: the float32 eigenpairs of ``G = X^T X`` (ascending), of which the
    first ``num_small`` (eigenvalues below ``REFINE_RATIO lambda_max``) are too coarse.
    The large ones keep their float32 accuracy (relative error ``eps lambda_max /
    lambda_l`` at most ``eps / REFINE_RATIO``). The small ones are recomputed in float64
    from ``Y_S = X W_S`` (exact products of the data with the float32 basis), and the
    coupling ``E = (X W_L)^T Y_S`` that the float32 eigenvectors leave between the two
    subspaces is removed to first order by the Daleckii-Krein formula for
    ``H^(-1/2)``: in the basis ``V = [W_L, V_S]``, ``(X^T X)^(-1/2)`` has off-diagonal
    block ``M_ls = -E_ls / (s_l s_s (s_l + s_s))``, and the trace of ``H^(1/2)`` gains
    ``-1/2 sum E_ls^2 / (s_l s_s (s_l + s_s))``. The second-order remainder of singular
    value ``s`` is estimated as ``sum_l E_ls^2 / (lambda_l mu_s)``; the result is
    accepted under the same value and polar-factor tolerances as the Gram tier, and
    never when a small singular value lies within ``RANK_BAND`` of the zero level or
    below (the later tiers decide ranks): then None.
    """
    f64 = torch.float64
    # contiguous float64 copies of X and X^T keep every product below in the fast
    # (non-transposed) BLAS layout
    x64 = x.to(f64).contiguous()
    w_small = vecs[:, :num_small].to(f64)
    w_large = vecs[:, num_small:]
    y_small = x64 @ w_small
    mu, rot = torch.linalg.eigh(y_small.mT @ y_small)
    y_small = y_small @ rot
    v_small = w_small @ rot
    coupling = w_large.to(f64).mT @ (x64.mT.contiguous() @ y_small)  # (n - s) x s
    lam_large = lam[num_small:].to(f64)
    s_large = lam_large.sqrt()
    s_small = mu.clamp_min(0).sqrt()
    divided = 1.0 / (s_large[:, None] * s_small[None, :] * (s_large[:, None] + s_small[None, :]))
    m_ls = -coupling * divided
    value = s_large.sum() + s_small.sum() - 0.5 * (coupling.square() * divided).sum()
    # accuracy: float32 eigenpairs in L, second-order remainder in S
    lam_max = lam_large[-1]
    rel_large = _EPS32 * lam_max / lam_large
    rel_small = (coupling.square() / lam_large[:, None]).sum(0) / mu.clamp_min(torch.finfo(f64).tiny)
    value_err = (s_large * rel_large).sum() + (s_small * rel_small).sum()
    grad_err = torch.cat((rel_large, rel_small)).square().mean().sqrt()
    stats = torch.stack((value_err, grad_err, value, mu[0], lam_max)).tolist()
    zero_level = RANK_BAND * zero_ratio(x.dtype, max(x.shape))
    ok = (
        stats[3] > zero_level**2 * stats[4]
        and stats[0] <= VALUE_RTOL * stats[2]
        and stats[1] <= GRAD_RTOL
    )
    if not ok:
        return None
    # P = X V M V^T with V = [W_L, V_S], X V = [X W_L, Y_S], M = [[L^-1/2, M_LS], [M_LS^T, mu^-1/2]].
    # Every factor is now accurate to its own scale, so the products run in float32.
    dtype = x.dtype
    v_small_t = v_small.mT.to(dtype)
    m_ls = m_ls.to(dtype)
    right_large = (w_large / s_large.to(dtype)).mT + m_ls @ v_small_t
    right_small = v_small_t / s_small.to(dtype)[:, None] + m_ls.mT @ w_large.mT
    polar = x @ (w_large @ right_large) + y_small.to(dtype) @ right_small
    return value.to(dtype), polar


def _eig_tier(
    x: torch.Tensor,
    need_polar: bool,
    zero_level: float | None,
    report: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The float64 Gram tier: nuclear norms (N,), polar factors or None, accuracy mask (N,).

    Accepted under :func:`_gram_checks` with float64's ``eps``; ``zero_level`` (from
    :func:`zero_ratio`, or None where no rank is to be decided here) as there. With
    ``report``, stores there the share of the matrices the float32 tier would have
    accepted (the same eigenvalues under float32's ``eps``).
    """
    gram = _gram(x)
    if need_polar:
        lam, vecs = torch.linalg.eigh(gram)
    else:
        lam, vecs = torch.linalg.eigvalsh(gram), None
    lam64 = lam.to("cpu", torch.float64).numpy()
    ok, values64, inv_sigma64 = _gram_checks(lam64, _EPS64, zero_level)
    if report is not None:
        report["float32_share"] = float(_gram_checks(lam64, _EPS32, None)[0].mean())
    values = torch.from_numpy(values64).to(x.device, x.dtype)
    polar = None
    if vecs is not None:
        polar = _polar(x, vecs, torch.from_numpy(inv_sigma64).to(x.device, x.dtype))
    return values, polar, torch.from_numpy(ok)


def _orthonormal_complement(q: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Orthonormal ``(m, k)`` columns spanning the part of ``basis`` (m, k) orthogonal to ``q``.

    ``q`` (m, r) has orthonormal columns. With ``A = (I - q q^T) basis`` (projected twice,
    which keeps it orthogonal to ``q`` to float64 rounding) the result is the polar factor
    ``A (A^T A)^(-1/2)``: it depends on ``q`` only through its span, and continuously, so
    inputs that differ by rounding get completions that differ by rounding.
    """
    a = basis - q @ (q.mT @ basis)
    a = a - q @ (q.mT @ a)
    lam, w = torch.linalg.eigh(a.mT @ a)
    return a @ ((w * lam.clamp_min(torch.finfo(a.dtype).tiny).rsqrt()) @ w.mT)


COMPLETION_SEED = 20230303
"""Seed of the fixed Gaussian bases that complete the singular vectors of rank-deficient
matrices (:func:`_completion`)."""


def _completion(u: torch.Tensor, v: torch.Tensor, count: int) -> torch.Tensor:
    """``U_0 V_0^T`` (m, n): ``count`` orthonormal directions beyond ``u`` (m, r) and ``v`` (n, r).

    ``U_0`` and ``V_0`` are :func:`_orthonormal_complement` of fixed Gaussian bases, drawn
    on the CPU from ``COMPLETION_SEED`` and nothing else: the same on every device and
    every rank, independent of the global random state (drawing from it would shift
    the training's random stream), and the same for every matrix whose kept singular
    vectors span the same subspaces.
    """
    generator = torch.Generator().manual_seed(COMPLETION_SEED)
    m, n = u.shape[0], v.shape[0]
    basis_u = torch.randn(m, count, generator=generator, dtype=torch.float64).to(u.device, u.dtype)
    basis_v = torch.randn(n, count, generator=generator, dtype=torch.float64).to(v.device, v.dtype)
    return _orthonormal_complement(u, basis_u) @ _orthonormal_complement(v, basis_v).mT


def _svd_tier(
    x: torch.Tensor, need_polar: bool, zero_level: float, complete: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Nuclear norms, polar factors and an accuracy mask by SVD.

    float64: singular values below ``zero_level * sigma_max`` (:func:`zero_ratio` of the
    input) are zeros, left out of the value, and the result is always accepted. The
    polar factor is ``U_r V_r^T`` over the others, or with ``complete`` the full polar
    factor: the singular vectors of every singular value above the float64 SVD's own
    rounding (``zero_ratio(float64, max(m, n))``), which below ``zero_level`` are as
    good an estimate of the input's small singular directions as its rounding allows,
    and beyond those (exact zeros, where the SVD's vectors are arbitrary) the fixed
    completion of :func:`_completion`.
    float32: singular values below ``max(m, n) eps sigma_max`` are rounding noise; a
    matrix that has any, or whose polar factor is estimated to be off by more than
    ``GRAD_RTOL`` (perturbation bound ``2 eps sigma_max / (sigma_r + sigma_{r-1})`` over
    the rank's root), is not accepted.
    """
    if not need_polar:
        s = torch.linalg.svdvals(x)
        u = vh = None
    else:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
    sigma_max = s[..., :1]
    if x.dtype == torch.float64:
        keep = s > zero_level * sigma_max
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
    if not complete or x.dtype != torch.float64:
        return values, (u * keep.to(u.dtype).unsqueeze(-2)) @ vh, ok
    # singular values are descending: the first `resolved` vectors are used as they are
    resolved = (s > zero_ratio(torch.float64, max(x.shape[-2], x.shape[-1])) * sigma_max).sum(-1)
    polar = torch.empty_like(x)
    for i, rank_i in enumerate(resolved.tolist()):
        u_r, v_r = u[i, :, :rank_i], vh[i, :rank_i].mT
        polar[i] = u_r @ v_r.mT
        if rank_i < s.shape[-1]:
            polar[i] += _completion(u_r, v_r, s.shape[-1] - rank_i)
    return values, polar, ok


def _nuclear_norm_impl(
    x: torch.Tensor,
    need_polar: bool,
    route: str = "auto",
    report: dict[str, float] | None = None,
    subgradient: str = "minimum_norm",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tiered evaluation on a (N, m, n) batch; returns values (N,) and polar (N, m, n).

    ``route``: ``"auto"`` starts at the float32 Gram tier; ``"float64"`` at the float64
    Gram tier (matrices known to be ill-conditioned, e.g. views of one sample);
    ``"svd"`` at a float32 SVD (to compare with, or for matrices known to be too
    ill-conditioned for the Gram refinement).
    Matrices a tier cannot resolve go on to the float64 Gram tier, then a float64 SVD.
    Results come back in the input's working precision. ``report`` (a dict), if given,
    receives ``"float32_share"``: the share of the matrices the float32 Gram tier
    accepted (route ``"auto"``) or would have accepted (route ``"float64"``), from which
    a caller with a stream of similar batches can pick the next call's route.
    ``subgradient``: see the module docstring. With ``"complete"`` no Gram tier decides
    a rank, so every rank-deficient matrix reaches the SVD, which completes its
    singular vectors; the value is the same as with ``"minimum_norm"``.
    """
    out_dtype = spectral_dtype(x)
    xw = x.to(out_dtype)
    complete = subgradient == "complete"
    zero_level = zero_ratio(out_dtype, max(x.shape[-2], x.shape[-1]))
    gram_zero_level = None if complete else zero_level
    if route == "svd" and out_dtype == torch.float32:
        values, polar, ok = _svd_tier(xw, need_polar, zero_level, complete)
    elif route == "float64" or out_dtype == torch.float64:
        values, polar, ok = _eig_tier(xw.to(torch.float64), need_polar, gram_zero_level, report)
    else:
        values, polar, ok = _gram_tier(xw, need_polar, zero_level, complete)
        if report is not None:
            report["float32_share"] = float(ok.double().mean())
    first_is_f64 = values.dtype == torch.float64
    ok = ok.cpu()
    if bool(ok.all()):
        return values.to(out_dtype), None if polar is None else polar.to(out_dtype)
    redo_cpu = (~ok).nonzero().squeeze(-1)
    redo = redo_cpu.to(x.device)
    x64 = xw.index_select(0, redo).to(torch.float64)
    if first_is_f64:
        v64, p64, ok64 = values[redo], None if polar is None else polar[redo], ok[redo_cpu]
    else:
        v64, p64, ok64 = _eig_tier(x64, need_polar, gram_zero_level)
    bad = (~ok64.cpu()).nonzero().squeeze(-1).to(x.device)
    if bad.numel() > 0:
        v_svd, p_svd, _ = _svd_tier(x64.index_select(0, bad), need_polar, zero_level, complete)
        v64 = v64.index_copy(0, bad, v_svd)
        if p64 is not None and p_svd is not None:
            p64 = p64.index_copy(0, bad, p_svd)
    values = values.index_copy(0, redo, v64.to(values.dtype))
    if polar is not None and p64 is not None:
        polar = polar.index_copy(0, redo, p64.to(polar.dtype))
    return values.to(out_dtype), None if polar is None else polar.to(out_dtype)


class _NuclearNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, route: str, report: dict[str, float] | None, subgradient: str
    ) -> torch.Tensor:
        batch_shape = x.shape[:-2]
        flat = x.reshape(-1, x.shape[-2], x.shape[-1])
        values, polar = _nuclear_norm_impl(flat, ctx.needs_input_grad[0], route, report, subgradient)
        if polar is not None:
            ctx.save_for_backward(polar.reshape(x.shape))
        return values.reshape(batch_shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (polar,) = ctx.saved_tensors
        return grad.to(polar.dtype)[..., None, None] * polar, None, None, None


ROUTES = ("auto", "float64", "svd")


def nuclear_norm(
    x: torch.Tensor,
    route: str = "auto",
    report: dict[str, float] | None = None,
    subgradient: str = "minimum_norm",
) -> torch.Tensor:
    """Nuclear norm of every matrix in ``x`` of shape ``(..., m, n)``; returns shape ``(...)``.

    Matches ``torch.linalg.svdvals(x).sum(-1)`` (relative error below about 1e-6 in
    float32), through the eigenvalues of the smaller Gram matrix where that is accurate
    (see the module docstring). Differentiable: the gradient is the polar factor
    ``U V^T``. Singular values below :func:`zero_ratio` of the largest (``eps32``, about
    1.2e-7, for float32: the input's own rounding level) are zeros; every larger one is
    resolved, by a float64 SVD where the Gram routes cannot.
    Results come in float32 for half/bfloat16/float32 inputs and float64 for float64.
    ``route`` picks the first tier (see :func:`_nuclear_norm_impl`): ``"auto"``,
    ``"float64"`` (ill-conditioned matrices such as the views of one sample) or ``"svd"``
    (a float32 SVD first); later tiers guarantee the accuracy whatever the route.
    ``report``: an optional dict that receives ``"float32_share"`` (see
    :func:`_nuclear_norm_impl`).
    ``subgradient``: the gradient at a rank-deficient matrix. ``"minimum_norm"`` (for a
    norm that is minimised: the steepest descent) gives ``U_r V_r^T`` over the nonzero
    singular values; ``"complete"`` (for a norm that is maximised, such as MMCR's global
    term) gives the full polar factor, ``U_r V_r^T`` plus ``U_0 V_0^T`` from orthonormal
    complements of the ranges, along which every zero singular value grows: the
    minimum-norm choice would make exact collapse a fixed point of gradient ascent.
    The completion is a deterministic function of ``x``. Away from rank deficiency the
    two agree.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if subgradient not in SUBGRADIENTS:
        raise ValueError(f"subgradient must be one of {SUBGRADIENTS}, got {subgradient!r}")
    if x.ndim < 2:
        raise ValueError(f"nuclear_norm needs matrices of shape (..., m, n), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"nuclear_norm needs non-empty matrices, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"nuclear_norm needs a floating-point tensor, got dtype {x.dtype}")
    # the spectral work stays in float32/float64 inside a caller's autocast region too
    with full_precision(x):
        out: torch.Tensor = _NuclearNorm.apply(x, route, report, subgradient)
    return out


def two_view_nuclear_norm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Nuclear norm of ``[a b]`` for unit vectors ``a``, ``b`` of shape ``(..., D)``.

    With ``c = a.b`` the singular values are ``sqrt(1 + c)`` and ``sqrt(1 - c)``, and
    ``||a + b||^2 = 2 (1 + c)``, ``||a - b||^2 = 2 (1 - c)``, so

        ||[a b]||_* = (||a + b|| + ||a - b||) / sqrt(2),

    which, unlike the cosine form, has no cancellation when the views nearly coincide.
    As in :func:`nuclear_norm`, a singular value below :func:`zero_ratio` times the
    other (``eps`` of the views' precision: views that coincide up to rounding, which
    leaves ``||a - b||`` at 0.1-0.3 ``eps``) is an exact zero, so the gradient there is the
    minimum-norm subgradient (this is the local term, which is minimised) rather than a
    unit vector along the rounding noise. Only valid for unit vectors (the MMCR loss
    normalises every view first).
    """
    plus = torch.linalg.vector_norm(a + b, dim=-1)
    minus = torch.linalg.vector_norm(a - b, dim=-1)
    level = zero_ratio(plus.dtype)
    zero = torch.zeros_like(plus)
    plus_kept = torch.where(plus <= level * minus, zero, plus)
    minus_kept = torch.where(minus <= level * plus, zero, minus)
    return (plus_kept + minus_kept) / math.sqrt(2.0)
