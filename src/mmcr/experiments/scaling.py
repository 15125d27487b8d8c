"""Compute scaling of the MMCR pretraining percent error: the report of a scaling sweep.

A scaling sweep (:mod:`mmcr.experiments.sweep`) trains runs one variable at a time around a
base point (steps S, batch size B, embedding dimension D, views K) and on an optional joint
grid; each result line counts its compute in FLOPs and sample-views. The report draws the
PPE along each axis and against compute and writes summary.json and summary.md, with the
fits of :mod:`mmcr.experiments.scaling_fit` when ``mmcr fit`` has written fit.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmcr.analysis.plots import plot_ppe_vs_compute, plot_scaling_axes
from mmcr.experiments.results import (
    COMPUTES,
    FIT_FILE,
    FLOPS_CONVENTION,
    SUMMARY_JSON,
    SUMMARY_MD,
    fmt,
)
from mmcr.experiments.scaling_fit import fit_figures, fit_headline, fit_markdown_lines, on_axis
from mmcr.experiments.spec import SCALING_VARIABLES, VARIABLE_LABELS, Log, SweepSpec
from mmcr.records import read_json, write_json, write_text

__all__ = ["scaling_report"]

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
        f"Runs finished: {summary['finished_runs']} of {summary['planned_runs']}; base point "
        f"{summary['point']}; total run time {summary['total_wall_s'] / 60:.1f} min.",
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
