"""Manifold capacity, radius and dimension: the replica mean-field theory, and a direct check.

A *manifold* is the point cloud of one object: M samples (augmented views of one image,
images of one class) as an ``(M, N)`` array, samples x features. For P manifolds in N
dimensions, the capacity ``alpha_M`` is the largest load ``P / N`` at which a random
dichotomy of the manifolds (a +-1 label per manifold) is still linearly separable, all
points of each manifold on its side, with margin ``kappa``.

:func:`manifold_capacity` follows the mean-field procedure of Chung, Lee and Sompolinsky
(PRX 8, 031003, 2018; "PRX" below) as applied to deep networks by Cohen, Chung, Lee and
Sompolinsky (Nat. Commun. 11, 746, 2020; "NC"):

1. global centring: subtract the mean of all samples of all manifolds;
2. removal of the low-rank structure shared by the centres (NC Methods; see
   :mod:`mmcr.geometry.centers`);
3. per-manifold normalisation: each manifold becomes its centre direction plus its
   deviations, divided by the centre norm, in the ``D + 1`` frame of PRX eq. (1) with the
   coordinates of PRX Sec. IV A: points ``S = (1, s)`` with the centre coordinate 1 and ``s``
   the D intrinsic coordinates (PRX writes ``S = (s, 1)``, the centre coordinate last);
4. anchor points ``S~(T) = (1, s~(T))`` for Gaussian ``T ~ N(0, I_{D+1})`` from the KKT
   conditions of the min-distance problem (problem: PRX eqs. 11-12; KKT conditions: PRX
   eqs. 13-14; :mod:`mmcr.geometry.anchors`);
5. from the anchors, per manifold:

   * capacity (PRX eq. 11 with eqs. 16-17; eq. 20 in the ``(s, 1)`` coordinates, where
     ``||S~||^2 = 1 + ||s~||^2``): ``1 / alpha_M = < [max(kappa - T . S~(T), 0)]^2 / ||S~(T)||^2 >_T``;
   * anchor radius (PRX eq. 28): ``R_M^2 = < ||s~(T)||^2 >_T``;
   * anchor dimension (PRX eq. 29): ``D_M = < (t . s^(T))^2 >_T``, ``t`` the intrinsic part
     of ``T`` and ``s^`` the unit vector along ``s~``;

   and over manifolds, the harmonic mean of the capacities (``1/alpha = mean_mu 1/alpha_mu``:
   the inverse capacity of a mixture of manifolds is the average of the inverse capacities,
   PRX Sec. VI A, eq. 52; NC Methods) and the plain means of R_M and D_M.

:func:`simulated_capacity` needs no theory: it finds the number of dimensions at which half
of random dichotomies are separable (linear programmes), so that the mean-field numbers
can be checked on any data.

Known biases, and what is done about them:

* **Units of kappa.** The margin is in units of each manifold's (residual) centre norm:
  ``kappa = 1`` asks every point to lie one centre-norm unit beyond the hyperplane, where
  the field of a random unit readout on the centre has standard deviation one (the
  normalisation of PRX eq. 2 and Secs. II-III, where the readout has norm sqrt(N), the basis
  vectors of the manifolds norm 1 and the centre norm is 1).
  It is invariant to a global scale of the data; at ``kappa = 0`` the normalisation does
  not matter at all.
* **Too few samples per manifold.** The convex hull of M samples is smaller than the
  manifold, so the capacity is over-estimated and rises as M falls. When M samples span
  M - 1 dimensions (the cloud is a simplex: the samples do not yet resolve the manifold's
  dimensions) the result counts the manifold as ``saturated`` and a warning says so.
  :func:`capacity_vs_samples` reports the trend over nested subsets of M.
* **Dimension of the reduction.** Each manifold is reduced to its numerical rank (the
  singular values above ``max(M, N) * eps * sigma_max`` of its deviations), not to M
  coordinates, so a manifold whose samples span fewer than M dimensions is not given
  empty dimensions in which ``t`` would add noise to D_M.
* **Few manifolds.** The shared-centre removal can take at most P - 2 components (P - 1
  would remove the centres altogether), so for P = 2 there is none; P = 1 is an error
  (capacity is about telling manifolds apart).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import integrate, stats

from mmcr.geometry.anchors import anchor_points
from mmcr.geometry.centers import shared_center_structure
from mmcr.geometry.manifold_input import ManifoldsLike, check_kappa, check_manifolds
from mmcr.geometry.separability import SimulatedCapacity, simulated_capacity

__all__ = [
    "ManifoldCapacity",
    "SimulatedCapacity",
    "ball_capacity",
    "capacity_vs_samples",
    "check_manifolds",
    "gardner_capacity",
    "manifold_capacity",
    "simulated_capacity",
]


@dataclass(frozen=True)
class ManifoldCapacity:
    """The mean-field geometry of P manifolds (see the module docstring for the definitions).

    Attributes:
        capacity: ``alpha_M``, the harmonic mean of the per-manifold capacities.
        radius: the mean anchor radius ``R_M`` (in units of the centre norm).
        dimension: the mean anchor dimension ``D_M``.
        center_correlation: mean absolute cosine between the centred manifold centres,
            before the shared structure is removed.
        residual_correlation: the same after the removal.
        center_components: K, the number of shared centre directions removed.
        capacities, radii, dimensions: ``(P,)`` per manifold.
        center_norms: ``(P,)`` the residual centre norms, the unit of kappa and of the radii.
        ranks: ``(P,)`` the intrinsic dimensions kept for each manifold (numerical rank).
        samples: ``(P,)`` M for each manifold.
        saturated: how many manifolds have M >= 2 samples spanning M - 1 dimensions.
        kappa, n_t, seed: the arguments.
        unconverged: KKT problems that failed their check (0 unless something is wrong).
    """

    capacity: float
    radius: float
    dimension: float
    center_correlation: float
    residual_correlation: float
    center_components: int
    capacities: np.ndarray = field(repr=False)
    radii: np.ndarray = field(repr=False)
    dimensions: np.ndarray = field(repr=False)
    center_norms: np.ndarray = field(repr=False)
    ranks: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)
    saturated: int = 0
    kappa: float = 0.0
    n_t: int = 200
    seed: int = 0
    unconverged: int = 0

    def to_dict(self, per_manifold: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``per_manifold`` adds the ``(P,)`` arrays as lists."""
        out: dict[str, Any] = {
            "capacity": self.capacity,
            "radius": self.radius,
            "dimension": self.dimension,
            "center_correlation": self.center_correlation,
            "residual_correlation": self.residual_correlation,
            "center_components": self.center_components,
            "manifolds": len(self.capacities),
            "samples": int(self.samples.min()),
            "saturated": self.saturated,
            "kappa": self.kappa,
            "n_t": self.n_t,
            "seed": self.seed,
        }
        if per_manifold:
            for name in ("capacities", "radii", "dimensions", "center_norms", "ranks"):
                out[name] = np.asarray(getattr(self, name)).tolist()
        return out


