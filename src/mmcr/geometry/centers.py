"""Correlations between manifold centres, and the low-rank structure they share.

The mean-field capacity assumes manifolds oriented at random with respect to each other.
Real manifolds share structure: their centres are correlated. Cohen, Chung, Lee and
Sompolinsky (Nat. Commun. 11, 746, 2020, Methods, "Manifold centre correlations") remove it
before the analysis: find the K-dimensional subspace ``V`` (orthonormal columns, a point of
the Stiefel manifold) whose removal leaves the centres least correlated, that is which
minimises the sum over pairs of squared cosines of the residual centres

    cost(V) = sum_{m != n} r_mn^2 / (r_mm r_nn),   r_mn = c_m . c_n - (V^T c_m) . (V^T c_n),

and choose K where the mean absolute residual correlation is smallest. The
optimisation here runs L-BFGS (torch) on an unconstrained matrix mapped onto the Stiefel
manifold by its QR factor (a retraction), with the gradient in closed form; K grows one at
a time, each start being the previous solution plus one random direction of the centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmcr.threads import one_torch_thread

__all__ = ["CenterStructure", "mean_abs_correlation", "shared_center_structure"]


@dataclass(frozen=True)
class CenterStructure:
    """The shared centre subspace chosen for removal.

    Attributes:
        basis: ``(N, K)`` orthonormal columns in feature space (K may be 0).
        center_correlation: mean absolute cosine between the centred manifold centres,
            before removal (the correlation the public analysis reports).
        residual_correlation: the same after removing ``basis``.
        correlations: ``(K_tried + 1,)`` the residual correlation for K = 0, 1, ...
    """

    basis: torch.Tensor
    center_correlation: float
    residual_correlation: float
    correlations: tuple[float, ...]

    @property
    def components(self) -> int:
        return int(self.basis.shape[1])


def mean_abs_correlation(x: torch.Tensor) -> float:
    """Mean over pairs ``m != n`` of ``|cos(x_m, x_n)|`` for the rows of ``x`` ``(P, q)``."""
    p = x.shape[0]
    if p < 2:
        return 0.0
    unit = x / x.norm(dim=1, keepdim=True).clamp(min=1e-300)
    cos = unit @ unit.T
    return float((cos.abs().sum() - cos.diagonal().abs().sum()) / (p * (p - 1)))


def _cost_and_gradient(
    x: torch.Tensor, gram: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cost and its Euclidean gradient in ``v`` ``(q, K)``; centres ``x`` ``(P, q)``, ``gram = x x^T``.

    With ``c = x v``, residual Gram ``R = x x^T - c c^T`` and ``n = diag(R)``, the cost is
    ``1/2 sum_{m != n} R_mn^2 / (n_m n_n)``; its differential is ``tr(Q dR)`` with
    ``Q = W - diag(a)``, ``W_mn = R_mn / (n_m n_n)`` off the diagonal and
    ``a_m = sum_{n != m} R_mn^2 / (n_m^2 n_n)``, so the gradient is ``-2 x^T Q x v``.
    """
    c = x @ v
    residual = gram - c @ c.T
    norms = residual.diagonal().clamp(min=1e-300)
    w = residual / (norms[:, None] * norms[None, :])
    w.fill_diagonal_(0.0)
    weighted = w * residual
    a = weighted.sum(dim=1) / norms
    q_c = w @ c - a[:, None] * c
    return 0.5 * weighted.sum(), -2.0 * x.T @ q_c


