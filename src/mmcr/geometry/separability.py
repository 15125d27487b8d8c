"""Linear separability of manifolds, decided directly: the theory-free capacity estimate.

:func:`simulated_capacity` measures what the mean-field capacity predicts. For random
dichotomies (a +-1 label per manifold) it decides whether one hyperplane through the
origin puts every point of every manifold on the side of its label, in a random Gaussian
projection of the data to n dimensions, and finds the n at which half of the dichotomies
are separable: the capacity is ``P / n`` there (Cover 1965 for points, PRX eq. 5; for
manifolds, the simulations of PRX 8, 031003, 2018, Sec. III E and its Supplemental Material).

* Separability at ``kappa = 0`` is the feasibility of the linear programme
  ``y_mu w . x >= 1`` for all points (``scipy.optimize.linprog``, HiGHS).
* With a margin ``kappa > 0`` a separable dichotomy must also have a maximum margin of at
  least kappa: ``min ||w||`` subject to ``y_mu w . x >= 1`` is solved by the same KKT solver
  as the anchor points, and the margin is ``1 / ||w||``.
* The projections are nested (the first n columns of one Gaussian matrix), so
  separability only grows with n and the smallest separable n of each dichotomy is found
  by bisection; the capacity comes from the median of those n, interpolated between
  integers.

Units, matched to the mean-field analysis: the data are centred on the mean of all samples;
for ``kappa > 0`` each manifold is divided by the norm of its centre, and the projection has
unit-variance entries, so the field of a random unit readout on a centre has standard
deviation 1 and kappa is in units of the centre norm, as in :func:`manifold_capacity`. The
shared centre structure is *not* removed: this is the plain, theory-free question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import optimize

from mmcr.geometry.anchors import anchor_points
from mmcr.geometry.manifold_input import ManifoldsLike, check_kappa, check_manifolds

__all__ = ["SimulatedCapacity", "is_separable", "max_margin", "simulated_capacity"]


def is_separable(points: np.ndarray, labels: np.ndarray) -> bool:
    """True if some ``w`` has ``labels_k (w . points_k) > 0`` for every row: LP feasibility (HiGHS).

    Args:
        points: ``(K, n)`` points.
        labels: ``(K,)`` +-1 labels.
    """
    # rows of unit norm: the same feasibility (the problem is homogeneous), better conditioned
    rows = -(labels[:, None] * points)
    rows = rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-300, None)
    message = ""
    for method in ("highs", "highs-ipm", "highs-ds"):
        result = optimize.linprog(
            np.zeros(points.shape[1]),
            A_ub=rows,
            b_ub=-np.ones(points.shape[0]),
            bounds=[(None, None)] * points.shape[1],
            method=method,
        )
        if result.status in (0, 2):
            return bool(result.status == 0)
        message = result.message
    raise RuntimeError(f"linprog could not decide separability: {message}")


def max_margin(points: np.ndarray, labels: np.ndarray) -> float:
    """The largest ``min_k labels_k (w . points_k) / ||w||`` over ``w`` (0 if not separable)."""
    if not is_separable(points, labels):
        return 0.0
    rows = torch.from_numpy(labels[:, None] * points).double().unsqueeze(0)
    solution = anchor_points(rows, torch.zeros(1, 1, points.shape[1], dtype=torch.float64), 1.0)
    norm_sq = float(solution.field[0, 0])  # ||w||^2 of the smallest w with y w . x >= 1
    return 1.0 / np.sqrt(norm_sq) if norm_sq > 0 else float("inf")


@dataclass(frozen=True)
class SimulatedCapacity:
    """The direct estimate of the capacity of P manifolds.

    Attributes:
        capacity: ``P / n_half`` (an upper bound when ``bounded`` is False).
        dimension: ``n_half``, the projection dimension at which half of the dichotomies are
            separable, interpolated between integers.
        critical_dimensions: ``(dichotomies,)`` the smallest separable n of each dichotomy
            (``inf`` if not separable in ``max_dimension`` dimensions).
        manifolds, kappa, dichotomies, seed, max_dimension: the problem and the arguments.
        bounded: False when half of the dichotomies are not separable even in
            ``max_dimension`` dimensions: then the capacity is below ``P / max_dimension``.
    """

    capacity: float
    dimension: float
    critical_dimensions: np.ndarray = field(repr=False)
    manifolds: int = 0
    kappa: float = 0.0
    dichotomies: int = 0
    seed: int = 0
    max_dimension: int = 0
    bounded: bool = True

    def to_dict(self) -> dict[str, Any]:
        finite = self.critical_dimensions[np.isfinite(self.critical_dimensions)]
        return {
            "capacity": self.capacity,
            "dimension": self.dimension,
            "manifolds": self.manifolds,
            "kappa": self.kappa,
            "dichotomies": self.dichotomies,
            "seed": self.seed,
            "max_dimension": self.max_dimension,
            "bounded": self.bounded,
            "critical_dimension_range": [float(finite.min()), float(finite.max())] if finite.size else None,
        }


def _separable(points: np.ndarray, labels: np.ndarray, kappa: float) -> bool:
    return is_separable(points, labels) if kappa == 0 else max_margin(points, labels) >= kappa


def simulated_capacity(
    manifolds: ManifoldsLike,
    kappa: float = 0.0,
    *,
    dichotomies: int = 51,
    seed: int = 0,
    max_dimension: int | None = None,
) -> SimulatedCapacity:
    """Capacity from the fraction of random dichotomies that are linearly separable.

    Args:
        manifolds: P arrays ``(M_i, N)``, samples x features (see :func:`manifold_capacity`).
        kappa: the margin, >= 0, in units of each manifold's centre norm.
        dichotomies: random labellings tried (odd, so that the median is one of them); the
            relative error of the capacity is about ``1 / sqrt(dichotomies)`` times the
            relative width of the transition, which narrows as P grows.
        seed: seeds the labels and the projections.
        max_dimension: the largest projection dimension (default: the smaller of N and the
            number of points, beyond which every dichotomy of points in general position is
            separable).
    """
    data, _ = check_manifolds(manifolds)
    kappa = check_kappa(kappa)
    if dichotomies < 1:
        raise ValueError(f"dichotomies must be >= 1, got {dichotomies}")
    origin = torch.cat(data).mean(dim=0)
    centred = [x - origin for x in data]
    if kappa > 0:
        centred = [x / x.mean(dim=0).norm().clamp(min=1e-300) for x in centred]
    points = torch.cat(centred).numpy()
    owner = np.concatenate([np.full(x.shape[0], i) for i, x in enumerate(centred)])
    p, (total, features) = len(data), points.shape
    n_max = min(features, total) if max_dimension is None else int(max_dimension)
    if not 1 <= n_max <= features:
        raise ValueError(f"max_dimension must be between 1 and the {features} features, got {max_dimension}")
    rng = np.random.default_rng(seed)
    critical = np.full(dichotomies, np.inf)
    for trial in range(dichotomies):
        labels = rng.choice([-1.0, 1.0], size=p)[owner]
        projected = points @ rng.standard_normal((features, n_max))
        if not _separable(projected, labels, kappa):
            continue
        low, high = 0, n_max  # not separable in `low` dimensions, separable in `high`
        while high - low > 1:
            mid = (low + high) // 2
            if _separable(projected[:, :mid], labels, kappa):
                high = mid
            else:
                low = mid
        critical[trial] = high
    n_half = _half_crossing(critical)
    bounded = bool(np.isfinite(n_half))
    if not bounded:
        n_half = float(n_max)
    return SimulatedCapacity(
        capacity=p / n_half,
        dimension=n_half,
        critical_dimensions=critical,
        manifolds=p,
        kappa=kappa,
        dichotomies=dichotomies,
        seed=seed,
        max_dimension=n_max,
        bounded=bounded,
    )


def _half_crossing(critical: np.ndarray) -> float:
    """Where the fraction of dichotomies separable in n dimensions crosses 1/2, interpolated.

    The fraction at integer n is ``#(critical <= n) / count``; between the last n below 1/2
    and the first at or above it the crossing is placed linearly.
    """
    count = critical.size
    finite = np.sort(critical[np.isfinite(critical)])
    if 2 * finite.size < count:
        return float("inf")
    first = int(finite[(count + 1) // 2 - 1])  # the smallest n with fraction >= 1/2
    above = np.sum(finite <= first) / count
    below = np.sum(finite <= first - 1) / count
    return float(first - 1 + (0.5 - below) / (above - below)) if above > below else float(first)