@dataclass(frozen=True)
class _Prepared:
    points: list[torch.Tensor]  # (M_i, r_i + 1): centre coordinate first, then intrinsic coordinates
    center_norms: np.ndarray
    center_correlation: float
    residual_correlation: float
    components: int


def _prepare(
    data: list[torch.Tensor],
    eps: float,
    components: int | None,
    max_components: int | None,
    restarts: int,
    seed: int,
) -> _Prepared:
    """Steps 1-3 of the procedure: centring, shared-centre removal, the D + 1 frame."""
    origin = torch.cat(data).mean(dim=0)
    centred = [x - origin for x in data]
    centers = torch.stack([x.mean(dim=0) for x in centred])
    scale = max(float(torch.cat(centred).abs().max()), 1e-300)
    structure = shared_center_structure(
        centers, components=components, max_components=max_components, restarts=restarts, seed=seed
    )
    basis = structure.basis
    points, norms = [], []
    for i, x in enumerate(centred):
        if basis.shape[1]:
            x = x - (x @ basis) @ basis.T
        center = x.mean(dim=0)
        norm = float(center.norm())
        if norm <= 1e-10 * scale:
            raise ValueError(
                f"manifold {i} has its centre at the global mean (norm {norm:.3g} after removing "
                f"{basis.shape[1]} shared centre directions): it cannot be normalised; drop it or "
                "pass center_components=0"
            )
        points.append(
            torch.cat([torch.ones(x.shape[0], 1, dtype=x.dtype), _coordinates(x - center, eps) / norm], 1)
        )
        norms.append(norm)
    return _Prepared(
        points,
        np.asarray(norms),
        structure.center_correlation,
        structure.residual_correlation,
        structure.components,
    )


