"""The Maximum Manifold Capacity Representations (MMCR) objective.

Yerxa, Kuang, Simoncelli and Chung, "Learning Efficient Coding of Natural Images with
Maximum Manifold Capacity Representations", NeurIPS 2023; the pretraining percent error
is Eq. 4 of Schaeffer et al., "Towards an Improved Understanding and Utilization of
Maximum Manifold Capacity Representations", 2024.

For ``B`` samples with ``K`` views each, every view ``z[n, k]`` in ``R^D`` is
L2-normalised, the centroid of sample ``n`` is ``mu_n = mean_k z[n, k]``, ``C`` is the
``B x D`` matrix of centroids and ``Z_n`` the ``D x K`` matrix of sample ``n``'s views:

    L = lmbda * (1/B) sum_n ||Z_n||_*  -  ||C||_*
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from mmcr.distributed import gather_with_grad, is_distributed
from mmcr.objectives.base import (
    Objective,
    check_coefficient,
    check_finite,
    check_views,
    full_precision,
    spectral_dtype,
)
from mmcr.objectives.registry import register_objective
from mmcr.objectives.spectral import nuclear_norm, two_view_nuclear_norm


def _to_spectral(z: torch.Tensor) -> torch.Tensor:
    return z.to(spectral_dtype(z))


class _ViewsAndCentroids(torch.autograd.Function):
    """Unit-normalised views ``u = z / ||z||`` (B, K, D) and centroids ``mean_k u`` (B, D).

    One pass forward, and a hand-written backward (the gradient of ``u`` is projected on
    the tangent space of the sphere and divided by ``||z||``): fewer kernels than autograd
    through ``norm``, ``div`` and ``mean``, which matters because for small ``D`` the
    normalisation, not the spectrum, dominates the loss's cost.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, norms, ctx.scale = _checked_norms(z)
        views = z / norms
        ctx.save_for_backward(views, norms)
        return views, views.mean(dim=1)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_views: torch.Tensor | None, grad_centroids: torch.Tensor | None
    ) -> torch.Tensor:
        views, norms = ctx.saved_tensors
        share = None if grad_centroids is None else grad_centroids.unsqueeze(1) / views.shape[1]
        if grad_views is None:
            grad = torch.zeros_like(views) if share is None else share.expand_as(views).clone()
        else:
            grad = grad_views.clone() if share is None else grad_views + share
        # project on the tangent space of the sphere, in place: no further (B, K, D) buffer
        with full_precision(views):
            radial = torch.linalg.vecdot(grad, views).unsqueeze(-1)
        grad = grad.addcmul_(views, radial, value=-1.0).div_(norms)
        return grad if ctx.scale is None else grad.mul_(ctx.scale)


class _Centroids(torch.autograd.Function):
    """Centroids ``mean_k z[:, k] / ||z[:, k]||`` (B, D) without materialising the views.

    Forward is one norm and one batched matrix product; the backward writes the gradient
    ``g / (K ||z||) - z (z . g) / (K ||z||^3)`` into its output with no other (B, K, D)
    buffer. On CPUs each fresh buffer of that size costs page faults, which at small D
    weigh as much as the arithmetic.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:
        z, norms, ctx.scale = _checked_norms(z)
        ctx.save_for_backward(z, norms)
        weights = (norms * z.shape[1]).reciprocal_().mT  # (B, 1, K)
        with full_precision(z):
            return (weights @ z).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_centroids: torch.Tensor) -> torch.Tensor:
        z, norms = ctx.saved_tensors
        with full_precision(z):
            share = grad_centroids.unsqueeze(1) / z.shape[1]  # (B, 1, D)
            inv_norms = norms.reciprocal()
            radial = (z @ share.mT) * inv_norms.pow(3)  # (B, K, 1)
            grad = z * radial.neg_()
            grad = grad.addcmul_(share, inv_norms)
        return grad if ctx.scale is None else grad.mul_(ctx.scale)


# Within this band of view norms every quantity of the forward and backward passes (down to
# ||z||^-3) stays inside float32's normal range; outside it the views are rescaled first.
_NORM_BAND = (2.0**-30, 2.0**30)


def _checked_norms(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(z', ||z'||, scale)``: the views' norms (B, K, 1), clamped away from 0.

    Raises if ``z`` is not finite. The loss is invariant to each view's scale, so views whose
    norms leave :data:`_NORM_BAND` (huge values whose squares overflow, or tiny ones) are
    first multiplied by a power of two per view, ``z' = z * scale`` (exact in floating
    point); ``scale`` is None when no view needed it, and the gradient with respect to
    ``z`` is the one with respect to ``z'`` times ``scale``.
    """
    norms = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    low, high = torch.stack(torch.aminmax(norms)).tolist()  # one host transfer
    if math.isfinite(high) and high <= _NORM_BAND[1] and low >= _NORM_BAND[0]:
        return z, norms.clamp_min_(1e-12), None
    # rare: views of zeros also come here, and a norm that underflowed to 0 is told apart
    # from them by the largest entry
    check_finite(z)  # a NaN or infinite value raises; finite values whose norm overflowed go on
    _, exponent = torch.frexp(z.abs().amax(dim=-1, keepdim=True))
    # a view of zeros keeps scale 1; 2^126 bounds the scale of subnormal views (float32's range)
    scale = torch.ldexp(torch.ones_like(norms), (-exponent).clamp_max_(126))
    z = z * scale
    return z, torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(1e-12), scale


