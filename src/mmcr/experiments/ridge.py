"""Where a (P, D) grid of PPEs peaks, against the ridge P = D of ideal embeddings.

Arrays here have shape ``(len(Ps), len(Ds))``, rows indexed by batch size P and columns by
embedding dimension D, with NaN where a run is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from mmcr.experiments.results import mean

__all__ = ["cell_means", "correlations", "peak_table", "ridge_contrast"]


def cell_means(
    results: Sequence[Mapping[str, Any]], Ps: Sequence[int], Ds: Sequence[int], key: str
) -> np.ndarray:
    """The mean of ``key`` over the result lines of each cell (over seeds); NaN where none."""
    values = np.full((len(Ps), len(Ds)), math.nan)
    for i, P in enumerate(Ps):
        for j, D in enumerate(Ds):
            values[i, j] = mean(r.get(key) for r in results if r.get("P") == P and r.get("D") == D)
    return values


def peak_table(
    Ps: Sequence[int],
    Ds: Sequence[int],
    measured: np.ndarray,
    theory: np.ndarray,
    names: tuple[str, str] = ("P", "D"),
) -> list[dict[str, Any]]:
    """For each D, the batch size P with the largest measured PPE, against the ridge P = D.

    Args:
        Ps, Ds: the grid's sizes; measured, theory: (len(Ps), len(Ds)) PPE arrays (NaN where
            a run is missing).

    Returns:
        One dict per D: ``peak_P`` (measured), ``theory_peak_P``, ``octaves_from_ridge``
        (log2(peak_P / D)), ``at_edge`` (the peak is the smallest or largest P of the grid,
        so the curve may keep rising beyond it) and ``verdict``: "at P = D",
        "near P = D (within a factor 2)", "away from P = D", "ridge outside the P range"
        or "not enough runs". ``names`` renames P and D in the verdicts (the table with
        the roles swapped: ``peak_table(Ds, Ps, measured.T, theory.T, ("D", "P"))``).
    """
    x, line = names
    rows: list[dict[str, Any]] = []
    P_arr = np.asarray(Ps, dtype=np.float64)
    for j, D in enumerate(Ds):
        column = measured[:, j]
        finite = np.isfinite(column)
        row: dict[str, Any] = {"D": int(D), "n_finished": int(finite.sum())}
        theory_column = theory[:, j]
        row["theory_peak_P"] = int(Ps[int(np.nanargmax(theory_column))])
        if finite.sum() < 2:
            row.update(peak_P=None, peak_ppe=None, octaves_from_ridge=None, at_edge=None)
            row["verdict"] = "not enough runs"
            rows.append(row)
            continue
        k = int(np.nanargmax(np.where(finite, column, -np.inf)))
        peak = int(Ps[k])
        octaves = math.log2(peak / D)
        row.update(
            peak_P=peak,
            peak_ppe=float(column[k]),
            octaves_from_ridge=octaves,
            at_edge=bool(k in (0, len(Ps) - 1)),
            ppe_at_ridge=float(column[list(Ps).index(D)]) if D in Ps and finite[list(Ps).index(D)] else None,
        )
        if not P_arr.min() <= D <= P_arr.max():
            row["verdict"] = f"ridge outside the {x} range"
        elif peak == D:
            row["verdict"] = f"at {x} = {line}"
        elif abs(octaves) <= 1.0:
            row["verdict"] = f"near {x} = {line} (within a factor 2)"
        else:
            row["verdict"] = f"away from {x} = {line}"
        rows.append(row)
    return rows


def ridge_contrast(Ps: Sequence[int], Ds: Sequence[int], values: np.ndarray) -> dict[str, float | None]:
    """How sharp the ridge is: PPE one octave off P = D, as a fraction of the PPE on it.

    ``beyond`` is the mean over D of PPE(P = 2D, D) / PPE(P = D, D) and ``before`` that of
    PPE(P = D/2, D) / PPE(P = D, D), over the D whose cells are in the grid (None if none).
    Ideal embeddings give about 0.44 on both sides (0.067 / 0.151).
    """
    index_p = {int(P): i for i, P in enumerate(Ps)}
    out: dict[str, float | None] = {}
    for side, factor in (("beyond", 2.0), ("before", 0.5)):
        ratios = []
        for j, D in enumerate(Ds):
            off = D * factor
            if D in index_p and off.is_integer() and int(off) in index_p:
                ridge, other = values[index_p[D], j], values[index_p[int(off)], j]
                if np.isfinite(ridge) and np.isfinite(other) and ridge > 0:
                    ratios.append(float(other / ridge))
        out[side] = mean(ratios) if ratios else None
        out[f"n_{side}"] = len(ratios)
    return out


def correlations(measured: np.ndarray, theory: np.ndarray) -> dict[str, float | None]:
    """Pearson and Spearman correlation over the cells where both are finite (None below 3)."""
    ok = np.isfinite(measured) & np.isfinite(theory)
    if ok.sum() < 3 or np.ptp(measured[ok]) == 0:
        return {"pearson": None, "spearman": None}
    return {
        "pearson": float(np.corrcoef(measured[ok], theory[ok])[0, 1]),
        "spearman": float(stats.spearmanr(measured[ok], theory[ok]).statistic),
    }