def _optimise(x: torch.Tensor, gram: torch.Tensor, start: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Minimise the cost over ``span(qf(A))`` by L-BFGS on A ``(q, K)``.

    The cost depends on the subspace only, so with ``A = V R`` (QR) its gradient in A is
    ``(I - V V^T) E R^{-T}``, E the gradient in V (given to the optimiser directly, without
    autograd).
    """
    a = start.clone()
    opt = torch.optim.LBFGS(
        [a],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        v, r = torch.linalg.qr(a)
        cost, grad_v = _cost_and_gradient(x, gram, v)
        tangent = grad_v - v @ (v.T @ grad_v)
        a.grad = torch.linalg.solve_triangular(r, tangent.T, upper=True, left=True).T  # tangent R^{-T}
        return cost

    opt.step(closure)
    return torch.linalg.qr(a).Q


def _residual_correlation(x: torch.Tensor, v: torch.Tensor) -> float:
    return mean_abs_correlation(x - (x @ v) @ v.T)


def shared_center_structure(
    centers: torch.Tensor,
    *,
    components: int | None = None,
    max_components: int | None = None,
    restarts: int = 3,
    patience: int = 2,
    max_iter: int = 1000,
    seed: int = 0,
) -> CenterStructure:
    """Find the low-rank structure shared by the centres ``(P, N)`` (float64).

    Args:
        centers: the manifold centres, one per row (after global centring).
        components: remove exactly this many (0 = none); None chooses K.
        max_components: the largest K tried when choosing (default: P - 2, at most 25 more
            than the number of principal components of the centres that hold 95 % of
            their variance).
        restarts: random starts per K; the lowest cost wins.
        patience: stop growing K after this many K without a new lowest correlation.
        max_iter: L-BFGS iterations per start.
        seed: seeds the random starts.
    """
    with one_torch_thread():  # P x P matrices: threads cost more than they give
        p = centers.shape[0]
        centered = centers - centers.mean(dim=0, keepdim=True)
        # coordinates in the span of the centred centres: a rotation-invariant frame, q <= P - 1 dims
        eigval, eigvec = torch.linalg.eigh(centered @ centered.T)
        keep = eigval > eigval.max().clamp(min=0) * 1e-12 * max(p, 1)
        eigval, eigvec = eigval[keep].flip(0), eigvec[:, keep].flip(1)
        # fix each eigenvector's sign (largest entry positive) so that the random starts, and so
        # the result, do not depend on the rotation of the data
        pivot = eigvec.abs().argmax(dim=0)
        eigvec = eigvec * torch.where(eigvec[pivot, torch.arange(eigvec.shape[1])] < 0, -1.0, 1.0)
        # the cost is scale-free, the optimiser's steps are not: unit-scale coordinates make the
        # result independent of a global scale of the data
        x = eigvec * (eigval / eigval[0]).sqrt() if eigval.numel() else eigvec  # (P, q)
        frame = centered.T @ eigvec / eigval.sqrt()  # (N, q): orthonormal columns, centered = x @ frame.T
        q = x.shape[1]
        before = mean_abs_correlation(x)
        limit = max(0, min(q - 1, p - 2))
        if components is not None:
            if components < 0 or components > limit:
                raise ValueError(
                    f"components must be between 0 and {limit} for {p} manifolds whose centres span "
                    f"{q} dimensions, got {components}"
                )
            tried = range(1, components + 1)
        else:
            if max_components is None:
                share = eigval.cumsum(0) / eigval.sum().clamp(min=1e-300)
                k95 = int((share < 0.95).sum()) + 1 if q else 0
                max_components = min(limit, k95 + 25)
            tried = range(1, max(0, min(limit, max_components)) + 1)
        rng = np.random.default_rng(seed)
        gram = x @ x.T
        correlations = [before]
        solutions = [torch.zeros(q, 0, dtype=x.dtype)]
        best_k, since_best = 0, 0
        for k in tried:
            best_v, best_cost = solutions[-1], float("inf")
            for _ in range(restarts):
                direction = x.T @ torch.from_numpy(rng.standard_normal((p, 1)))
                v = _optimise(x, gram, torch.cat([direction, solutions[-1]], dim=1), max_iter)
                cost = float(_cost_and_gradient(x, gram, v)[0])
                if cost < best_cost:
                    best_v, best_cost = v, cost
            solutions.append(best_v)
            correlations.append(_residual_correlation(x, best_v))
            if components is None:
                if correlations[-1] < correlations[best_k]:
                    best_k, since_best = k, 0
                else:
                    since_best += 1
                    if since_best >= patience:
                        break
        chosen = components if components is not None else best_k
        basis = frame @ solutions[chosen]
        return CenterStructure(basis, before, correlations[chosen], tuple(correlations))