def centroids_of(z: torch.Tensor) -> torch.Tensor:
    """Differentiable centroids of the unit-normalised views of raw ``(B, K, D)`` embeddings."""
    out: torch.Tensor = _Centroids.apply(z)
    return out


def views_and_centroids(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ``(normalised views, centroids)`` of raw ``(B, K, D)`` embeddings."""
    out: tuple[torch.Tensor, torch.Tensor] = _ViewsAndCentroids.apply(z)
    return out


def local_nuclear_norms(
    views: torch.Tensor, route: str = "float64", report: dict[str, float] | None = None
) -> torch.Tensor:
    """``||Z_n||_*`` for every sample of unit-normalised ``views`` (B, K, D): shape (B,).

    K = 2 uses the closed form of :func:`two_view_nuclear_norm`; other K the Gram route
    of :func:`nuclear_norm` on the K x D view matrices, starting at ``route``: views of
    one sample close to each other have K x K Gram matrices with one dominant eigenvalue
    and K - 1 small ones, for which ``"float64"`` is the faster start; spread-out views
    are resolved by the float32 tier (``"auto"``). ``report`` as in :func:`nuclear_norm`.
    """
    if views.shape[1] == 2:
        return two_view_nuclear_norm(views[:, 0], views[:, 1])
    if views.shape[1] == 1:
        return torch.linalg.vector_norm(views[:, 0], dim=-1)
    return nuclear_norm(views, route=route, report=report)


def max_nuclear_norm(num_points: int, dim: int) -> float:
    """``sqrt(P min(P, D))``: the largest nuclear norm of P centroids of norm <= 1 in R^D."""
    return math.sqrt(num_points * min(num_points, dim))


@register_objective
class MMCRLoss(Objective):
    """MMCR loss on ``(B, K, D)`` projector outputs.

    Args:
        lmbda: weight of the local term ``mean_n ||Z_n||_*`` (0, the reference default,
            skips it).
        distributed: under an initialised torch.distributed process group, use the
            centroids of the global batch (all ranks' views, gathered with exact
            gradients). Has no effect without a process group.

    ``forward(z, z_momentum=None)`` returns the scalar loss. With ``z_momentum`` (the
    same views through a momentum/EMA network, no gradient needed) the centroid matrix
    is the average of the online and momentum centroids, and the local term uses the
    online views only. After each call, ``components`` holds detached tensors
    ``loss``, ``global_nuclear_norm`` (``||C||_*``), ``local_nuclear_norm``
    (``mean_n ||Z_n||_*``, NaN when skipped), ``ppe`` and ``batch_size`` (global).
    For K > 2 with ``lmbda > 0`` the local term's first tier (float32 or float64 Gram)
    is the one that would have resolved most of the previous batch's view matrices: a
    speed choice only, the result is exact either way. The loss keeps float32 inside a
    caller's autocast region.

    At rank-deficient centroids (all views identical, a collapsed projector, exact low
    rank) ``||C||_*``, which the loss maximises, has no gradient; its gradient is then the
    full polar factor of ``C``, with the singular vectors completed beyond the rank
    (``subgradient="complete"`` of :func:`~mmcr.objectives.spectral.nuclear_norm`), which
    raises every zero singular value and so leads out of collapse, where the
    minimum-norm subgradient would leave gradient descent at the collapsed point. The
    completion is a deterministic function of the global ``C``, which every rank of a
    data-parallel run gathers identically: all ranks use the same one. The local term,
    which is minimised, keeps the minimum-norm subgradient (its steepest descent).

    Example:
        >>> loss_fn = MMCRLoss(lmbda=0.0)
        >>> z = torch.randn(256, 4, 128, requires_grad=True)  # 256 images, 4 views
        >>> loss = loss_fn(z)
        >>> loss.backward()
        >>> float(loss_fn.components["ppe"]) < 1
        True
    """

    name = "mmcr"
    uses_momentum = True

    def __init__(self, lmbda: float = 0.0, distributed: bool = True) -> None:
        super().__init__()
        self.lmbda = check_coefficient(
            "lmbda", lmbda, note="a negative weight would reward spreading the views of one sample apart"
        )
        self.distributed = distributed
        # route of the local term's first tier, chosen from the previous batch (speed only:
        # the result is exact either way)
        self._local_route = "float64"
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int, int] | None = None

    @property
    def components(self) -> dict[str, torch.Tensor]:
        """Detached parts of the last loss (empty before the first call), built on access."""
        if self._last is None:
            return {}
        loss, global_nuc, local, num_points, dim = self._last
        if local is None:
            local = torch.full((), float("nan"), dtype=global_nuc.dtype, device=global_nuc.device)
        return {
            "loss": loss,
            "global_nuclear_norm": global_nuc,
            "local_nuclear_norm": local,
            "ppe": 1.0 - global_nuc / max_nuclear_norm(num_points, dim),
            "batch_size": torch.tensor(num_points),
        }

    def extra_repr(self) -> str:
        return f"lmbda={self.lmbda}, distributed={self.distributed}"

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        return gather_with_grad(x) if self.distributed and is_distributed() else x

    def forward(self, z: torch.Tensor, z_momentum: torch.Tensor | None = None) -> torch.Tensor:
        check_views(z, finite=False)  # finiteness is checked on the norms, in one pass with them
        # inside a caller's autocast region the products below would drop to half precision
        with full_precision(z):
            return self._loss(z, z_momentum)

    def _loss(self, z: torch.Tensor, z_momentum: torch.Tensor | None) -> torch.Tensor:
        if self.lmbda > 0:
            views, local_centroids = views_and_centroids(_to_spectral(z))
        else:
            views, local_centroids = None, centroids_of(_to_spectral(z))
        centroids = self._gather(local_centroids)
        if z_momentum is not None:
            if z_momentum.shape != z.shape:
                raise ValueError(
                    f"z_momentum must have the shape of z {tuple(z.shape)}, got {tuple(z_momentum.shape)}"
                )
            check_views(z_momentum, name="z_momentum")
            with torch.no_grad():
                momentum_centroids = self._gather(centroids_of(_to_spectral(z_momentum.detach())))
            centroids = 0.5 * (centroids + momentum_centroids)
        num_points, dim = centroids.shape
        # maximised: at rank-deficient centroids (collapse) the completed polar factor
        # ascends where the minimum-norm subgradient would leave the rank where it is
        global_nuc = nuclear_norm(centroids, subgradient="complete")
        loss = -global_nuc
        local = None
        if views is not None:
            report: dict[str, float] = {}
            local = self._gather(local_nuclear_norms(views, self._local_route, report)).mean()
            if "float32_share" in report:
                self._local_route = "auto" if report["float32_share"] >= 0.5 else "float64"
            loss = loss + self.lmbda * local
        self._last = (
            loss.detach(),
            global_nuc.detach(),
            None if local is None else local.detach(),
            num_points,
            dim,
        )
        return loss


@torch.no_grad()
def pretraining_percent_error(z: torch.Tensor) -> torch.Tensor:
    """Pretraining percent error (Eq. 4 of Schaeffer et al., 2024).

    ``PPE = 1 - ||C||_* / sqrt(P min(P, D))`` in ``[0, 1]``: 0 when every centroid has
    unit norm and ``C`` is isotropic (perfect alignment and uniformity), 1 when the
    centroids vanish.

    Args:
        z: either ``(P, K, D)`` raw multi-view embeddings (each view is L2-normalised and
            the centroids formed, as in :class:`MMCRLoss`) or a ``(P, D)`` floating-point
            centroid matrix used as given: centroids of unit views, so rows of norm at most 1
            (checked; the PPE is in [0, 1] only then).

    Returns:
        A 0-dim tensor (float32, or float64 for float64 input).

    Raises:
        ValueError: a ``(P, D)`` matrix that is not floating point, not finite, or has a row
            of norm above 1 (pass raw views as ``(P, K, D)`` to have them normalised).
    """
    if isinstance(z, torch.Tensor) and z.ndim == 2:
        if z.shape[0] < 2 or z.shape[1] < 1:
            raise ValueError(f"a centroid matrix needs shape (P >= 2, D >= 1), got {tuple(z.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"a centroid matrix must be floating point, got dtype {z.dtype}")
        check_finite(z, name="centroids")
        centroids = _to_spectral(z)
        longest = float(torch.linalg.vector_norm(centroids, dim=1).max())
        if longest > 1.0 + 1e-4:
            raise ValueError(
                f"a centroid matrix must have rows of norm <= 1 (centroids of unit views), got a row "
                f"of norm {longest:.4g}; pass the raw views as (P, K, D) to have them normalised"
            )
    else:
        check_views(z, finite=False)  # centroids_of tests finiteness on the norms
        centroids = centroids_of(_to_spectral(z))
    num_points, dim = centroids.shape
    return 1.0 - nuclear_norm(centroids) / max_nuclear_norm(num_points, dim)
