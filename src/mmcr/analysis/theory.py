"""Pretraining percent error of perfectly aligned and uniform embeddings.

Schaeffer et al. (2024), arXiv 2406.09366, Prop. 3.3 and Eq. 4: for P centroids in D
dimensions (C the P x D matrix of centroids, rows of norm at most 1),

    0 <= ||C||_* <= sqrt(P min(P, D)),
    PPE = (sqrt(P min(P, D)) - ||C||_*) / sqrt(P min(P, D)).

When the embeddings are perfectly aligned (every view of a sample lands on the same point,
so ||mu_n|| = 1) and perfectly uniform (those points are i.i.d. uniform on S^{D-1}), the
PPE is not zero: a finite sample of uniform points is not exactly isotropic. This module
computes that irreducible error

- by Monte Carlo (:func:`ppe_uniform_monte_carlo`, :func:`ppe_grid`), and
- in the large-size limit P, D -> infinity at fixed ratio (:func:`ppe_marchenko_pastur`).

Derivation of the limit. Write r = min(P, D) / max(P, D) <= 1. A uniform unit vector is
g / ||g|| with g ~ N(0, I_D), and ||g||^2 / D -> 1, so C ~ X / sqrt(D) with X a P x D
standard Gaussian matrix (the row normalisation only changes O(1/D) corrections).

- P <= D: the P x P Gram C C^T = X X^T / D has, as P, D -> infinity with P/D = r, the
  Marchenko-Pastur (MP) law of ratio r and variance 1. Then
  ||C||_* = sum_i sqrt(lambda_i(C C^T)) ~ P E_MP(r)[sqrt(lambda)], and sqrt(P min) = P.
- P >= D: the D x D Gram C^T C = (P/D) (X^T X / P), and X^T X / P has the MP law of ratio
  D/P = r. Then ||C||_* ~ D sqrt(P/D) E_MP(r)[sqrt(lambda)] = sqrt(PD) E_MP(r)[sqrt(lambda)].

Both cases give the same formula, hence the symmetry P/D <-> D/P:

    PPE_inf(r) = 1 - E_MP(r)[sqrt(lambda)],
    MP(r) density: sqrt((b - x)(x - a)) / (2 pi r x) on [a, b], a, b = (1 -+ sqrt(r))^2.

With x = 1 + r + 2 sqrt(r) cos(theta) the integral becomes smooth on [0, pi]:

    E_MP(r)[sqrt(lambda)]
        = (2 / pi) int_0^pi sin^2(theta) / sqrt(1 + r + 2 sqrt(r) cos(theta)) dtheta.

At r = 1 the singular values follow the quarter-circle law sqrt(4 - s^2) / pi on [0, 2],
whose mean is 8 / (3 pi): PPE_inf(1) = 1 - 8 / (3 pi) = 0.1512, the top of the ridge.
For small r, the MP central moments (r, r^2, r^3 + 2 r^2) in the Taylor series of sqrt(x)
around 1 give PPE_inf(r) = r/8 + r^2/64 + O(r^3) (0.067 at r = 1/2, 0.032 at r = 1/4), so
||C||_* = P (1 - P/(8D) + ...) for P <= D and sqrt(PD) (1 - D/(8P) + ...) for P >= D.

Finite sizes: the Monte-Carlo mean lies slightly below the limit, by about
0.03-0.05 / min(P, D) (measured in float64 for min(P, D) = 16...256 at ratios 1, 2 and 4,
100-400 trials each); at min(P, D) = 256 that is about 2e-4.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import integrate, stats
from tqdm import tqdm

from mmcr.threads import one_torch_thread

__all__ = [
    "PPEGrid",
    "marchenko_pastur_ratio",
    "ppe_at_equal_size",
    "ppe_grid",
    "ppe_marchenko_pastur",
    "ppe_small_ratio",
    "ppe_uniform_monte_carlo",
]

# Elements of one Monte-Carlo chunk (trials x P x D float64): 2^24 elements = 128 MiB.
_CHUNK_ELEMENTS = 1 << 24


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}.")
    return int(value)


def _available_bytes(device: torch.device) -> int | None:
    """Memory one Monte-Carlo trial may use on ``device``: free GPU memory, or the host's RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):
            return None
    return None


