"""Anchor points of manifolds: the KKT solution of the mean-field min-distance problem, batched.

For a manifold given by M points ``S_j`` in ``d = D + 1`` dimensions (the D intrinsic
coordinates and the centre coordinate), and a Gaussian vector ``T``, the replica
mean-field theory of Chung, Lee and Sompolinsky (PRX 8, 031003, 2018, Sec. III A) needs

    F(T) = min_V ||V - T||^2   subject to   V . S_j >= kappa  for every point j   (PRX eqs. 11-12).

Its KKT conditions (PRX eqs. 13-14) give ``V = T + lambda S~(T)`` with
``lambda = sum_j alpha_j >= 0`` and the anchor point ``S~(T) = sum_j alpha_j S_j / lambda``, a
convex combination of the points on the margin (a point of conv(S) with minimal overlap with
V); then ``F(T) = [max(kappa - T . S~, 0)]^2 / ||S~||^2`` (PRX eqs. 16-17).

The solver works on the dual, a non-negative quadratic programme in the multipliers,

    min_{alpha >= 0}  1/2 ||S^T alpha||^2 + alpha . (S T - kappa),

whose gradient is the constraint value ``g = S V - kappa``. It is solved for all ``n``
vectors ``T`` of all manifolds at once: accelerated projected gradient steps (shared
matrix products, cheap) find the active set approximately, and primal-dual active-set
(semismooth Newton) passes then solve the equality system on it exactly, re-solving only
the vectors whose active set changed. A fixed point of the active-set pass satisfies the
KKT conditions, so the anchors are exact up to rounding, not up to an iteration count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["AnchorSolution", "anchor_points"]


@dataclass(frozen=True)
class AnchorSolution:
    """Anchor points of ``n`` Gaussian vectors on each of ``P`` manifolds.

    Attributes:
        anchors: ``(P, n, d)`` anchor points ``S~(T)``; the first coordinate is the centre
            coordinate (1 for points given with centre coordinate 1).
        multipliers: ``(P, n, M)`` KKT multipliers ``alpha`` (zero where ``T`` is interior).
        field: ``(P, n)`` the minimum squared distance ``F(T)``.
        interior: ``(P, n)`` True where ``T`` already satisfies every constraint
            (``F = 0``; the anchor is then the point that minimises ``T . S_j``).
        unconverged: how many ``(manifold, T)`` problems failed the KKT check.
    """

    anchors: torch.Tensor
    multipliers: torch.Tensor
    field: torch.Tensor
    interior: torch.Tensor
    unconverged: int


@torch.no_grad()
def anchor_points(
    points: torch.Tensor,
    t: torch.Tensor,
    kappa: float = 0.0,
    *,
    warm_iters: int = 30,
    max_passes: int = 30,
    tol: float = 1e-9,
) -> AnchorSolution:
    """Solve the min-distance problem for every Gaussian vector of every manifold.

    Args:
        points: ``(P, M, d)`` float64 points of P manifolds (pad a manifold with fewer
            points by repeating one of its points, with fewer dimensions by zeros).
        t: ``(P, n, d)`` float64 Gaussian vectors, n per manifold.
        kappa: the margin, >= 0, in the units of the coordinates of ``points``.
        warm_iters: projected-gradient steps before the first active-set pass.
        max_passes: active-set passes before more gradient steps are tried.
        tol: relative tolerance of the KKT check.
    """
    if points.ndim != 3 or t.ndim != 3 or points.shape[0] != t.shape[0] or points.shape[2] != t.shape[2]:
        raise ValueError(
            f"expected points (P, M, d) and t (P, n, d), got {tuple(points.shape)} and {tuple(t.shape)}"
        )
    points, t = points.double(), t.double()
    q = torch.matmul(t, points.mT) - kappa  # (P, n, M): the constraint values at V = T
    # Lipschitz constant of the dual gradient, one per manifold: lambda_max(S^T S)
    lipschitz = torch.linalg.eigvalsh(points.mT @ points)[:, -1].clamp(min=1e-300)[:, None, None]
    scale = (lipschitz.sqrt() * (1.0 + t.norm(dim=-1, keepdim=True)) + abs(kappa)) * tol  # (P, n, 1)
    interior = q.amin(dim=-1) >= 0

    m, d = points.shape[1:]
    if m > d or d <= 8:
        # more points than dimensions: the multipliers are not unique and active-set
        # systems can be singular; small d: the interior-point systems are tiny anyway
        alpha, done = _screened_interior_point(points, t, q, kappa, tol)
    else:
        alpha = _projected_gradient(points, q, lipschitz, torch.zeros_like(q), warm_iters)
        alpha, done = _active_set(points, q, lipschitz, alpha, scale, max_passes)
        left = (~done).nonzero(as_tuple=True)
        if left[0].numel():  # cycling active sets, rare: the robust method on those alone
            sub, sub_done = _interior_point(points[left[0]], t[left].unsqueeze(1), kappa, tol)
            alpha[left] = sub.squeeze(1)
            done[left] = sub_done.squeeze(1)
    alpha = torch.where(interior[..., None], torch.zeros_like(alpha), alpha)

    weight = alpha.sum(dim=-1, keepdim=True)
    anchors = torch.matmul(alpha, points) / weight.clamp(min=1e-300)
    # interior T (or a vanishing multiplier): the anchor is the point that touches first
    support = torch.gather(
        points, 1, q.argmin(dim=-1, keepdim=True).expand(-1, -1, points.shape[2])
    )  # (P, n, d)
    flat = interior | (weight.squeeze(-1) <= 0)
    anchors = torch.where(flat[..., None], support, anchors)
    gap = (kappa - (t * anchors).sum(-1)).clamp(min=0)
    field = gap.square() / anchors.square().sum(-1).clamp(min=1e-300)
    field = torch.where(interior, torch.zeros_like(field), field)
    unconverged = int((~(done | interior)).sum())
    return AnchorSolution(anchors, alpha, field, interior, unconverged)


def _screened_interior_point(
    points: torch.Tensor, t: torch.Tensor, q: torch.Tensor, kappa: float, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The interior-point method on a few candidate points per problem, grown until no point is violated.

    Only the points that hold the anchor matter (at most d of them generically); the
    candidates are those most violated at ``V = T``, then at the current solution. A
    solution that satisfies every constraint of the manifold, not only the candidates', is
    the solution of the whole problem.
    """
    p, m, d = points.shape
    n = t.shape[1]
    alpha = torch.zeros(p, n, m, dtype=points.dtype)
    done = torch.zeros(p, n, dtype=torch.bool)
    values = q  # constraint values at the current V, (P, n, M)
    v_all = t.clone()
    k = min(m, 4 * d + 8)
    todo = torch.ones(p, n, dtype=torch.bool)
    while bool(todo.any()):
        p_idx, n_idx = todo.nonzero(as_tuple=True)
        # the points active so far stay candidates; the rest are the most violated
        priority = torch.where(alpha[p_idx, n_idx] > 0, -torch.inf, values[p_idx, n_idx])
        candidates = torch.topk(priority, k, dim=-1, largest=False).indices  # (b, k)
        subset = points[p_idx[:, None], candidates]  # (b, k, d)
        z, ok = _interior_point(subset, t[p_idx, n_idx].unsqueeze(1), kappa, tol)
        full = torch.zeros(len(p_idx), m, dtype=points.dtype).scatter_(1, candidates, z.squeeze(1))
        alpha[p_idx, n_idx] = full
        v_all[p_idx, n_idx] = t[p_idx, n_idx] + torch.matmul(z, subset).squeeze(1)
        values = torch.matmul(v_all, points.mT) - kappa
        values_sub = values[p_idx, n_idx]
        limit = tol * (1.0 + t[p_idx, n_idx].abs().amax(-1) + q[p_idx, n_idx].abs().amax(-1))
        feasible = values_sub.amin(-1) >= -limit
        settled = feasible | (k == m)
        done[p_idx, n_idx] = ok.squeeze(1) & feasible
        todo[p_idx, n_idx] = ~settled
        k = min(m, 2 * k)
    return alpha, done


