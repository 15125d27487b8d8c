"""Compute scaling of the MMCR pretraining percent error: the report of a scaling sweep.

A scaling sweep (:mod:`mmcr.experiments.sweep`) trains runs one variable at a time around a
base point (steps S, batch size B, embedding dimension D, views K) and on an optional joint
grid; each result line counts its compute in FLOPs and sample-views. The report, drawn from
the stored files alone, shows the PPE along each axis and against compute and writes
summary.json and summary.md; when ``mmcr fit`` (:mod:`mmcr.experiments.scaling_fit`) has
written fit.json, its figures and text are drawn from it here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.analysis.fit import PowerLawFit
from mmcr.analysis.plots import plot_parity, plot_ppe_vs_compute, plot_scaling_axes, plot_scaling_fit
from mmcr.experiments.results import (
    COMPUTES,
    FIT_FILE,
    FLOPS_CONVENTION,
    SUMMARY_JSON,
    SUMMARY_MD,
    TARGETS,
    fmt,
)
from mmcr.experiments.spec import SCALING_VARIABLES, VARIABLE_LABELS, Log, SweepSpec
from mmcr.records import read_json, write_json, write_text

__all__ = ["fit_figures", "fit_headline", "fit_markdown_lines", "on_axis", "scaling_report"]

_NOTES = [
    "ppe (the fit target: positive and bounded) is the mean train-batch PPE of the last "
    "ppe_last logged steps; the raw loss -||C||_* is negative and its optimum grows with B "
    "and D, so it is recorded but not fitted.",
    "PPE has a floor that depends on B and D (the P = D ridge of ideal embeddings), so the "
    "batch-size and dimension axes need not follow a clean power law.",
]
# the columns of a run in summary.json
_RUN_KEYS = (
    "name",
    *SCALING_VARIABLES,
    "seed",
    "ppe",
    "val_ppe",
    "loss",
    "flops",
    "sample_views",
    "wall_s",
    "groups",
)


def on_axis(result: Mapping[str, Any], point: Mapping[str, int], var: str) -> bool:
    """Whether a run lies on ``var``'s axis: every other variable at the base point."""
    return all(result.get(v) == point[v] for v in SCALING_VARIABLES if v != var)


def _scaling_figures(out: Path, spec: SweepSpec, results: list[dict[str, Any]]) -> dict[str, Path]:
    """PPE along each axis (when the sweep has axes) and against compute."""
    figures: dict[str, Path] = {}
    axes_vars = [v for v in SCALING_VARIABLES if v in spec.axes]
    if axes_vars:
        lines = {var: [r for r in results if on_axis(r, spec.point, var)] for var in axes_vars}
        figures["axes"] = plot_scaling_axes(lines, spec.point, VARIABLE_LABELS, out / "scaling_axes.png")
    figures["compute"] = plot_ppe_vs_compute(results, COMPUTES, out / "ppe_vs_compute.png")
    return figures


def _markdown(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    fit: Mapping[str, Any] | None,
    figures: Mapping[str, Path],
) -> str:
    lines = [
        "# Compute scaling of the MMCR pretraining percent error",
        "",
        f"Runs finished: {summary['finished_runs']} of {summary['planned_runs']}; "
        + (
            f"base point {summary['point']}"
            if summary["point"]
            else "a designed study (every cell at every S; `mmcr fit` tests its laws as predictions)"
        )
        + f"; total run time {summary['total_wall_s'] / 60:.1f} min.",
        "",
        FLOPS_CONVENTION,
        "",
        "| run | S | B | D | K | PPE | val PPE | FLOPs | sample-views |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['batch_size']} | {r['projector_dim']} | {r['num_views']} | "
            f"{fmt(r.get('ppe'))} | {fmt(r.get('val_ppe'))} | {r['flops']:.3g} | {r['sample_views']:.3g} |"
        )
    if fit:
        lines += ["", "## Fits (mmcr fit)", "", *fit_markdown_lines(fit)]
    lines += ["", "Notes:", "", *[f"- {n}" for n in _NOTES], ""]
    lines += ["Figures: " + ", ".join(Path(p).name for p in figures.values()), ""]
    return "\n".join(lines)


