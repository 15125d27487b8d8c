"""A scaling study designed to predict: fit on small compute, predict larger compute and unseen cells.

A scaling sweep with a ``[design]`` (:mod:`mmcr.experiments.spec`) trains every cell
(B, D, K) at every number of steps S of a geometric grid, over several seeds. ``mmcr fit``
on it (:func:`predictive_study`) then tests the laws of :mod:`mmcr.analysis.scaling_law` as
predictions, not as descriptions:

- **the fit set**: every cell but the held-out ones, at S <= S0, where S0 is the largest
  step count at most ``max S / fit_factor`` (S0 = 100 for a grid up to 800);
- **held out, larger compute**: the fitted cells at S >= 4 S0 (4-8x the compute of the
  fit's largest run in that cell); S0 < S < 4 S0 is reported apart ("2x");
- **held out, unseen cells**: whole cells left out of the fit (by default, on each side of
  the P = D ridge, the cell nearest the middle of that side's cells in log B, log D, log
  K), at every S.

The observed PPE of a point is its mean over seeds; the seed-to-seed spread is reported as
the noise floor no law can beat. Every form is fitted on the fit set and scored by the
median relative error over all held-out points; of the forms within one percentage point
(:data:`PARSIMONY`) of the lowest, the one with the fewest parameters is kept and refitted
on every run and stored for ``mmcr fit DIR --predict ...``
(:func:`predict_point`). CIs of the errors come from the fit's cluster bootstrap (one
cluster per (cell, seed) training series).

Files: ``OUT/prediction.json``, ``OUT/prediction.md`` and the figures
``predict_parity.png``, ``predict_curves.png``, ``predict_residuals.png``,
``predict_exponents.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.analysis.scaling_law import FORMS, LawFit, fit_law, ideal_floor, relative_errors, steps_to_reach
from mmcr.experiments.results import TARGETS, fmt, load_meta, read_results
from mmcr.experiments.spec import Log, PlannedRun, SweepSpec, cell_name, print_line, run_config
from mmcr.records import read_json, write_json, write_text

__all__ = ["PREDICTION_FILE", "parse_point", "predict_point", "predictive_study"]

PREDICTION_FILE = "prediction.json"
PREDICTION_MD = "prediction.md"
_SETS = {
    "compute_4_8x": "fitted cells at 4-8x the fit's compute (S >= 4 S0)",
    "unseen_cells": "cells left out of the fit, every S",
    "compute_2x": "fitted cells at S0 < S < 4 S0 (not in the headline)",
}
_HEADLINE_SETS = ("compute_4_8x", "unseen_cells")
#: Forms whose median hold-out error is within this of the lowest count as equally good; the
#: one with the fewest parameters among them is kept (a simpler law extrapolates more safely).
PARSIMONY = 0.01
_POINT_KEYS = ("steps", "batch_size", "projector_dim", "num_views")


def _variables(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("steps", "batch_size", "projector_dim", "num_views", "sample_views", "flops")
    return {k: np.array([float(r[k]) for r in rows]) for k in keys}


def _default_holdout_cells(cells: Sequence[Mapping[str, int]]) -> list[str]:
    """Per side of B = D, the cell nearest the middle of that side's cells (log B, D, K)."""
    chosen = []
    for below in (False, True):
        side = [c for c in cells if (c["batch_size"] < c["projector_dim"]) == below]
        if len(side) < 3:
            continue  # too few to leave one out and still span the side
        logs = np.log2([[c["batch_size"], c["projector_dim"], c["num_views"]] for c in side])
        dist = np.sum((logs - logs.mean(axis=0)) ** 2, axis=1)
        order = sorted(
            range(len(side)),
            key=lambda i: (round(float(dist[i]), 9), side[i]["batch_size"] * side[i]["num_views"]),
        )
        chosen.append(cell_name(side[order[0]]))
    return chosen