def _check_memory(P: int, D: int, device: torch.device) -> None:
    """Refuse a (P, D) whose single trial cannot fit in memory, before allocating it.

    One trial holds the P x D Gaussian draw and its normalised copy in float64, and the
    min(P, D)^2 Gram matrix: ``8 (2 P D + min(P, D)^2)`` bytes.
    """
    need = 8 * (2 * P * D + min(P, D) ** 2)
    have = _available_bytes(device)
    if have is not None and need > have:
        raise ValueError(
            f"P = {P}, D = {D}: one Monte-Carlo trial needs {need / 2**30:.1f} GiB (two "
            f"{P} x {D} float64 matrices and a {min(P, D)}-square Gram), more than the "
            f"{have / 2**30:.1f} GiB {'free on ' + str(device) if device.type == 'cuda' else 'of RAM'}; "
            "use smaller sizes (only the ratio min(P, D) / max(P, D) matters at large sizes) or "
            "the Marchenko-Pastur limit (mmcr.analysis.theory.ppe_marchenko_pastur), which needs no sampling"
        )


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float <= 0:
        raise ValueError(f"{name} must be a positive, finite number; got {value}.")
    return as_float


def ppe_at_equal_size() -> float:
    """Large-size PPE of uniform unit centroids at P = D: ``1 - 8 / (3 pi)`` = 0.15117.

    The singular values of a square Gaussian matrix scaled by 1/sqrt(D) follow the
    quarter-circle law sqrt(4 - s^2) / pi on [0, 2], whose mean is 8 / (3 pi).
    """
    return 1.0 - 8.0 / (3.0 * math.pi)


def marchenko_pastur_ratio(P: float, D: float) -> float:
    """The aspect ratio ``r = min(P, D) / max(P, D)`` in (0, 1] that the PPE limit depends on."""
    p = _check_positive("P", P)
    d = _check_positive("D", D)
    return min(p, d) / max(p, d)


def ppe_small_ratio(ratio: float, order: int = 1) -> float:
    """Small-ratio asymptote of the limiting PPE: ``r/8`` (order 1) or ``r/8 + r^2/64`` (order 2).

    Args:
        ratio: r = min(P, D) / max(P, D), in (0, 1]. The series is accurate for r << 1
            (relative error about r/8 at order 1, about r^2 at order 2).
        order: 1 or 2.

    Returns:
        The asymptotic PPE, a fraction (not a percentage).
    """
    r = _check_positive("ratio", ratio)
    if r > 1:
        raise ValueError(f"ratio must be min(P, D) / max(P, D) in (0, 1]; got {ratio}.")
    if order == 1:
        return r / 8.0
    if order == 2:
        return r / 8.0 + r * r / 64.0
    raise ValueError(f"order must be 1 or 2; got {order}.")


def _mp_mean_sqrt(r: float) -> float:
    """E[sqrt(lambda)] under the Marchenko-Pastur law of ratio r in (0, 1], variance 1."""
    sqrt_r = math.sqrt(r)

    def integrand(theta: float) -> float:
        x = max(1.0 + r + 2.0 * sqrt_r * math.cos(theta), 1e-300)
        return math.sin(theta) ** 2 / math.sqrt(x)

    value, _ = integrate.quad(integrand, 0.0, math.pi, epsabs=1e-13, epsrel=1e-12, limit=200)
    return 2.0 / math.pi * value


def ppe_marchenko_pastur(P: float, D: float) -> float:
    """Large-size limit of the PPE of i.i.d. uniform unit centroids (see the module docstring).

    ``PPE_inf = 1 - E_MP(r)[sqrt(lambda)]`` with r = min(P, D) / max(P, D): it depends on the
    ratio only, is symmetric under P <-> D, peaks at P = D (0.1512) and behaves like r/8 for
    small r.

    Args:
        P: number of points (batch size); any positive number, only the ratio matters.
        D: embedding dimension; any positive number.

    Returns:
        The limiting PPE, a fraction in [0, 1 - 8/(3 pi)].
    """
    return 1.0 - _mp_mean_sqrt(marchenko_pastur_ratio(P, D))