def scaling_report(
    out: Path, meta: Mapping[str, Any], results: list[dict[str, Any]], log: Log
) -> dict[str, Any]:
    """Figures, summary.json and summary.md of a scaling sweep (and its fit figures, if fitted)."""
    spec = SweepSpec.from_dict(meta["spec"])
    figures = _scaling_figures(out, spec, results)
    fit: dict[str, Any] | None = None
    if (out / FIT_FILE).exists():
        fit = read_json(out / FIT_FILE)
        figures.update(fit_figures(out, fit, results))
    rows = sorted(results, key=lambda r: r["flops"])
    summary = {
        "kind": "scaling",
        "finished_runs": len(results),
        "planned_runs": len(meta.get("runs", [])) or len(results),
        "point": spec.point,
        "axes": spec.axes,
        "joint": spec.joint,
        "compute_convention": FLOPS_CONVENTION,
        "runs": [{k: r.get(k) for k in _RUN_KEYS} for r in rows],
        "total_wall_s": sum(float(r.get("wall_s") or 0.0) for r in results),
        "fit": fit_headline(fit) if fit else None,
        "notes": list(_NOTES),
        "figures": {name: str(path) for name, path in figures.items()},
    }
    write_json(out / SUMMARY_JSON, summary)
    write_text(out / SUMMARY_MD, _markdown(summary, rows, fit, figures))
    log(f"{len(results)} scaling runs; wrote {out / SUMMARY_MD} and {len(figures)} figures")
    return summary


# --------------------------------------------------------------------------------------
# Figures and text from fit.json.
# --------------------------------------------------------------------------------------


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _power_law_from_dict(data: Mapping[str, Any]) -> PowerLawFit:
    """A :class:`~mmcr.analysis.fit.PowerLawFit` from its record in fit.json (None as NaN)."""
    boots = np.asarray(data.get("bootstrap_params") or [], dtype=np.float64).reshape(-1, 3)
    return PowerLawFit(
        E=float(data["E"]),
        A=float(data["A"]),
        alpha=float(data["alpha"]),
        ci={k: (_nan(v[0]), _nan(v[1])) for k, v in data.get("ci", {}).items()},
        bootstrap_params=boots,
        objective=float(data.get("objective") or math.nan),
        n_points=int(data.get("n_points", 0)),
        huber_delta=float(data.get("huber_delta", 1e-3)),
        confidence=float(data.get("confidence", 0.95)),
    )


def _compute_figures(
    out: Path, fit: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], ylabel: str
) -> dict[str, Path]:
    """The law against compute over every run, and its hold-out version."""
    target, compute = fit["target"], fit["compute"]
    main, hold = fit.get("compute_fit", {}), fit.get("holdout", {})
    if "E" not in main or not rows:
        return {}
    c = [r[compute] for r in rows]
    y = [r[target] for r in rows]
    figures = {
        "fit": plot_scaling_fit(
            c,
            y,
            _power_law_from_dict(main),
            out / f"fit_{compute}.png",
            xlabel=COMPUTES[compute],
            ylabel=ylabel,
        )
    }
    if "fit" in hold and len(hold.get("mask", [])) == len(rows):
        figures["holdout"] = plot_scaling_fit(
            c,
            y,
            _power_law_from_dict(hold["fit"]),
            out / f"holdout_{compute}.png",
            holdout_mask=hold["mask"],
            xlabel=COMPUTES[compute],
            ylabel=ylabel,
        )
    return figures


def fit_figures(out: Path, fit: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Path]:
    """Draw the fit figures from fit.json (and the stored results)."""
    target = fit["target"]
    ylabel = TARGETS.get(target, target)
    by_name = {r["name"]: r for r in results}
    rows = [by_name[n] for n in fit.get("runs", []) if n in by_name]
    figures = _compute_figures(out, fit, rows, ylabel)
    for var, axis_fit in fit.get("axis_fits", {}).items():
        if "E" not in axis_fit:
            continue
        axis_rows = [by_name[n] for n in axis_fit.get("runs", []) if n in by_name]
        if axis_rows:
            figures[f"axis_{var}"] = plot_scaling_fit(
                [r[var] for r in axis_rows],
                [r[target] for r in axis_rows],
                _power_law_from_dict(axis_fit),
                out / f"fit_axis_{var}.png",
                extrapolate=2.0,
                xlabel=VARIABLE_LABELS[var],
                ylabel=ylabel,
            )
    joint = fit.get("joint_fit", {})
    if "predicted" in joint:
        figures["joint"] = plot_parity(
            joint["observed"], joint["predicted"], joint.get("holdout_mask"), out / "joint_parity.png", ylabel
        )
    return figures