def _points(rows: Sequence[Mapping[str, Any]], target: str) -> list[dict[str, Any]]:
    """One point per (cell, S): the seed mean and spread of ``target``."""
    by_key: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_key.setdefault((cell_name(r), int(r["steps"])), []).append(r)
    points = []
    for (cell, steps), group in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        values = np.array([float(g[target]) for g in group])
        first = group[0]
        points.append(
            {
                "cell": cell,
                "steps": steps,
                "batch_size": int(first["batch_size"]),
                "projector_dim": int(first["projector_dim"]),
                "num_views": int(first["num_views"]),
                "sample_views": float(first["sample_views"]),
                "flops": float(first["flops"]),
                "observed": float(values.mean()),
                "seed_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                "seeds": len(values),
            }
        )
    return points


def _error_stats(pred: np.ndarray, obs: np.ndarray, floor: np.ndarray, reps: np.ndarray) -> dict[str, Any]:
    err = relative_errors(pred, obs)
    err_x = relative_errors(pred, obs, floor)
    out: dict[str, Any] = {
        "n": len(obs),
        "median": float(np.median(err)),
        "worst": float(np.max(err)),
        "median_excess": float(np.median(err_x)),
        "worst_excess": float(np.max(err_x)),
    }
    if len(reps):
        for key, values, fn in (
            ("median", reps, np.median),
            ("worst", reps, np.max),
        ):
            stats = [float(fn(relative_errors(r, obs))) for r in values]
            stats_x = [float(fn(relative_errors(r, obs, floor))) for r in values]
            out[f"{key}_ci"] = [float(v) for v in np.percentile(stats, [2.5, 97.5])]
            out[f"{key}_excess_ci"] = [float(v) for v in np.percentile(stats_x, [2.5, 97.5])]
    return out


def _design_rows(
    out: Path, meta: Mapping[str, Any], spec: SweepSpec, target: str, fit_factor: int
) -> list[dict[str, Any]]:
    """The finished design runs with a ``target``, after the study's checks."""
    if meta["kind"] != "scaling" or not spec.cells:
        raise ValueError(
            f"{out} is not a designed scaling sweep ([design] cells and steps); use mmcr fit without it."
        )
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}.")
    if fit_factor < 2:
        raise ValueError(f"fit_factor must be >= 2; got {fit_factor}.")
    rows = [
        r for r in read_results(out) if r.get(target) is not None and "cell:" in ",".join(r.get("groups", []))
    ]
    if len(rows) < 10:
        raise ValueError(f"{out} has {len(rows)} finished design runs; the study needs at least 10.")
    return rows


def _set_of(cell: str, steps: int, held: Sequence[str], s0: int) -> str:
    """The set a (cell, S) point belongs to: ``fit`` or one of :data:`_SETS`."""
    if cell in held:
        return "unseen_cells"
    if steps <= s0:
        return "fit"
    return "compute_4_8x" if steps >= 4 * s0 else "compute_2x"


def _fit_data(
    rows: Sequence[Mapping[str, Any]], floors: Mapping[str, float], target: str
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[str]]:
    """A law's inputs from runs: variables, floors, targets, and bootstrap clusters (cell, seed)."""
    return (
        _variables(rows),
        np.array([floors[cell_name(r)] for r in rows]),
        np.array([float(r[target]) for r in rows]),
        [f"{cell_name(r)}_s{r['seed']}" for r in rows],
    )