def _eigvalsh_cpu(gram: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a batch of symmetric matrices on CPU, one matrix at a time, one thread.

    Measured with torch 2.13 on 2 shared cores (32 matrices of 256 x 256): batched eigvalsh
    and multi-threaded LAPACK were 5-30x slower than this loop whenever the cores were busy
    (threads spin while waiting for each other). torch's thread count is process-wide, so
    it is lowered only around this loop and then restored.
    """
    with one_torch_thread():
        return torch.stack([torch.linalg.eigvalsh(matrix) for matrix in gram])


def _nuclear_norms_of_uniform_centroids(
    P: int, D: int, trials: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """||C||_* for ``trials`` independent P x D matrices with i.i.d. uniform unit rows."""
    per_chunk = max(1, _CHUNK_ELEMENTS // (P * D))
    norms = []
    for start in range(0, trials, per_chunk):
        n = min(per_chunk, trials - start)
        g = torch.randn(n, P, D, generator=generator, dtype=torch.float64, device=device)
        centroids = g / torch.linalg.vector_norm(g, dim=-1, keepdim=True)
        # The smaller Gram matrix has the same nonzero eigenvalues: sigma_i(C)^2.
        if P <= D:
            gram = centroids @ centroids.transpose(1, 2)
        else:
            gram = centroids.transpose(1, 2) @ centroids
        if device.type == "cpu":
            eig = _eigvalsh_cpu(gram)
        else:
            eig = torch.linalg.eigvalsh(gram)
        norms.append(eig.clamp_min(0.0).sqrt().sum(dim=-1))
    return torch.cat(norms)


def _cell_seed(seed: int, P: int, D: int) -> int:
    # An independent stream per (seed, P, D), so a grid cell equals a direct call.
    return int(np.random.SeedSequence([seed, P, D]).generate_state(1, dtype=np.uint64)[0] >> 1)


def ppe_uniform_monte_carlo(
    P: int,
    D: int,
    trials: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Monte-Carlo PPE of P i.i.d. uniform unit centroids in D dimensions.

    Each trial draws a P x D standard Gaussian matrix, normalises its rows onto S^{D-1},
    takes the eigenvalues of the smaller Gram matrix in float64, and computes
    ``1 - sum_i sqrt(lambda_i) / sqrt(P min(P, D))``. Trials are drawn in batches.

    Args:
        P: number of centroids (batch size), >= 1.
        D: embedding dimension, >= 1.
        trials: independent repetitions, >= 2 (the interval needs a variance).
        seed: random seed; the stream is derived from (seed, P, D), so grid cells and
            direct calls agree and different cells are independent.
        device: where to draw and decompose ("cpu", "cuda", ...).
        confidence: level of the Student-t confidence interval of the mean, in (0, 1).

    Returns:
        A dict with ``P``, ``D``, ``trials``, ``seed``, ``mean``, ``std`` (across trials,
        ddof=1), ``stderr`` (std / sqrt(trials)), ``ci`` ([low, high]), ``ci_half_width``
        and ``confidence``. PPE values are fractions, not percentages.
    """
    P = _check_size("P", P)
    D = _check_size("D", D)
    trials = _check_size("trials", trials)
    if trials < 2:
        raise ValueError(f"trials must be at least 2 to give a confidence interval; got {trials}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    torch_device = torch.device(device)
    _check_memory(P, D, torch_device)
    generator = torch.Generator(device=torch_device)
    generator.manual_seed(_cell_seed(int(seed), P, D))
    nuclear = _nuclear_norms_of_uniform_centroids(P, D, trials, generator, torch_device)
    ppe = (1.0 - nuclear / math.sqrt(P * min(P, D))).cpu().numpy()
    mean = float(ppe.mean())
    std = float(ppe.std(ddof=1))
    stderr = std / math.sqrt(trials)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, trials - 1)) * stderr
    return {
        "P": P,
        "D": D,
        "trials": trials,
        "seed": int(seed),
        "mean": mean,
        "std": std,
        "stderr": stderr,
        "ci": [mean - half, mean + half],
        "ci_half_width": half,
        "confidence": confidence,
    }