def _coordinates(deviations: torch.Tensor, eps: float) -> torch.Tensor:
    """Rotation-invariant coordinates ``(M, r)`` of the rows of ``deviations`` ``(M, N)`` in their span.

    ``U Sigma`` of the thin SVD ``deviations = U Sigma W^T``, r the numerical rank (singular values above
    ``max(M, N) eps sigma_max``). The sign of each axis is fixed (its largest coordinate is
    positive) so that rotated data give the same coordinates.
    """
    m, n = deviations.shape
    # through a QR factor: as accurate as the SVD of the whole matrix, much faster when wide
    if m <= n:
        triangular = torch.linalg.qr(deviations.T.contiguous()).R  # deviations = R^T Q^T
        u, sigma, _ = torch.linalg.svd(triangular.T, full_matrices=False)
    else:
        q, triangular = torch.linalg.qr(deviations.contiguous())
        u, sigma, _ = torch.linalg.svd(triangular, full_matrices=False)
        u = q @ u
    top = float(sigma[0]) if sigma.numel() else 0.0
    keep = sigma > top * max(m, n) * eps if top > 0 else torch.zeros_like(sigma, dtype=torch.bool)
    coords = u[:, keep] * sigma[keep]
    if coords.shape[1]:
        pivot = coords.abs().argmax(dim=0)
        coords = coords * torch.where(coords[pivot, torch.arange(coords.shape[1])] < 0, -1.0, 1.0)
    return coords