def _ci_text(ci: Sequence[Any] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "[no CI]"
    return f"[{float(ci[0]):.3g}, {float(ci[1]):.3g}]"


def fit_headline(fit: Mapping[str, Any]) -> dict[str, Any]:
    """The fit's main numbers, for the scaling summary."""
    main = fit.get("compute_fit", {})
    headline: dict[str, Any] = {"target": fit.get("target"), "compute": fit.get("compute")}
    if "alpha" in main:
        headline.update(alpha=main["alpha"], alpha_ci=main["ci"].get("alpha"), E=main["E"], A=main["A"])
    hold = fit.get("holdout", {})
    if "mean_abs_relative_error" in hold:
        headline["holdout_mean_abs_relative_error"] = hold["mean_abs_relative_error"]
    joint = fit.get("joint_fit", {})
    if "variables" in joint:
        headline["joint_alpha"] = {v: joint[f"alpha_{v}"] for v in joint["variables"]}
    return headline


def _bound_note(alpha: float) -> str:
    """A warning when an exponent sits at the fitter's bounds (1e-4 or 10): no power law there."""
    if alpha <= 1.01e-4 or alpha >= 9.9:
        return " (alpha at the fitter's bound: the target does not fall like a power law here)"
    return ""


def fit_markdown_lines(fit: Mapping[str, Any]) -> list[str]:
    """fit.json as markdown bullet lines (the compute convention last)."""
    lines: list[str] = []
    target, compute = fit["target"], fit["compute"]
    main = fit.get("compute_fit", {})
    if "alpha" in main:
        lines.append(
            f"- {TARGETS.get(target, target)} vs {COMPUTES[compute]}: L = E + A C^-alpha with "
            f"alpha = {main['alpha']:.3g} {_ci_text(main['ci'].get('alpha'))}, E = {main['E']:.3g} "
            f"{_ci_text(main['ci'].get('E'))}, A = {main['A']:.3g} ({main['n_points']} runs, "
            f"{fit.get('confidence', 0.95):.0%} bootstrap CIs).{_bound_note(main['alpha'])}"
        )
    elif "skipped" in main:
        lines.append(f"- compute fit skipped: {main['skipped']}")
    hold = fit.get("holdout", {})
    if "mean_abs_relative_error" in hold:
        lines.append(
            f"- hold-out: fitted without the {int(sum(hold['mask']))} largest-compute run(s), the law "
            f"predicts them with mean |relative error| {100 * hold['mean_abs_relative_error']:.1f} % "
            f"(max {100 * hold['max_abs_relative_error']:.1f} %)."
        )
    elif "skipped" in hold:
        lines.append(f"- hold-out skipped: {hold['skipped']}")
    for var, axis_fit in fit.get("axis_fits", {}).items():
        if "alpha" in axis_fit:
            lines.append(
                f"- along {VARIABLE_LABELS[var]} (others at the point): alpha = {axis_fit['alpha']:.3g} "
                f"{_ci_text(axis_fit['ci'].get('alpha'))}, E = {axis_fit['E']:.3g} "
                f"({axis_fit['n_points']} runs).{_bound_note(axis_fit['alpha'])}"
            )
        else:
            lines.append(f"- along {VARIABLE_LABELS[var]}: skipped ({axis_fit.get('skipped')})")
    lines += _joint_markdown_lines(fit.get("joint_fit", {}))
    lines += ["", FLOPS_CONVENTION]
    return lines


def _joint_markdown_lines(joint: Mapping[str, Any]) -> list[str]:
    if "variables" not in joint:
        return [f"- joint fit skipped: {joint['skipped']}"] if "skipped" in joint else []
    parts = ", ".join(
        f"alpha_{v} = {joint[f'alpha_{v}']:.3g} {_ci_text(joint['ci'].get(f'alpha_{v}'))}"
        for v in joint["variables"]
    )
    lines = [f"- joint L = E + sum_i A_i x_i^-alpha_i: {parts}; E = {joint['E']:.3g}."]
    pinned = [v for v in joint["variables"] if _bound_note(joint[f"alpha_{v}"])]
    if pinned:
        lines.append(
            f"  (alpha of {', '.join(pinned)} at the fitter's bounds [1e-4, 10]: the target does not "
            "fall like a power law in them)"
        )
    if "holdout_mean_abs_relative_error" in joint:
        lines.append(
            f"- joint hold-out (largest-compute runs): mean |relative error| "
            f"{100 * joint['holdout_mean_abs_relative_error']:.1f} %."
        )
    return lines
