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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.analysis.fit import fit_joint, fit_power_law, holdout_error
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
from mmcr.experiments.scaling import fit_figures, fit_markdown_lines, on_axis
from mmcr.experiments.spec import SCALING_VARIABLES, Log, SweepSpec, print_line
from mmcr.records import read_json, write_json, write_text

__all__ = ["fit_sweep"]


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
