"""Figures for the analyses: the PPE ridge at P = D, the sweeps' measurements and scaling-law fits.

Figures are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas,
never through ``pyplot``: no display is needed and no global backend state is touched.
Every function writes one image (the format follows the file suffix, e.g. .png, .pdf, .svg)
and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from mmcr.analysis.theory import PPEGrid, ppe_at_equal_size, ppe_marchenko_pastur

__all__ = [
    "plot_law_curves",
    "plot_law_exponents",
    "plot_law_parity",
    "plot_law_residuals",
    "plot_parity",
    "plot_ppe_curves",
    "plot_ppe_heatmap",
    "plot_ppe_vs_P",
    "plot_ppe_vs_compute",
    "plot_scaling_axes",
    "plot_scaling_fit",
]


class _CurveFit(Protocol):
    def predict(self, compute: ArrayLike) -> np.ndarray: ...


def _as_grid(grid_result: PPEGrid | Mapping[str, Any]) -> PPEGrid:
    if isinstance(grid_result, PPEGrid):
        return grid_result
    if isinstance(grid_result, Mapping):
        return PPEGrid.from_dict(dict(grid_result))
    raise ValueError(f"Expected a PPEGrid or its to_dict() mapping; got {type(grid_result).__name__}.")


def _save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=dpi)
    return out


def _drawable(values: ArrayLike) -> np.ndarray:
    """Mask of the finite, positive values (those a log axis can show)."""
    v = np.asarray(values, dtype=np.float64)
    return np.isfinite(v) & (v > 0)


def _log_edges(sizes: np.ndarray) -> np.ndarray:
    """Cell edges for log-spaced sizes: geometric midpoints, extrapolated at both ends."""
    s = np.asarray(sizes, dtype=np.float64)
    if s.shape[0] == 1:
        return np.array([s[0] / math.sqrt(2.0), s[0] * math.sqrt(2.0)])
    mids = np.sqrt(s[:-1] * s[1:])
    return np.concatenate([[s[0] ** 2 / mids[0]], mids, [s[-1] ** 2 / mids[-1]]])


def plot_ppe_vs_P(grid_result: PPEGrid | Mapping[str, Any], path: str | Path) -> Path:
    """PPE of uniform unit centroids against batch size P, one curve per dimension D.

    Log-log axes. Points: Monte-Carlo means with confidence-interval error bars; lines:
    the Marchenko-Pastur limit as a continuous function of P; dotted verticals at P = D,
    where each curve peaks (the ridge); a grey line at the peak height 1 - 8/(3 pi).

    Args:
        grid_result: a :class:`~mmcr.analysis.theory.PPEGrid` or its ``to_dict()``.
        path: output image file.
    """
    grid = _as_grid(grid_result)
    fig = Figure(figsize=(8.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    palette = colormaps["viridis"]
    n_d = len(grid.Ds)
    p_lo, p_hi = float(grid.Ps.min()), float(grid.Ps.max())
    p_dense = np.geomspace(p_lo, p_hi, 200) if p_hi > p_lo else np.array([p_lo])
    for j, D in enumerate(grid.Ds):
        colour = palette(0.9 * j / max(n_d - 1, 1))
        mean = grid.mean[:, j]
        half = grid.ci_half_width[:, j]
        shown = mean > 0  # P = 1 has PPE exactly 0, which a log axis cannot show
        ax.errorbar(
            grid.Ps[shown],
            mean[shown],
            yerr=np.minimum(half[shown], 0.999 * mean[shown]),
            fmt="o",
            ms=4,
            capsize=2,
            color=colour,
            label=f"D = {int(D)}",
        )
        ax.plot(p_dense, [ppe_marchenko_pastur(p, float(D)) for p in p_dense], "-", color=colour, lw=1.2)
        if p_lo <= D <= p_hi:
            ax.axvline(float(D), color=colour, ls=":", lw=1.0)
    ax.axhline(ppe_at_equal_size(), color="0.5", lw=0.8, ls="--", label=r"$1 - 8/(3\pi)$ (limit at P = D)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size P (number of centroids)")
    ax.set_ylabel("pretraining percent error (fraction)")
    ax.set_title(
        "PPE of perfectly aligned, uniform embeddings\n"
        f"points: Monte Carlo ({grid.trials} trials, {grid.confidence:.0%} CI); "
        "lines: Marchenko-Pastur limit; dotted: P = D",
        fontsize=9,
    )
    fig.legend(loc="outside right center", fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    return _save(fig, path)


def _colour_norm(values: np.ndarray) -> colors.Normalize | None:
    """A log colour scale when every finite value is positive and they span > 20x."""
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 20:
        return colors.LogNorm(vmin=float(finite.min()), vmax=float(finite.max()))
    return None


def _heatmap_panel(
    fig: Figure,
    ax: Axes,
    Ps: np.ndarray,
    Ds: np.ndarray,
    values: np.ndarray,
    title: str,
    label: str,
    norm: colors.Normalize | None = None,
) -> None:
    # pcolormesh wants (rows = D, columns = P): put P on x and D on y.
    mesh = ax.pcolormesh(_log_edges(Ps), _log_edges(Ds), np.asarray(values).T, cmap="magma", norm=norm)
    lo = max(float(Ps.min()), float(Ds.min())) / 2.0
    hi = min(float(Ps.max()), float(Ds.max())) * 2.0
    ax.plot([lo, hi], [lo, hi], color="cyan", lw=1.2, ls="--", label="P = D (ridge)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    p_edges, d_edges = _log_edges(Ps), _log_edges(Ds)
    ax.set_xlim(float(p_edges[0]), float(p_edges[-1]))
    ax.set_ylim(float(d_edges[0]), float(d_edges[-1]))
    # one plain label per grid value; log-axis minor labels would overlap them
    ax.set_xticks([float(p) for p in Ps], [f"{int(p)}" if float(p).is_integer() else f"{p:g}" for p in Ps])
    ax.set_yticks([float(d) for d in Ds], [f"{int(d)}" if float(d).is_integer() else f"{d:g}" for d in Ds])
    ax.minorticks_off()
    ax.set_xlabel("batch size P")
    ax.set_ylabel("embedding dimension D")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.colorbar(mesh, ax=ax, label=label)


def plot_ppe_heatmap(
    grid_result: PPEGrid | Mapping[str, Any],
    path: str | Path,
    measured: ArrayLike | Mapping[str, Any] | None = None,
) -> Path:
    """Heatmap of the Monte-Carlo PPE over (P, D), log axes, with the ridge line P = D.

    Args:
        grid_result: a :class:`~mmcr.analysis.theory.PPEGrid` or its ``to_dict()``.
        path: output image file.
        measured: optional second panel, e.g. the PPE reached by training in a
            double-descent sweep: an array of shape (len(Ps), len(Ds)) on the same grid,
            or a mapping {"Ps": [...], "Ds": [...], "values": (len(Ps), len(Ds)),
            "label": "..."} on its own grid. NaN cells (runs not done) stay blank.
    """
    grid = _as_grid(grid_result)
    panels = 1 if measured is None else 2
    fig = Figure(figsize=(5.6 * panels, 4.6), layout="constrained")
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    _heatmap_panel(
        fig,
        axes[0],
        grid.Ps,
        grid.Ds,
        grid.mean,
        f"uniform unit centroids, Monte Carlo ({grid.trials} trials)",
        "PPE (fraction)",
        _colour_norm(grid.mean),
    )
    if measured is not None:
        if isinstance(measured, Mapping):
            missing = {"Ps", "Ds", "values"} - set(measured)
            if missing:
                raise ValueError(f"measured lacks the keys {sorted(missing)}.")
            m_ps = np.asarray(measured["Ps"], dtype=np.float64)
            m_ds = np.asarray(measured["Ds"], dtype=np.float64)
            values = np.asarray(measured["values"], dtype=np.float64)
            label = str(measured.get("label", "measured"))
        else:
            m_ps = grid.Ps.astype(np.float64)
            m_ds = grid.Ds.astype(np.float64)
            values = np.asarray(measured, dtype=np.float64)
            label = "measured"
        if values.shape != (len(m_ps), len(m_ds)):
            raise ValueError(
                f"measured values must have shape (len(Ps), len(Ds)) = "
                f"{(len(m_ps), len(m_ds))}; got {values.shape}."
            )
        _heatmap_panel(fig, axes[1], m_ps, m_ds, values, label, "PPE (fraction)", _colour_norm(values))
    return _save(fig, path)


def plot_scaling_fit(
    compute: ArrayLike,
    loss: ArrayLike,
    fit: _CurveFit,
    path: str | Path,
    holdout_mask: ArrayLike | None = None,
    extrapolate: float = 10.0,
    xlabel: str = "compute (FLOPs)",
    ylabel: str = "loss",
) -> Path:
    """Measured points, the fitted law, and its extrapolation with a bootstrap band.

    Args:
        compute: (N,) positive compute values of the runs.
        loss: (N,) measured losses.
        fit: a :class:`~mmcr.analysis.fit.PowerLawFit` (any object with ``predict(C)``; a
            ``predict_interval(C)`` method and bootstrap samples add the shaded band).
        path: output image file.
        holdout_mask: (N,) booleans marking runs held out of the fit (drawn as open
            markers), e.g. ``holdout_error(...)["holdout_mask"]``.
        extrapolate: the curve runs to ``extrapolate`` times the largest compute.
        xlabel, ylabel: axis labels.
    """
    c = np.asarray(compute, dtype=np.float64).reshape(-1)
    y = np.asarray(loss, dtype=np.float64).reshape(-1)
    if c.shape != y.shape or c.size == 0:
        raise ValueError(f"compute and loss must be non-empty and equally long; got {c.size}, {y.size}.")
    if np.any(c <= 0):
        raise ValueError("compute must be positive to draw on a log axis.")
    if extrapolate < 1:
        raise ValueError(f"extrapolate must be >= 1; got {extrapolate}.")
    held = np.zeros(c.shape, dtype=bool) if holdout_mask is None else np.asarray(holdout_mask, bool)
    if held.shape != c.shape:
        raise ValueError("holdout_mask must have one entry per run.")
    fitted_max = float(c[~held].max()) if np.any(~held) else float(c.max())
    grid_in = np.geomspace(float(c.min()), fitted_max, 200)
    grid_out = np.geomspace(fitted_max, float(c.max()) * extrapolate, 100)
    whole = np.concatenate([grid_in, grid_out[1:]])

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    band = getattr(fit, "predict_interval", None)
    boots = getattr(fit, "bootstrap_params", None)
    if callable(band) and boots is not None and len(boots) > 0:
        low, high = band(whole)
        ax.fill_between(whole, low, high, color="C0", alpha=0.2, lw=0, label="bootstrap band")
    ax.plot(grid_in, fit.predict(grid_in), "-", color="C0", lw=1.6, label="fit")
    ax.plot(grid_out, fit.predict(grid_out), "--", color="C0", lw=1.6, label="extrapolation")
    ax.plot(c[~held], y[~held], "o", color="C1", ms=5, label="runs (fitted)")
    if np.any(held):
        ax.plot(c[held], y[held], "o", mfc="none", color="C3", ms=7, mew=1.5, label="runs (held out)")
    params = getattr(fit, "params", None)
    if isinstance(params, Mapping) and {"E", "A", "alpha"} <= set(params):
        ax.axhline(float(params["E"]), color="0.5", lw=0.8, ls=":", label="E (irreducible)")
        ax.set_title(
            rf"$L = {params['E']:.3g} + {params['A']:.3g}\,C^{{-{params['alpha']:.3g}}}$",
            fontsize=10,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    return _save(fig, path)


# --------------------------------------------------------------------------------------
# The sweeps' measurements (mmcr sweep, mmcr fit, mmcr report); drawn at 130 dpi.
# --------------------------------------------------------------------------------------


def plot_ppe_curves(
    sizes: Sequence[int],
    lines: Sequence[int],
    panels: Sequence[tuple[str, np.ndarray]],
    theory: np.ndarray,
    path: str | Path,
    xlabel: str,
    line_name: str,
) -> Path:
    """PPE against one size (x), one curve per value of the other (lines), with the ridge.

    Arrays have shape (len(sizes), len(lines)); each panel is a (title, measured values)
    pair. Solid: measured; dashed: Monte-Carlo PPE of ideal (aligned, uniform) embeddings;
    dotted vertical: x = line value (the ridge); star: the measured maximum of each curve.
    """
    fig = Figure(figsize=(5.2 * len(panels) + 1.6, 4.4), layout="constrained")
    palette = colormaps["viridis"]
    x = np.asarray(sizes, dtype=np.float64)
    for p, (title, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for j, value in enumerate(lines):
            colour = palette(0.9 * j / max(len(lines) - 1, 1))
            y = values[:, j]
            ok = _drawable(y)
            ax.plot(x[ok], y[ok], "o-", color=colour, ms=4, lw=1.4, label=f"{line_name} = {value}")
            if ok.sum() >= 2:
                k = int(np.nanargmax(np.where(ok, y, -np.inf)))
                ax.plot([x[k]], [y[k]], "*", color=colour, ms=13, mec="black", mew=0.6)
            ax.plot(x, theory[:, j], "--", color=colour, lw=1.0, alpha=0.8)
            if x.min() <= value <= x.max():
                ax.axvline(float(value), color=colour, ls=":", lw=0.9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.set_xticks([], minor=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pretraining percent error (fraction)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", ls="--", lw=1.0),
        Line2D([], [], color="0.3", ls=":", lw=0.9),
        Line2D([], [], color="0.3", marker="*", ls="none", ms=10, mec="black"),
    ]
    labels += [
        "ideal embeddings (Monte Carlo)",
        f"ridge ({xlabel.split()[-1]} = {line_name})",
        "measured peak",
    ]
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    return _save(fig, path, dpi=130)


def plot_scaling_axes(
    lines: Mapping[str, Sequence[Mapping[str, Any]]],
    point: Mapping[str, int],
    xlabels: Mapping[str, str],
    path: str | Path,
) -> Path:
    """Train-batch and validation PPE along each axis of a scaling sweep, one panel per variable.

    Args:
        lines: per variable, the result lines of the runs on its axis (the other variables
            at the point), each with the variable's value, ``ppe`` and ``val_ppe``.
        point: the sweep's base point (drawn dotted).
        xlabels: the axis label of each variable.
        path: output image file.
    """
    fig = Figure(figsize=(3.6 * len(lines) + 0.6, 3.8), layout="constrained")
    for n, (var, rows) in enumerate(lines.items()):
        ax = fig.add_subplot(1, len(lines), n + 1)
        line = sorted(rows, key=lambda r: r[var])
        for key, style, label in (("ppe", "o-", "train-batch PPE"), ("val_ppe", "s--", "validation PPE")):
            pts = [(r[var], r[key]) for r in line if r.get(key) is not None and _drawable(r[key])]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, ms=4, label=label)
        ax.axvline(point[var], color="0.5", ls=":", lw=0.9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabels[var])
        if n == 0:
            ax.set_ylabel("PPE (fraction)")
            ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.25)
    text = ", ".join(f"{k} {v}" for k, v in point.items())
    fig.suptitle(f"one variable at a time around the point ({text}; dotted)", fontsize=9)
    return _save(fig, path, dpi=130)


def plot_ppe_vs_compute(
    results: Sequence[Mapping[str, Any]], computes: Mapping[str, str], path: str | Path
) -> Path:
    """Train-batch PPE against each measure of compute (one panel each), one marker per group.

    Args:
        results: result lines of a scaling sweep, with ``ppe``, ``groups`` and every key of
            ``computes``; a run of the base point is drawn as a star.
        computes: result key -> axis label, e.g. ``{"flops": "training FLOPs"}``.
        path: output image file.
    """
    fig = Figure(figsize=(10.5, 4.2), layout="constrained")
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        member = list(r.get("groups") or ["point"])
        groups.setdefault("point" if "point" in member else member[0], []).append(r)
    for n, (key, label) in enumerate(computes.items()):
        ax = fig.add_subplot(1, len(computes), n + 1)
        for group, rows in sorted(groups.items()):
            pts = [(r[key], r["ppe"]) for r in rows if r.get("ppe") is not None and _drawable(r["ppe"])]
            if pts:
                marker = "*" if group == "point" else "o"
                ax.plot(*zip(*pts, strict=True), marker, ms=9 if group == "point" else 5, label=group)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("train-batch PPE")
        ax.grid(True, which="both", alpha=0.25)
        if n == len(computes) - 1:
            ax.legend(fontsize=7)
    return _save(fig, path, dpi=130)


def plot_parity(
    observed: ArrayLike,
    predicted: ArrayLike,
    held: ArrayLike | None,
    path: str | Path,
    label: str,
) -> Path:
    """A joint fit's prediction against the measured values, log-log, hold-out runs as open circles.

    Args:
        observed, predicted: (N,) measured and predicted values of ``label``.
        held: (N,) booleans marking the runs held out of the fit, or None.
        path: output image file.
        label: the quantity's name, for the axes.
    """
    obs = np.asarray(observed, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    mask = np.zeros(obs.shape, dtype=bool) if held is None else np.asarray(held, dtype=bool)
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = float(min(obs.min(), pred.min())) * 0.9, float(max(obs.max(), pred.max())) * 1.1
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", label="predicted = measured")
    ax.plot(obs[~mask], pred[~mask], "o", color="C1", ms=5, label="runs (fitted)")
    if mask.any():
        ax.plot(
            obs[mask], pred[mask], "o", mfc="none", color="C3", ms=7, mew=1.5, label="held out (hold-out fit)"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"measured {label}")
    ax.set_ylabel(f"joint fit's prediction of {label}")
    ax.set_title("L = E + sum_i A_i x_i^-alpha_i over S, B, D, K", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.25)
    return _save(fig, path, dpi=130)


# --------------------------------------------------------------------------------------
# The predictive scaling study (mmcr.experiments.scaling_predict): one point per (cell, S).
# --------------------------------------------------------------------------------------

_SET_STYLE = {
    "fit": ("fitted", "C0", "o", True),
    "compute_2x": ("held out: 2x compute", "C2", "s", False),
    "compute_4_8x": ("held out: 4-8x compute", "C3", "D", False),
    "unseen_cells": ("held out: unseen cell", "C4", "^", False),
}


def _finish_law_figure(fig: Figure, ax: Axes, path: str | Path) -> Path:
    """Legend, grid and margins of a one-panel figure of the predictive study; then save it."""
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.25)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.13, top=0.92)
    return _save(fig, path, dpi=130)


class _Law(Protocol):
    def predict(self, variables: Mapping[str, np.ndarray], floor: np.ndarray | None = None) -> np.ndarray: ...


def plot_law_parity(points: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Seed-mean PPE against the hold-out fit's prediction, by set, with a +-5 % band."""
    fig = Figure(figsize=(5.0, 4.6), layout=None)
    ax = fig.add_subplot()
    obs_all = np.array([p["observed"] for p in points])
    pred_all = np.array([p["predicted_holdout_fit"] for p in points])
    lo, hi = (
        float(min(obs_all.min(), pred_all.min())) * 0.85,
        float(max(obs_all.max(), pred_all.max())) * 1.15,
    )
    grid = np.geomspace(lo, hi, 50)
    ax.plot(grid, grid, color="0.4", lw=0.8, ls="--", label="predicted = observed")
    ax.fill_between(grid, grid * 0.95, grid * 1.05, color="0.85", label="+-5 %")
    for name, (label, colour, marker, filled) in _SET_STYLE.items():
        sel = [p for p in points if p["set"] == name]
        if not sel:
            continue
        obs = [p["observed"] for p in sel]
        pred = [p["predicted_holdout_fit"] for p in sel]
        ax.plot(
            obs,
            pred,
            marker,
            color=colour,
            mfc=colour if filled else "none",
            ms=5,
            mew=1.3,
            ls="",
            label=label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("observed PPE (mean over seeds)")
    ax.set_ylabel("predicted PPE (law fitted on the fit set only)")
    return _finish_law_figure(fig, ax, path)


def plot_law_curves(points: Sequence[Mapping[str, Any]], law: _Law, path: str | Path) -> Path:
    """PPE against steps for every cell (both sides of B = D), the law and the ideal floor."""
    cells = list(dict.fromkeys(p["cell"] for p in points))
    sides = {
        "B > D": [c for c in cells if _cell_side(points, c) == "above"],
        "B < D": [c for c in cells if _cell_side(points, c) == "below"],
    }
    fig = Figure(figsize=(10.0, 4.4), layout=None)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, side_cells) in zip(axes, sides.items(), strict=True):
        for i, cell in enumerate(side_cells):
            sel = sorted((p for p in points if p["cell"] == cell), key=lambda p: p["steps"])
            colour = f"C{i % 10}"
            s = np.array([p["steps"] for p in sel], dtype=np.float64)
            first = sel[0]
            grid = np.geomspace(s.min() * 0.8, s.max() * 1.25, 60)
            n = len(grid)
            variables = {
                "steps": grid,
                "batch_size": np.full(n, float(first["batch_size"])),
                "projector_dim": np.full(n, float(first["projector_dim"])),
                "num_views": np.full(n, float(first["num_views"])),
                "sample_views": grid * first["batch_size"] * first["num_views"],
                "flops": grid * first["flops"] / first["steps"],
            }
            ax.plot(grid, law.predict(variables, np.full(n, first["floor"])), color=colour, lw=1.2)
            ax.axhline(first["floor"], color=colour, lw=0.6, ls=":")
            for set_name, (_, _, marker, filled) in _SET_STYLE.items():
                members = [p for p in sel if p["set"] == set_name]
                if not members:
                    continue
                ax.errorbar(
                    [p["steps"] for p in members],
                    [p["observed"] for p in members],
                    yerr=[_finite_or_zero(p.get("seed_std")) for p in members],
                    fmt=marker,
                    color=colour,
                    mfc=colour if filled else "none",
                    ms=5,
                    capsize=2,
                )
            ax.plot([], [], color=colour, label=cell)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gradient steps S")
        ax.set_title(f"{title}: law fitted on the fit set (filled markers); dotted: ideal floor", fontsize=8)
        if side_cells:
            ax.legend(fontsize=7, ncol=2)
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel("PPE (mean over seeds, bars: seed std)")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.13, top=0.92)
    return _save(fig, path, dpi=130)