def _interior_point(
    points: torch.Tensor, t: torch.Tensor, kappa: float, tol: float, max_iter: int = 80
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mehrotra predictor-corrector interior-point method on the primal, batched.

    Variables ``V`` ``(P, n, d)``, slacks ``w = S V - kappa >= 0`` and multipliers
    ``z >= 0`` ``(P, n, M)``; each Newton step solves ``(I + S^T diag(z / w) S) dV = r`` by
    Cholesky. Returns the multipliers and which problems met the tolerance.
    """
    p, m, d = points.shape
    points_t = points.mT
    outer = (points.unsqueeze(-1) * points.unsqueeze(-2)).reshape(p, m, d * d)  # rows S_j S_j^T
    eye = torch.eye(d, dtype=points.dtype)
    v = t.clone()
    start = torch.matmul(v, points_t) - kappa
    scale = 1.0 + t.abs().amax(-1) + start.abs().amax(-1)  # (P, n)
    w = start.abs().mean(-1, keepdim=True).clamp(min=1.0).expand(-1, -1, m).clone()
    z = torch.ones_like(w)
    done = torch.zeros(t.shape[:2], dtype=torch.bool)
    for _ in range(max_iter):
        r_p = torch.matmul(v, points_t) - kappa - w
        r_d = v - t - torch.matmul(z, points)
        mu = (w * z).mean(-1)
        limit = tol * scale
        done = (mu < limit) & (r_p.abs().amax(-1) < limit) & (r_d.abs().amax(-1) < limit)
        if bool(done.all()):
            break
        live = ~done
        ratio = torch.where(live.unsqueeze(-1), z / w, torch.ones_like(w))
        system = torch.matmul(ratio, outer).reshape(p, -1, d, d) + eye
        factor, _ = torch.linalg.cholesky_ex(system)

        state = (points, factor, r_p, r_d, w, z)
        dv, dw, dz = _newton_direction(state, -w * z)  # predictor (affine scaling)
        step = _longest_step(w, z, dw, dz).unsqueeze(-1)
        mu_affine = ((w + step * dw) * (z + step * dz)).mean(-1)
        sigma = (mu_affine / mu.clamp(min=1e-300)).clamp(max=1.0).pow(3)
        dv, dw, dz = _newton_direction(state, -w * z - dw * dz + (sigma * mu).unsqueeze(-1))  # corrector
        step = (0.99 * _longest_step(w, z, dw, dz)).clamp(max=1.0).unsqueeze(-1)
        keep = live.unsqueeze(-1)
        v = torch.where(keep, v + step * dv, v)
        w = torch.where(keep, w + step * dw, w)
        z = torch.where(keep, z + step * dz, z)
    return z, done


def _newton_direction(
    state: tuple[torch.Tensor, ...], r_c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dV, dw, dz)`` of the reduced Newton system for the complementarity target ``r_c``."""
    points, factor, r_p, r_d, w, z = state
    rhs = -r_d + torch.matmul((r_c - z * r_p) / w, points)
    y = torch.linalg.solve_triangular(factor, rhs.unsqueeze(-1), upper=False)
    dv = torch.linalg.solve_triangular(factor.mT, y, upper=True).squeeze(-1)
    dw = torch.matmul(dv, points.mT) + r_p
    return dv, dw, (r_c - z * dw) / w


def _longest_step(w: torch.Tensor, z: torch.Tensor, dw: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """The largest step in [0, 1] that keeps ``w`` and ``z`` non-negative, per problem."""
    inf = torch.full_like(w, float("inf"))
    to_w = torch.where(dw < 0, -w / dw, inf).amin(-1)
    to_z = torch.where(dz < 0, -z / dz, inf).amin(-1)
    return torch.minimum(to_w, to_z).clamp(max=1.0)


def _projected_gradient(
    points: torch.Tensor, q: torch.Tensor, lipschitz: torch.Tensor, alpha: torch.Tensor, iters: int
) -> torch.Tensor:
    """FISTA with gradient restarts on the dual; ``alpha`` is the warm start."""
    step = 1.0 / lipschitz
    y, previous, momentum = alpha.clone(), alpha, 1.0
    points_t = points.mT.contiguous()
    for _ in range(iters):
        grad = torch.baddbmm(q, torch.bmm(y, points), points_t)
        current = y.sub_(grad.mul_(step)).clamp_(min=0)  # y is rebuilt below
        next_momentum = (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        change = current - previous
        # restart the momentum of a problem whose step went uphill (O'Donoghue and Candes)
        downhill = (grad * change).sum(-1, keepdim=True) <= 0
        beta = downhill.to(q.dtype).mul_((momentum - 1.0) / next_momentum)
        y = torch.addcmul(current, beta, change)
        previous, momentum = current, next_momentum
    return previous


def _active_set(
    points: torch.Tensor,
    q: torch.Tensor,
    lipschitz: torch.Tensor,
    alpha: torch.Tensor,
    scale: torch.Tensor,
    max_passes: int,
    done: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primal-dual active-set passes; returns the multipliers and which problems pass the KKT check.

    A pass solves the equality system on the free set ``{alpha - g / L > 0}`` and updates
    that set from the new solution; a problem whose free set no longer changes is at a KKT
    point (``alpha > 0`` where ``g = 0``, ``g >= 0`` where ``alpha = 0``) and is not solved again.
    """
    # a tiny ridge keeps the system definite when the free points are linearly dependent
    ridge = 1e-12 * points.square().sum((-2, -1)).div(points.shape[1]).clamp(min=1e-300)  # (P,)
    alpha = alpha.clone()
    free = (alpha - _gradient(points, q, alpha) / lipschitz) > 0
    todo = torch.ones(q.shape[:2], dtype=torch.bool) if done is None else ~done
    for _ in range(max_passes):
        if not bool(todo.any()):
            break
        p_idx, n_idx = todo.nonzero(as_tuple=True)
        alpha[p_idx, n_idx] = _solve_on_free_set(points, p_idx, q[p_idx, n_idx], free[p_idx, n_idx], ridge)
        new_free = (alpha - _gradient(points, q, alpha) / lipschitz) > 0
        stable = (new_free == free).all(-1)
        free = new_free
        todo &= ~stable
    grad = _gradient(points, q, alpha)
    feasible = (grad >= -scale).all(-1) & (alpha >= -scale / lipschitz).all(-1)
    return alpha.clamp(min=0), feasible & ~todo


def _gradient(points: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The dual gradient ``S S^T alpha + q``, which is the constraint value ``S V - kappa``."""
    return torch.matmul(torch.matmul(alpha, points), points.mT) + q


def _solve_on_free_set(
    points: torch.Tensor,
    manifold: torch.Tensor,
    q: torch.Tensor,
    free: torch.Tensor,
    ridge: torch.Tensor,
    chunk: int = 2_000_000,
) -> torch.Tensor:
    """Solve ``S_F S_F^T alpha_F = -q_F`` (the free constraints hold with equality), alpha = 0 elsewhere.

    ``points`` ``(P, M, d)``; ``manifold`` ``(B,)`` the manifold of each problem; ``q`` and
    ``free`` ``(B, M)``. Problems are sorted by the size of their free set and solved in
    chunks, each system gathered to the size of the largest free set of its chunk and
    padded with the identity.
    """
    batch, m = q.shape
    out = torch.zeros_like(q)
    if batch == 0:
        return out
    counts = free.sum(-1)
    by_size = torch.argsort(counts)
    order = torch.argsort((~free).to(torch.int8), dim=-1, stable=True)  # free indices first
    use_gram = points.shape[0] * m * m <= 50_000_000 and m <= 2 * points.shape[2]
    gram = points @ points.mT if use_gram else None
    zero = torch.zeros((), dtype=q.dtype)
    start = 0
    while start < batch:
        k = max(int(counts[by_size[min(batch, start + 1024) - 1]]), 1)
        stop = min(batch, start + max(1024, chunk // (k * k)))
        rows_of_chunk = by_size[start:stop]
        k = max(int(counts[rows_of_chunk].max()), 1)
        idx = order[rows_of_chunk, :k]  # (b, k)
        valid = torch.arange(k).unsqueeze(0) < counts[rows_of_chunk].unsqueeze(1)  # (b, k)
        p = manifold[rows_of_chunk]
        if gram is not None:
            g_ff = gram[p[:, None, None], idx[:, :, None], idx[:, None, :]]  # (b, k, k)
        else:
            rows = points[p[:, None], idx]  # (b, k, d)
            g_ff = rows @ rows.mT
        pair = valid[:, :, None] & valid[:, None, :]
        system = g_ff.masked_fill_(~pair, 0.0)
        system.diagonal(dim1=-2, dim2=-1).add_(
            torch.where(valid, ridge[p][:, None], torch.ones((), dtype=q.dtype))
        )
        rhs = torch.where(valid, -torch.gather(q[rows_of_chunk], 1, idx), zero)
        factor, _ = torch.linalg.cholesky_ex(system)
        y = torch.linalg.solve_triangular(factor, rhs.unsqueeze(-1), upper=False)
        solution = torch.linalg.solve_triangular(factor.mT, y, upper=True).squeeze(-1)
        block = torch.zeros(stop - start, m, dtype=q.dtype)
        block.scatter_(1, idx, torch.where(valid, solution, zero))
        out[rows_of_chunk] = block
        start = stop
    return out