def _per_manifold(
    points: list[torch.Tensor], n_t: int, kappa: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Capacity, radius and dimension of each manifold from its anchor points; unconverged count.

    The anchor problems of all manifolds and all ``n_t`` Gaussian vectors are solved in
    chunks of padded batches (a manifold's points repeated up to the largest M).
    """
    p = len(points)
    m_max = max(x.shape[0] for x in points)
    d_max = max(x.shape[1] for x in points)
    generator = torch.Generator().manual_seed(seed)
    t_all = torch.randn(p, n_t, d_max, generator=generator, dtype=torch.float64)
    capacities, radii, dimensions = np.empty(p), np.empty(p), np.empty(p)
    unconverged = 0
    per_chunk = max(1, 4_000_000 // (n_t * m_max))
    for start in range(0, p, per_chunk):
        idx = range(start, min(p, start + per_chunk))
        padded = torch.zeros(len(idx), m_max, d_max, dtype=torch.float64)
        t = torch.zeros(len(idx), n_t, d_max, dtype=torch.float64)
        for row, i in enumerate(idx):
            s = points[i]
            padded[row, :, : s.shape[1]] = s[torch.arange(m_max) % s.shape[0]]  # repeat points to pad
            t[row, :, : s.shape[1]] = t_all[i, :, : s.shape[1]]
        solution = anchor_points(padded, t, kappa)
        unconverged += solution.unconverged
        mean_field = solution.field.mean(dim=1)
        intrinsic = solution.anchors[..., 1:] / solution.anchors[..., :1]  # s~, per unit centre coordinate
        norm = intrinsic.norm(dim=-1)
        unit = intrinsic / norm.clamp(min=1e-300)[..., None]
        for row, i in enumerate(idx):
            capacities[i] = 1.0 / float(mean_field[row]) if float(mean_field[row]) > 0 else math.inf
            radii[i] = math.sqrt(float(norm[row].square().mean()))
            dimensions[i] = float((t[row, :, 1:] * unit[row]).sum(-1).square().mean())
    return capacities, radii, dimensions, unconverged


def manifold_capacity(
    manifolds: ManifoldsLike,
    kappa: float = 0.0,
    n_t: int = 200,
    seed: int = 0,
    *,
    center_components: int | None = None,
    max_center_components: int | None = None,
    restarts: int = 3,
) -> ManifoldCapacity:
    """Mean-field capacity, radius, dimension and centre correlation of P manifolds.

    Args:
        manifolds: P arrays or tensors ``(M_i, N)``, samples x features (the transpose of
            the public ``mftma`` layout), or one ``(P, M, N)`` array.
        kappa: the margin, >= 0, in units of each manifold's centre norm.
        n_t: Gaussian vectors ``T`` per manifold; the Monte Carlo error of the capacity
            falls like ``1 / sqrt(P n_t)``.
        seed: seeds the ``T`` draws and the random starts of the centre analysis.
        center_components: how many shared centre directions to remove (None: the number
            that leaves the centres least correlated; 0: none).
        max_center_components: the most tried when choosing (None: see
            :func:`~mmcr.geometry.centers.shared_center_structure`); each costs an
            optimisation, so a cap bounds the time on strongly correlated centres.
        restarts: random starts per K in the centre analysis.

    Returns:
        A :class:`ManifoldCapacity`. Example::

            >>> import numpy as np
            >>> rng = np.random.default_rng(0)
            >>> clouds = [rng.standard_normal((20, 100)) + 3 * rng.standard_normal(100) for _ in range(10)]
            >>> result = manifold_capacity(clouds, n_t=50)
            >>> 0 < result.capacity < 2
            True
    """
    data, eps = check_manifolds(manifolds)
    kappa = check_kappa(kappa)
    if not isinstance(n_t, int) or n_t < 1:
        raise ValueError(f"n_t (Gaussian vectors per manifold) must be an integer >= 1, got {n_t!r}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    prep = _prepare(data, eps, center_components, max_center_components, restarts, seed)
    p = len(prep.points)
    sizes = np.asarray([x.shape[0] for x in prep.points])
    ranks = np.asarray([x.shape[1] - 1 for x in prep.points])
    capacities, radii, dimensions, unconverged = _per_manifold(prep.points, n_t, kappa, seed)
    if unconverged:
        warnings.warn(
            f"{unconverged} of {p * n_t} anchor problems did not pass the KKT check; "
            "their anchors are approximate",
            RuntimeWarning,
            stacklevel=2,
        )
    saturated = int(((sizes >= 3) & (ranks == sizes - 1)).sum())
    if saturated > p // 2:
        warnings.warn(
            f"{saturated} of {p} manifolds have their M samples spanning M - 1 dimensions (M = "
            f"{int(sizes.min())}..{int(sizes.max())}): the samples do not resolve the manifolds, and the "
            "capacity is over-estimated; see capacity_vs_samples for the trend over M",
            UserWarning,
            stacklevel=2,
        )
    return ManifoldCapacity(
        capacity=float(1.0 / np.mean(1.0 / capacities)),
        radius=float(radii.mean()),
        dimension=float(dimensions.mean()),
        center_correlation=prep.center_correlation,
        residual_correlation=prep.residual_correlation,
        center_components=prep.components,
        capacities=capacities,
        radii=radii,
        dimensions=dimensions,
        center_norms=prep.center_norms,
        ranks=ranks,
        samples=sizes,
        saturated=saturated,
        kappa=kappa,
        n_t=n_t,
        seed=seed,
        unconverged=unconverged,
    )


def capacity_vs_samples(
    manifolds: ManifoldsLike,
    sizes: Sequence[int] | None = None,
    kappa: float = 0.0,
    n_t: int = 200,
    seed: int = 0,
    **options: Any,
) -> list[dict[str, float]]:
    """The mean-field geometry on nested random subsets of M samples per manifold.

    The capacity of M samples over-estimates that of the manifold and falls as M grows; a
    curve that has flattened at the largest M says the samples suffice. ``sizes`` defaults
    to M/4, M/2 and M (M the smallest manifold, subsets of at least 2 samples). Returns one
    dict per size: ``samples``, ``capacity``, ``radius``, ``dimension``.
    """
    data, _ = check_manifolds(manifolds)
    m = min(x.shape[0] for x in data)
    if sizes is None:
        sizes = sorted({s for s in (m // 4, m // 2, m) if s >= 2}) or [m]
    if any(not 1 <= s <= m for s in sizes):
        raise ValueError(
            f"sizes must lie between 1 and the smallest manifold's {m} samples, got {list(sizes)}"
        )
    generator = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(x.shape[0], generator=generator) for x in data]
    out = []
    for size in sizes:
        subset = [x[order[:size]] for x, order in zip(data, orders, strict=True)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = manifold_capacity(subset, kappa, n_t, seed, **options)
        out.append(
            {
                "samples": int(size),
                "capacity": result.capacity,
                "radius": result.radius,
                "dimension": result.dimension,
            }
        )
    return out


def gardner_capacity(kappa: float = 0.0) -> float:
    """Capacity of points (M = 1): ``1 / alpha_0 = int_{-kappa}^inf Dt (t + kappa)^2`` (Gardner 1988).

    PRX eq. (9) writes the same integral as ``int_{-inf}^{kappa} Dt (t - kappa)^2`` (t -> -t);
    it is the point limit of the mean-field capacity (``s~ = 0`` in PRX eq. 20, R_M -> 0); equals
    ``1 / ((1 + kappa^2) Phi(kappa) + kappa phi(kappa))``, 2 at kappa = 0.
    """
    kappa = check_kappa(kappa)
    return 1.0 / ((1 + kappa**2) * stats.norm.cdf(kappa) + kappa * stats.norm.pdf(kappa))


def _gauss_square(a: float, b: float, c: float) -> float:
    """``int_a^b Dt (c - t)^2`` for the standard normal measure Dt."""
    phi_a = 0.0 if math.isinf(a) else stats.norm.pdf(a)
    phi_b = 0.0 if math.isinf(b) else stats.norm.pdf(b)
    mass = stats.norm.cdf(b) - stats.norm.cdf(a)
    a_phi_a = 0.0 if math.isinf(a) else a * phi_a
    b_phi_b = 0.0 if math.isinf(b) else b * phi_b
    return (c * c + 1) * mass - 2 * c * (phi_a - phi_b) + a_phi_a - b_phi_b


def ball_capacity(radius: float, dimension: int, kappa: float = 0.0) -> float:
    """Mean-field capacity of D-dimensional L2 balls of radius R (PRX App. B 2, eq. B2; D = 1: line segments).

    PRX eq. (B2) is the l2-ball case of its strictly convex formula, eq. (B1), and reproduces
    Chung, Lee and Sompolinsky, Phys. Rev. E 93, 060301 (2016) (PRX ref. 15).

    With ``T = (t0, t)``, ``t0`` the centre component and ``x = ||t||`` chi-distributed with
    D degrees of freedom, the three regimes of the anchor point give

        1 / alpha = < int_{kappa - x/R}^{kappa + R x} Dt0 (kappa + R x - t0)^2 / (1 + R^2)
                      + int_{-inf}^{kappa - x/R} Dt0 [(kappa - t0)^2 + x^2] >_x

    (touching: the anchor on the sphere, opposite ``t``; fully embedded: the anchor inside;
    interior, ``t0 > kappa + R x``, adds nothing). For high-dimensional manifolds (D_M >> 1) the
    theory approximates ``alpha_M ~ alpha_Ball(kappa, R_M, D_M)`` (PRX Sec. IV F, eq. 33).
    """
    kappa = check_kappa(kappa)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    if not (isinstance(dimension, int) and dimension >= 1):
        raise ValueError(f"dimension must be an integer >= 1, got {dimension!r}")
    if radius == 0:
        return gardner_capacity(kappa)
    r = float(radius)

    def inner(x: float) -> float:
        edge = kappa - x / r
        touching = _gauss_square(edge, kappa + r * x, kappa + r * x) / (1 + r * r)
        embedded = _gauss_square(-math.inf, edge, kappa) + x * x * stats.norm.cdf(edge)
        return (touching + embedded) * stats.chi.pdf(x, dimension)

    mode = math.sqrt(max(dimension - 1, 0))
    value, _ = integrate.quad(inner, 0, mode + 12, points=[mode], limit=200)
    return 1.0 / value