def _finite_or_zero(value: Any) -> float:
    """A spread to draw: 0 where it is missing (one seed; NaN, stored as null)."""
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


def _cell_side(points: Sequence[Mapping[str, Any]], cell: str) -> str:
    p = next(p for p in points if p["cell"] == cell)
    return "below" if p["batch_size"] < p["projector_dim"] else "above"


def plot_law_residuals(points: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Relative residual (predicted / observed - 1) of the hold-out fit against steps, by set."""
    fig = Figure(figsize=(6.0, 4.0), layout=None)
    ax = fig.add_subplot()
    ax.axhspan(-0.05, 0.05, color="0.88", label="+-5 %")
    ax.axhline(0.0, color="0.4", lw=0.8)
    for name, (label, colour, marker, filled) in _SET_STYLE.items():
        sel = [p for p in points if p["set"] == name]
        if not sel:
            continue
        x = np.array([p["steps"] for p in sel], dtype=np.float64)
        x = x * np.exp(np.linspace(-0.08, 0.08, len(sel)))  # a small jitter so cells do not overlap
        r = [p["predicted_holdout_fit"] / p["observed"] - 1.0 for p in sel]
        ax.plot(x, r, marker, color=colour, mfc=colour if filled else "none", ms=5, ls="", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("gradient steps S")
    ax.set_ylabel("predicted / observed - 1")
    return _finish_law_figure(fig, ax, path)


def plot_law_exponents(fits: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path) -> Path:
    """Fitted exponents with their bootstrap CIs, one row per parameter, one colour per fit."""
    names = [
        n for n in next(iter(fits.values())) if n not in ("log A", "E", "side") and not n.startswith("side_")
    ]
    fig = Figure(figsize=(7.5, 1.2 + 0.4 * max(len(names), 1)), layout=None)
    ax = fig.add_subplot()
    for i, (fit_name, exps) in enumerate(fits.items()):
        y = np.arange(len(names)) + 0.18 * (i - (len(fits) - 1) / 2)
        values = np.array([exps[n]["value"] for n in names])
        lo = np.array([exps[n].get("ci_low", exps[n]["value"]) for n in names])
        hi = np.array([exps[n].get("ci_high", exps[n]["value"]) for n in names])
        ax.errorbar(
            values, y, xerr=[values - lo, hi - values], fmt="o", color=f"C{i}", capsize=3, label=fit_name
        )
    ax.set_yticks(
        np.arange(len(names)), [str(next(iter(fits.values()))[n]["label"]) for n in names], fontsize=8
    )
    ax.axvline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("exponent (95 % bootstrap CI)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="x", alpha=0.25)
    fig.subplots_adjust(left=0.42, right=0.97, bottom=0.5 / fig.get_figheight() + 0.08, top=0.95)
    return _save(fig, path, dpi=130)