@dataclass
class PPEGrid:
    """Monte-Carlo PPE over a grid of batch sizes P and dimensions D.

    Arrays of shape (len(Ps), len(Ds)); entry [i, j] is the cell (Ps[i], Ds[j]).
    """

    Ps: np.ndarray
    Ds: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ci_half_width: np.ndarray
    mp_limit: np.ndarray
    trials: int
    seed: int
    confidence: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists of floats); :meth:`from_dict` reads it back."""
        return {
            "Ps": [int(p) for p in self.Ps],
            "Ds": [int(d) for d in self.Ds],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "ci_half_width": self.ci_half_width.tolist(),
            "mp_limit": self.mp_limit.tolist(),
            "trials": self.trials,
            "seed": self.seed,
            "confidence": self.confidence,
            "ppe_at_equal_size": ppe_at_equal_size(),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPEGrid:
        """Rebuild a grid from :meth:`to_dict` output (e.g. a loaded JSON file)."""
        try:
            return cls(
                Ps=np.asarray(data["Ps"], dtype=np.int64),
                Ds=np.asarray(data["Ds"], dtype=np.int64),
                mean=np.asarray(data["mean"], dtype=np.float64),
                std=np.asarray(data["std"], dtype=np.float64),
                ci_half_width=np.asarray(data["ci_half_width"], dtype=np.float64),
                mp_limit=np.asarray(data["mp_limit"], dtype=np.float64),
                trials=int(data["trials"]),
                seed=int(data["seed"]),
                confidence=float(data.get("confidence", 0.95)),
                extra=dict(data.get("extra", {})),
            )
        except KeyError as exc:
            raise ValueError(f"PPE grid data lacks the field {exc.args[0]!r}.") from exc

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` and return the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    @classmethod
    def load_json(cls, path: str | Path) -> PPEGrid:
        """Read a grid written by :meth:`save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _sorted_sizes(name: str, values: Iterable[int]) -> np.ndarray:
    checked = sorted({_check_size(name, v) for v in values})
    if not checked:
        raise ValueError(f"{name} must contain at least one size.")
    return np.asarray(checked, dtype=np.int64)


def ppe_grid(
    Ps: Sequence[int],
    Ds: Sequence[int],
    trials: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    confidence: float = 0.95,
    progress: bool | None = None,
) -> PPEGrid:
    """Monte-Carlo PPE of uniform unit centroids at every (P, D) of a grid, with MP limits.

    Args:
        Ps: batch sizes (sorted and de-duplicated here).
        Ds: embedding dimensions (sorted and de-duplicated here).
        trials, seed, device, confidence: as in :func:`ppe_uniform_monte_carlo`; each cell
            uses its own stream derived from (seed, P, D).
        progress: show a tqdm bar over cells; None shows it only on a terminal.

    Returns:
        A :class:`PPEGrid` with arrays of shape (len(Ps), len(Ds)).
    """
    p_sizes = _sorted_sizes("Ps", Ps)
    d_sizes = _sorted_sizes("Ds", Ds)
    shape = (len(p_sizes), len(d_sizes))
    mean = np.empty(shape)
    std = np.empty(shape)
    half = np.empty(shape)
    limit = np.empty(shape)
    # Largest cells last, so the bar's rate estimate is not too optimistic early on.
    cells = sorted(
        ((i, j) for i in range(shape[0]) for j in range(shape[1])),
        key=lambda ij: int(p_sizes[ij[0]]) * int(d_sizes[ij[1]]),
    )
    bar = tqdm(
        cells, desc="PPE grid", unit="cell", disable=None if progress is None else not progress
    )
    for i, j in bar:
        P, D = int(p_sizes[i]), int(d_sizes[j])
        bar.set_postfix(P=P, D=D)
        result = ppe_uniform_monte_carlo(P, D, trials, seed, device, confidence)
        mean[i, j] = result["mean"]
        std[i, j] = result["std"]
        half[i, j] = result["ci_half_width"]
        limit[i, j] = ppe_marchenko_pastur(P, D)
    bar.close()
    return PPEGrid(
        Ps=p_sizes,
        Ds=d_sizes,
        mean=mean,
        std=std,
        ci_half_width=half,
        mp_limit=limit,
        trials=int(trials),
        seed=int(seed),
        confidence=confidence,
    )