def _noise(points: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The seed-to-seed spread relative to the seed mean: of one run and of the mean itself."""
    spread = [(p["seed_std"] / p["observed"], p["seeds"]) for p in points if p["seeds"] > 1]
    if not spread:
        return {"median_relative_seed_std": None, "median_relative_std_of_seed_mean": None}
    return {
        "median_relative_seed_std": float(np.median([r for r, _ in spread])),
        "median_relative_std_of_seed_mean": float(np.median([r / math.sqrt(n) for r, n in spread])),
    }


def _scores(law: LawFit, points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The law's errors on each held-out set and on the headline sets together."""
    scores: dict[str, Any] = {}
    for set_name in (*_SETS, "headline"):
        wanted = _HEADLINE_SETS if set_name == "headline" else (set_name,)
        chosen = [p for p in points if p["set"] in wanted]
        if not chosen:
            continue
        pv = _variables(chosen)
        pf = np.array([p["floor"] for p in chosen])
        obs = np.array([p["observed"] for p in chosen])
        scores[set_name] = _error_stats(law.predict(pv, pf), obs, pf, law.replicates(pv, pf))
    return scores


def _choose(forms: Mapping[str, Any]) -> str:
    """Of the forms within :data:`PARSIMONY` of the lowest median hold-out error, the one with
    the fewest parameters (then the lower error)."""
    scored = {
        k: v["scores"]["headline"]["median"] for k, v in forms.items() if "headline" in v.get("scores", {})
    }
    if not scored:
        raise ValueError(
            "no law could be fitted and scored: "
            + "; ".join(f"{k}: {v.get('skipped')}" for k, v in forms.items())
        )
    lowest = min(scored.values())
    near = [k for k, median in scored.items() if median <= lowest + PARSIMONY]
    return min(near, key=lambda k: (len(FORMS[k].regressors), scored[k]))


def predictive_study(
    sweep_dir: str | Path,
    *,
    target: str = "ppe",
    fit_factor: int = 8,
    holdout_cells: Sequence[str] | None = None,
    bootstrap: int = 500,
    seed: int = 0,
    floor_trials: int = 64,
    log: Log = print_line,
) -> dict[str, Any]:
    """Fit every law on the fit set, score it on the held-out sets, keep the best; write the report.

    Raises:
        ValueError: not a designed scaling sweep, too few finished runs, unknown held-out
            cells, or an unknown target.
    """
    out = Path(sweep_dir)
    meta = load_meta(out)
    spec = SweepSpec.from_dict(meta["spec"])
    rows = _design_rows(out, meta, spec, target, fit_factor)
    cells = [cell_name(c) for c in spec.cells]
    held = list(holdout_cells) if holdout_cells is not None else _default_holdout_cells(spec.cells)
    unknown = sorted(set(held) - set(cells))
    if unknown:
        raise ValueError(
            f"held-out cell(s) {', '.join(unknown)} are not cells of the sweep ({', '.join(cells)})."
        )
    max_steps = max(spec.design_steps)
    fit_steps = [s for s in spec.design_steps if s <= max_steps / fit_factor]
    if not fit_steps:
        raise ValueError(f"no step count is <= {max_steps}/{fit_factor}; lower fit_factor.")
    s0 = max(fit_steps)
    floors = {
        cell_name(c): ideal_floor(c["batch_size"], c["projector_dim"], trials=floor_trials)
        for c in spec.cells
    }
    log("ideal floors f(B, D): " + ", ".join(f"{k} {v:.4f}" for k, v in floors.items()))

    fit_rows = [r for r in rows if _set_of(cell_name(r), int(r["steps"]), held, s0) == "fit"]
    fit_vars, fit_floor, fit_y, groups = _fit_data(fit_rows, floors, target)
    points = _points(rows, target)
    for p in points:
        p["floor"] = floors[p["cell"]]
        p["set"] = _set_of(p["cell"], p["steps"], held, s0)
    laws: dict[str, LawFit] = {}
    forms: dict[str, Any] = {}
    for name, form in FORMS.items():
        try:
            laws[name] = fit_law(
                form, fit_vars, fit_y, fit_floor, groups=groups, bootstrap=bootstrap, seed=seed
            )
        except ValueError as exc:
            forms[name] = {"skipped": str(exc)}
            continue
        forms[name] = {"law": laws[name].to_dict(), "scores": _scores(laws[name], points)}
    best = _choose(forms)
    all_vars, all_floor, all_y, all_groups = _fit_data(rows, floors, target)
    final = fit_law(best, all_vars, all_y, all_floor, groups=all_groups, bootstrap=bootstrap, seed=seed)
    point_vars = _variables(points)
    point_floor = np.array([p["floor"] for p in points])
    for p, holdout_fit, refit in zip(
        points,
        laws[best].predict(point_vars, point_floor),
        final.predict(point_vars, point_floor),
        strict=True,
    ):
        p["predicted_holdout_fit"] = float(holdout_fit)
        p["predicted_final"] = float(refit)
    result: dict[str, Any] = {
        "kind": "scaling-prediction",
        "target": target,
        "sweep": str(out),
        "cells": cells,
        "design_steps": list(spec.design_steps),
        "seeds": sorted({int(r["seed"]) for r in rows}),
        "finished_runs": len(rows),
        "planned_runs": len(meta.get("runs", [])),
        "fit_factor": fit_factor,
        "fit_max_steps": s0,
        "holdout_cells": held,
        "sets": _SETS,
        "floors": floors,
        "floor_trials": floor_trials,
        "noise": _noise(points),
        "bootstrap": bootstrap,
        "forms": forms,
        "best_form": best,
        "law": final.to_dict(),
        "points": points,
        "flops_per_view": {str(int(r["projector_dim"])): float(r["forward_flops_per_view"]) for r in rows},
        "base": spec.to_dict(),
    }
    write_json(out / PREDICTION_FILE, result)
    figures = prediction_figures(out, result)
    write_text(out / PREDICTION_MD, "\n".join(markdown(result, figures)) + "\n")
    for line in headline(result):
        log(line)
    log(f"wrote {out / PREDICTION_FILE}, {out / PREDICTION_MD} and {len(figures)} figures")
    return result


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _ci(stats: Mapping[str, Any], key: str) -> str:
    ci = stats.get(f"{key}_ci")
    return f"{_pct(stats[key])} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else _pct(stats[key])


def headline(result: Mapping[str, Any]) -> list[str]:
    """The study's result in a few lines."""
    best = result["best_form"]
    s = result["forms"][best]["scores"]["headline"]
    lines = [
        f"law kept by hold-out error (the fewest parameters within {100 * PARSIMONY:.0f} point of the "
        f"lowest median): {best}: {FORMS[best].formula}",
        f"held out ({s['n']} points: {', '.join(_SETS[k] for k in _HEADLINE_SETS)}): median relative "
        f"error of the PPE {_ci(s, 'median')}, worst {_ci(s, 'worst')}; of the excess over the floor: "
        f"median {_ci(s, 'median_excess')}, worst {_ci(s, 'worst_excess')}",
    ]
    target = 0.05
    verdict = "reached" if s["median"] < target else f"missed by {_pct(s['median'] - target)}"
    lines.append(
        f"target median < 5 %: {verdict}; seed-to-seed noise floor "
        f"{_pct(result['noise']['median_relative_seed_std'])} (one run)"
    )
    return lines


def markdown(result: Mapping[str, Any], figures: Mapping[str, Path]) -> list[str]:
    """prediction.md."""
    best = result["best_form"]
    lines = [
        f"# A scaling law that predicts: {result['sweep']}",
        "",
        f"{result['finished_runs']} of {result['planned_runs']} runs; cells {', '.join(result['cells'])}; "
        f"steps {result['design_steps']}; seeds {result['seeds']}; target {TARGETS[result['target']]} "
        "(mean of seeds per point).",
        "",
        f"Fit set: the cells other than {', '.join(result['holdout_cells'])}, "
        f"at S <= {result['fit_max_steps']}. "
        "Held out: " + "; ".join(f"**{k}**: {v}" for k, v in result["sets"].items()) + ".",
        "",
        *headline(result),
        "",
        "## Every form, fitted on the fit set and scored on the held-out points",
        "",
        "| form | law | median error (PPE) | worst | median error (excess) "
        "| 4-8x compute | unseen cells | 2x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["forms"].items():
        if "scores" not in entry:
            lines.append(f"| {name} | {FORMS[name].formula} | skipped: {entry['skipped']} | | | | | |")
            continue
        sc = entry["scores"]
        h = sc["headline"]
        cols = [
            _pct(sc[k]["median"]) if k in sc else "n/a"
            for k in ("compute_4_8x", "unseen_cells", "compute_2x")
        ]
        mark = " (best)" if name == best else ""
        lines.append(
            f"| {name}{mark} | {FORMS[name].formula} | {_ci(h, 'median')} | {_ci(h, 'worst')} | "
            f"{_ci(h, 'median_excess')} | {' | '.join(cols)} |"
        )
    lines += ["", f"## The law refitted on every run ({best}), for planning", ""]
    lines += ["| parameter | value | 95 % CI |", "|---|---|---|"]
    for e in result["law"]["exponents"].values():
        ci = f"[{e['ci_low']:.3g}, {e['ci_high']:.3g}]" if "ci_low" in e else ""
        lines.append(f"| {e['label']} | {e['value']:.4g} | {ci} |")
    lines += [
        "",
        f"Residual scatter of one run around the law: {result['law']['residual_std']:.3f} in log excess.",
        "",
        "## Points (seed means)",
        "",
        "| cell | S | set | observed | seed std | floor | predicted (hold-out fit) | error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        err = abs(p["predicted_holdout_fit"] - p["observed"]) / p["observed"]
        lines.append(
            f"| {p['cell']} | {p['steps']} | {p['set']} | {p['observed']:.4f} | {fmt(p.get('seed_std'))} | "
            f"{p['floor']:.4f} | {p['predicted_holdout_fit']:.4f} | {_pct(err)} |"
        )
    lines += ["", "Figures: " + ", ".join(Path(f).name for f in figures.values())]
    return lines


def prediction_figures(out: Path, result: Mapping[str, Any]) -> dict[str, Path]:
    """Observed vs predicted, PPE curves with the law, residuals, exponents with CIs."""
    from mmcr.analysis.plots import plot_law_curves, plot_law_exponents, plot_law_parity, plot_law_residuals

    points = result["points"]
    holdout = result["forms"][result["best_form"]]["law"]
    return {
        "parity": plot_law_parity(points, out / "predict_parity.png"),
        "curves": plot_law_curves(points, LawFit.from_dict(holdout), out / "predict_curves.png"),
        "residuals": plot_law_residuals(points, out / "predict_residuals.png"),
        "exponents": plot_law_exponents(
            {"hold-out fit": holdout["exponents"], "every run": result["law"]["exponents"]},
            out / "predict_exponents.png",
        ),
    }


def parse_point(text: str) -> dict[str, int]:
    """``steps=4000,batch_size=512,projector_dim=128,num_views=4`` as a dict (all four keys)."""
    point: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _POINT_KEYS:
            raise ValueError(f"--predict takes {'=..,'.join(_POINT_KEYS)}=..; got {part!r}.")
        try:
            point[key] = int(value)
        except ValueError:
            raise ValueError(f"--predict {key} must be an integer; got {value!r}.") from None
        if point[key] < (2 if key == "batch_size" else 1):
            raise ValueError(f"--predict {key} must be positive (batch_size >= 2); got {point[key]}.")
    missing = [k for k in _POINT_KEYS if k not in point]
    if missing:
        raise ValueError(f"--predict lacks {', '.join(missing)} (give all of {', '.join(_POINT_KEYS)}).")
    return point


def _flops_per_view(result: Mapping[str, Any], projector_dim: int) -> float:
    """Forward FLOPs of one view at this D: stored for the sweep's D, else counted anew."""
    stored = result.get("flops_per_view", {})
    if str(projector_dim) in stored:
        return float(stored[str(projector_dim)])
    from mmcr.experiments.sweep import forward_flops

    spec = SweepSpec.from_dict(result["base"])
    coords = {"steps": 1, "batch_size": 2, "projector_dim": projector_dim, "num_views": 2, "seed": 0}
    cfg = run_config(spec, PlannedRun("predict", coords), Path("/nonexistent-predict"))
    return float(forward_flops(cfg))


def predict_point(
    sweep_dir: str | Path,
    point: Mapping[str, int],
    reach: Sequence[float] | None = None,
    log: Log = print_line,
) -> dict[str, Any]:
    """The stored law's PPE at ``point`` with its 95 % intervals, and the compute to reach targets.

    ``reach``: target PPEs; default: the PPE whose excess over the floor is half and a
    quarter of the predicted one.
    """
    out = Path(sweep_dir)
    path = out / PREDICTION_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `mmcr fit {out}` first (it fits the law).")
    result = read_json(path)
    law = LawFit.from_dict(result["law"])
    B, D, K, S = (int(point[k]) for k in ("batch_size", "projector_dim", "num_views", "steps"))
    floor = ideal_floor(B, D, trials=int(result.get("floor_trials", 64)))
    per_view = _flops_per_view(result, D)
    flops_per_step = 3.0 * per_view * B * K
    variables = {
        "steps": np.array([float(S)]),
        "batch_size": np.array([float(B)]),
        "projector_dim": np.array([float(D)]),
        "num_views": np.array([float(K)]),
        "sample_views": np.array([float(B * K * S)]),
        "flops": np.array([flops_per_step * S]),
    }
    f = np.array([floor])
    ppe = float(law.predict(variables, f)[0])
    mean_lo, mean_hi = (float(v[0]) for v in law.interval(variables, f, one_run=False))
    run_lo, run_hi = (float(v[0]) for v in law.interval(variables, f, one_run=True))
    base = float(law.floor_of(f, 1)[0])
    targets = list(reach) if reach else [base + (ppe - base) / 2, base + (ppe - base) / 4]
    plans = []
    for t in targets:
        steps = steps_to_reach(
            law, float(t), {"batch_size": B, "projector_dim": D, "num_views": K}, floor, flops_per_step
        )
        plans.append(
            {
                "target_ppe": float(t),
                "steps": steps,
                "sample_views": None if steps is None else steps * B * K,
                "flops": None if steps is None else steps * flops_per_step,
            }
        )
    seen = result["points"]
    ranges = {k: (min(p[k] for p in seen), max(p[k] for p in seen)) for k in _POINT_KEYS}
    outside = [
        f"{k} = {point[k]} (fitted {lo}-{hi})" for k, (lo, hi) in ranges.items() if not lo <= point[k] <= hi
    ]
    side = (
        "B < D" if B < D else ("B = D (the ridge: no law of this study holds there)" if B == D else "B > D")
    )
    answer = {
        "point": dict(point),
        "law": result["best_form"],
        "formula": FORMS[result["best_form"]].formula,
        "ideal_floor": floor,
        "ppe": ppe,
        "mean_interval": [mean_lo, mean_hi],
        "one_run_interval": [run_lo, run_hi],
        "loss": -(1.0 - ppe) * math.sqrt(B * min(B, D)),
        "flops": flops_per_step * S,
        "sample_views": B * K * S,
        "reach": plans,
        "extrapolated": outside,
        "side": side,
    }
    log(f"law {answer['law']}: {answer['formula']}")
    log(f"at S = {S}, B = {B}, D = {D}, K = {K} ({side}): predicted PPE {ppe:.4f}")
    log(
        f"  95 % interval: mean over seeds [{mean_lo:.4f}, {mean_hi:.4f}], "
        f"one run [{run_lo:.4f}, {run_hi:.4f}]"
    )
    log(f"  ideal floor f(B, D) = {floor:.4f}; MMCR loss -||C||_* about {answer['loss']:.2f}")
    log(f"  compute: {answer['flops']:.3g} FLOPs, {answer['sample_views']:.3g} sample-views")
    for plan in plans:
        if plan["steps"] is None:
            log(
                f"  PPE {plan['target_ppe']:.4f}: not reachable at this (B, D, K) by the law "
                "(at or below its floor)"
            )
        else:
            log(
                f"  PPE {plan['target_ppe']:.4f} needs about {plan['steps']:.0f} steps "
                f"({plan['flops']:.3g} FLOPs, {plan['sample_views']:.3g} sample-views)"
            )
    if outside:
        log("  warning: outside the fitted range in " + "; ".join(outside) + ": an extrapolation")
    return answer
