"""summary.md of a double-descent sweep: the peak table and the (P, D) grids, from summary.json."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.experiments.results import fmt

__all__ = ["double_descent_markdown"]


def _grid_markdown(title: str, Ps: Sequence[int], Ds: Sequence[int], values: Any) -> list[str]:
    """A (P, D) grid as a markdown table, rows P and columns D, the ridge P = D in bold."""
    array = np.asarray(values, dtype=np.float64)
    lines = [f"**{title}** (rows: P, columns: D)", "", "| P \\ D | " + " | ".join(str(d) for d in Ds) + " |"]
    lines.append("|---" * (len(Ds) + 1) + "|")
    for i, P in enumerate(Ps):
        cells = [fmt(v) if math.isfinite(v) else "-" for v in array[i]]
        marked = [f"**{c}**" if P == D else c for c, D in zip(cells, Ds, strict=True)]
        lines.append(f"| {P} | " + " | ".join(marked) + " |")
    return [*lines, ""]


def _peak_rows(summary: Mapping[str, Any]) -> list[str]:
    lines = [
        "| D | measured peak P (train) | measured peak P (val) | peak P of the untrained network "
        "(control) | theory peak P | verdict (train) |",
        "|---|---|---|---|---|---|",
    ]
    control = summary.get("control_init")
    init_rows = control["peaks_by_D"] if control else [{"peak_P": "-"}] * len(summary["peaks_by_D"])
    for row, row_val, row_init in zip(
        summary["peaks_by_D"], summary["peaks_by_D_val"], init_rows, strict=True
    ):
        edge = " (grid edge)" if row.get("at_edge") else ""
        lines.append(
            f"| {row['D']} | {row['peak_P']}{edge} | {row_val['peak_P']} | {row_init['peak_P']} | "
            f"{row['theory_peak_P']} | {row['verdict']} |"
        )
    return lines


def double_descent_markdown(summary: Mapping[str, Any]) -> str:
    """The text of summary.md, from the summary dict of a double-descent report."""
    Ps, Ds = summary["Ps"], summary["Ds"]
    lines = [
        "# Double descent of the MMCR pretraining percent error over (P, D)",
        "",
        summary["statement"],
        "",
        f"Runs finished: {summary['finished_runs']} of {summary['planned_runs']}; data set "
        f"{summary['dataset']}, encoder {summary['encoder']} (width {summary['encoder_width']}), "
        f"K = {summary['num_views']} views, budget {summary['budget']}, seeds {summary['seeds']}; "
        f"total run time {summary['total_wall_s'] / 60:.1f} min.",
        "",
        *_peak_rows(summary),
    ]
    corr = summary["correlation_with_theory"]
    if corr["pearson"] is not None:
        lines += [
            "",
            f"Correlation of the measured train-batch PPE with the theory over the grid: Pearson "
            f"{corr['pearson']:.3f}, Spearman {corr['spearman']:.3f}.",
        ]
    lines += [""]
    lines += _grid_markdown("Measured train-batch PPE", Ps, Ds, summary["measured_train_ppe"])
    lines += _grid_markdown("Measured validation PPE", Ps, Ds, summary["measured_val_ppe"])
    if summary.get("measured_init_ppe") is not None:
        lines += _grid_markdown(
            "Control: untrained network, validation protocol", Ps, Ds, summary["measured_init_ppe"]
        )
    lines += _grid_markdown(
        f"Theory: ideal embeddings, Monte Carlo ({summary['theory_trials']} trials)",
        Ps,
        Ds,
        summary["theory_ppe"],
    )
    lines += _grid_markdown(
        "Raw loss -||C||_* (not comparable across cells)", Ps, Ds, summary["measured_loss"]
    )
    lines += ["Notes:", ""] + [f"- {note}" for note in summary["notes"]] + [""]
    lines += ["Figures: " + ", ".join(Path(p).name for p in summary["figures"].values()), ""]
    return "\n".join(lines)
