"""Scaling laws fitted to a scaling sweep (``mmcr fit``): fit.json, fit.md and their figures.

Fits, each robust (Huber in log space, several starts; :mod:`mmcr.analysis.fit`) with
bootstrap confidence intervals:

- ``compute_fit``: target = E + A C^-alpha over every run, C = FLOPs or sample-views;
- ``holdout``: the same law fitted without the ``holdout_frac`` largest-compute runs,
  and its relative error in predicting them;
- ``axis_fits``: target against each variable along its axis (others at the point);
- ``joint_fit``: target = E + sum_i A_i x_i^-alpha_i over the variables that vary, with
  its own hold-out error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.analysis.fit import PowerLawFit, fit_joint, fit_power_law, holdout_error
from mmcr.analysis.plots import plot_parity, plot_scaling_fit
from mmcr.experiments.results import (
    COMPUTES,
    FIT_FILE,
    FIT_MD,
    FLOPS_CONVENTION,
    RESULTS_FILE,
    TARGETS,
    load_meta,
    read_results,
)
from mmcr.experiments.spec import SCALING_VARIABLES, VARIABLE_LABELS, Log, SweepSpec, print_line
from mmcr.records import read_json, write_json, write_text

__all__ = ["fit_figures", "fit_headline", "fit_markdown_lines", "fit_sweep", "on_axis"]

def on_axis(result: Mapping[str, Any], point: Mapping[str, int], var: str) -> bool:
    """Whether a run lies on ``var``'s axis: every other variable at the base point."""
    return all(result.get(v) == point[v] for v in SCALING_VARIABLES if v != var)


# --------------------------------------------------------------------------------------
# The fits.
# --------------------------------------------------------------------------------------


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The fit's record, or ``{"skipped": reason}`` when there are not enough runs for it."""
    try:
        return fn()
    except ValueError as exc:
        return {"skipped": str(exc)}


def _power(x: np.ndarray, values: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any]:
    fit = fit_power_law(x, values, bootstrap=bootstrap, seed=seed)
    return {**fit.to_dict(), "bootstrap_params": fit.bootstrap_params}


def _holdout(c: np.ndarray, y: np.ndarray, holdout_frac: float) -> dict[str, Any]:
    h = holdout_error(c, y, frac_largest=holdout_frac)
    return {
        "mask": h["holdout_mask"],
        "predicted": h["predicted"],
        "observed": h["observed"],
        "relative_error": h["relative_error"],
        "mean_abs_relative_error": h["mean_abs_relative_error"],
        "max_abs_relative_error": h["max_abs_relative_error"],
        "fit": h["fit"].to_dict(),
    }


def _axis_fit(
    rows: list[dict[str, Any]], point: Mapping[str, int], var: str, target: str, bootstrap: int, seed: int
) -> dict[str, Any]:
    line = [r for r in rows if on_axis(r, point, var)]
    x = np.array([float(r[var]) for r in line])
    if len(set(x.tolist())) < 3:
        raise ValueError(f"{len(set(x.tolist()))} distinct values of {var}; a power law needs 3")
    values = np.array([float(r[target]) for r in line])
    return {**_power(x, values, bootstrap, seed), "runs": [r["name"] for r in line]}


def _joint_fit(
    rows: list[dict[str, Any]], c: np.ndarray, y: np.ndarray, holdout_frac: float, bootstrap: int, seed: int
) -> dict[str, Any]:
    varying = [v for v in SCALING_VARIABLES if len({r[v] for r in rows}) >= 2]
    if not varying:
        raise ValueError("no variable takes two values")
    variables = {v: np.array([float(r[v]) for r in rows]) for v in varying}
    fit = fit_joint(variables, y, bootstrap=bootstrap, seed=seed)
    out: dict[str, Any] = {**fit.to_dict(), "observed": y, "predicted": fit.predict(variables)}
    try:
        h = holdout_error(variables, y, frac_largest=holdout_frac, order_by=c)
        out["holdout_mask"] = h["holdout_mask"]
        out["holdout_predicted"] = h["predicted"]
        out["holdout_mean_abs_relative_error"] = h["mean_abs_relative_error"]
        out["holdout_max_abs_relative_error"] = h["max_abs_relative_error"]
    except ValueError as exc:
        out["holdout_skipped"] = str(exc)
    return out


def _check_fit_options(meta: Mapping[str, Any], out: Path, target: str, compute: str, bootstrap: int) -> None:
    if meta["kind"] != "scaling":
        raise ValueError(f"mmcr fit needs a scaling sweep; {out} holds a {meta['kind']!r} sweep.")
    if target == "loss":
        raise ValueError(
            "target 'loss' cannot be fitted: the MMCR loss -||C||_* is negative and its optimum "
            "sqrt(B min(B, D)) changes with B and D; fit a PPE (ppe or val_ppe)."
        )
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}.")
    if compute not in COMPUTES:
        raise ValueError(f"compute must be one of {', '.join(COMPUTES)}; got {compute!r}.")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0; got {bootstrap}.")


def fit_sweep(
    sweep_dir: str | Path,
    *,
    target: str = "ppe",
    compute: str = "flops",
    bootstrap: int = 200,
    holdout_frac: float = 0.2,
    seed: int = 0,
    log: Log = print_line,
) -> dict[str, Any]:
    """Fit scaling laws to a scaling sweep's results; write fit.json, fit.md and figures.

    The fits are those of the module docstring; a fit without enough runs is recorded as
    ``{"skipped": reason}``.

    Raises:
        ValueError: not a scaling sweep, an unknown target or compute, or no usable runs.
    """
    out = Path(sweep_dir)
    meta = load_meta(out)
    _check_fit_options(meta, out, target, compute, bootstrap)
    spec = SweepSpec.from_dict(meta["spec"])
    rows = [r for r in read_results(out) if r.get(target) is not None and float(r[target]) > 0]
    if not rows:
        raise ValueError(f"{out / RESULTS_FILE} holds no runs with a positive {target}.")
    rows.sort(key=lambda r: (r[compute], r["name"]))
    c = np.array([float(r[compute]) for r in rows])
    y = np.array([float(r[target]) for r in rows])
    result: dict[str, Any] = {
        "target": target,
        "compute": compute,
        "compute_convention": FLOPS_CONVENTION,
        "confidence": 0.95,
        "bootstrap": bootstrap,
        "holdout_frac": holdout_frac,
        "runs": [r["name"] for r in rows],
        "compute_fit": _attempt(lambda: _power(c, y, bootstrap, seed)),
        "holdout": _attempt(lambda: _holdout(c, y, holdout_frac)),
        "axis_fits": {
            var: _attempt(functools.partial(_axis_fit, rows, spec.point, var, target, bootstrap, seed))
            for var in SCALING_VARIABLES
            if var in spec.axes
        },
        "joint_fit": _attempt(lambda: _joint_fit(rows, c, y, holdout_frac, bootstrap, seed)),
    }
    write_json(out / FIT_FILE, result)
    stored: dict[str, Any] = read_json(out / FIT_FILE)
    figures = fit_figures(out, stored, read_results(out))
    lines = [f"# Scaling-law fits of {out}", "", *fit_markdown_lines(stored), ""]
    lines += ["Figures: " + ", ".join(p.name for p in figures.values()), ""]
    write_text(out / FIT_MD, "\n".join(lines))
    for text in fit_markdown_lines(stored)[:-2]:
        log(text)
    log(f"wrote {out / FIT_FILE}, {out / FIT_MD} and {len(figures)} figures")
    return stored


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
