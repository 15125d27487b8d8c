"""Double descent of the MMCR pretraining percent error over batch size P and dimension D.

Schaeffer et al. (2024), arXiv 2406.09366: the PPE of ideal (aligned, uniform) embeddings
peaks on the ridge P = D. A double-descent sweep trains one short run per (P, D, seed)
(:mod:`mmcr.experiments.sweep`); this module adds the control of each cell's untrained
network (:func:`init_ppe`), the Monte-Carlo theory on the same grid, and the report: where
the measured PPE peaks for each D, how sharp the ridge is, figures, summary.json and
summary.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.analysis.plots import plot_ppe_curves, plot_ppe_heatmap
from mmcr.analysis.theory import PPEGrid, ppe_grid
from mmcr.build import Data, augment_config, build_network, load_data
from mmcr.config import PretrainConfig
from mmcr.data import MultiViewAugment
from mmcr.evaluation.embed import batched_geometry, multiview_embeddings
from mmcr.experiments.double_descent_summary import double_descent_markdown
from mmcr.experiments.results import SUMMARY_JSON, SUMMARY_MD, THEORY_FILE, mean
from mmcr.experiments.ridge import cell_means, correlations, peak_table, ridge_contrast
from mmcr.experiments.spec import Log, SweepSpec
from mmcr.records import write_json, write_text

__all__ = ["double_descent_report", "ensure_theory_grid", "init_ppe"]


def init_ppe(cfg: PretrainConfig, data_cache: dict[tuple[Any, ...], Data] | None = None) -> float:
    """PPE of the run's network at initialisation, measured like the validation monitor.

    The control of a double-descent sweep: the network of ``cfg`` (seeded with ``cfg.seed``,
    not trained, eval mode) embeds ``monitor_size`` held-out images in ``num_views`` fresh
    views, and the PPE is averaged over chunks of ``batch_size`` images. ``data_cache``
    (a dict kept across calls) saves loading the same data set for every run.
    """
    key = (cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_fraction, cfg.seed, cfg.synthetic_size)
    cache = {} if data_cache is None else data_cache
    if key not in cache:
        cache[key] = load_data(cfg)
    data = cache[key]
    torch.manual_seed(cfg.seed)
    network = build_network(cfg, data.channels).eval()
    augment = MultiViewAugment(augment_config(cfg))
    P, K = int(cfg.batch_size), int(cfg.num_views)
    images = data.val.images if len(data.val) >= P else data.memory.images
    images = images[: max(int(cfg.monitor_size), P)]
    images = images[: images.shape[0] // P * P]  # whole chunks of P images only
    if images.shape[0] == 0:
        return math.nan
    # one chunk of P images per draw of the generator, as the monitor does
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    z = multiview_embeddings(network, images, augment, K, generator=generator, batch_size=P)
    return float(batched_geometry(z, P)["ppe"])


def ensure_theory_grid(out: Path, Ps: Sequence[int], Ds: Sequence[int], trials: int, seed: int) -> PPEGrid:
    """Load OUT/theory_grid.json if it covers (Ps, Ds) with these settings, else compute it."""
    path = out / THEORY_FILE
    if path.exists():
        grid = PPEGrid.load_json(path)
        if (
            set(Ps) <= {int(p) for p in grid.Ps}
            and set(Ds) <= {int(d) for d in grid.Ds}
            and grid.trials >= trials
        ):
            return grid
    grid = ppe_grid(sorted(set(Ps)), sorted(set(Ds)), trials=trials, seed=seed, progress=False)
    grid.save_json(path)
    return grid


def _subgrid(grid: PPEGrid, Ps: Sequence[int], Ds: Sequence[int]) -> PPEGrid:
    pi = [int(np.where(grid.Ps == P)[0][0]) for P in Ps]
    di = [int(np.where(grid.Ds == D)[0][0]) for D in Ds]
    ix = np.ix_(pi, di)
    return PPEGrid(
        Ps=grid.Ps[pi],
        Ds=grid.Ds[di],
        mean=grid.mean[ix],
        std=grid.std[ix],
        ci_half_width=grid.ci_half_width[ix],
        mp_limit=grid.mp_limit[ix],
        trials=grid.trials,
        seed=grid.seed,
        confidence=grid.confidence,
    )


@dataclass
class _Cells:
    """The grid's cells: measured means over seeds (rows P, columns D) and the theory."""

    Ps: list[int]
    Ds: list[int]
    grid: PPEGrid
    train: np.ndarray
    val: np.ndarray
    loss: np.ndarray
    init: np.ndarray

    @property
    def theory(self) -> np.ndarray:
        return self.grid.mean

    @property
    def has_init(self) -> bool:
        return bool(np.isfinite(self.init).any())


def _cells(out: Path, spec: SweepSpec, results: list[dict[str, Any]]) -> _Cells:
    Ps = sorted({int(p) for p in spec.Ps} | {int(r["P"]) for r in results})
    Ds = sorted({int(d) for d in spec.Ds} | {int(r["D"]) for r in results})
    full_grid = ensure_theory_grid(out, Ps, Ds, spec.theory_trials, spec.theory_seed)
    return _Cells(
        Ps,
        Ds,
        _subgrid(full_grid, Ps, Ds),
        *(cell_means(results, Ps, Ds, key) for key in ("ppe", "val_ppe", "loss", "init_ppe")),
    )


def _figures(out: Path, cells: _Cells, ppe_last: int) -> dict[str, Path]:
    """Heatmaps (theory | measured) and PPE against P and against D."""
    Ps, Ds, grid = cells.Ps, cells.Ds, cells.grid
    panels = [
        (f"train-batch PPE (mean of last {ppe_last} logged steps)", cells.train),
        ("validation PPE", cells.val),
    ]
    if cells.has_init:
        panels.append(("control: untrained network (validation protocol)", cells.init))
    heatmaps = [
        ("heatmap", "ppe_heatmap.png", cells.train, f"measured train-batch PPE (last {ppe_last} logs)"),
        ("heatmap_val", "ppe_heatmap_val.png", cells.val, "measured validation PPE"),
    ]
    figures = {
        name: plot_ppe_heatmap(
            grid, out / file, measured={"Ps": Ps, "Ds": Ds, "values": values, "label": label}
        )
        for name, file, values, label in heatmaps
    }
    figures["ppe_vs_P"] = plot_ppe_curves(
        Ps, Ds, panels, cells.theory, out / "ppe_vs_P.png", "batch size P", "D"
    )
    figures["ppe_vs_D"] = plot_ppe_curves(
        Ds,
        Ps,
        [(title, values.T) for title, values in panels],
        cells.theory.T,
        out / "ppe_vs_D.png",
        "embedding dimension D",
        "P",
    )
    if cells.has_init:
        figures["heatmap_init"] = plot_ppe_heatmap(
            grid,
            out / "ppe_heatmap_init.png",
            measured={"Ps": Ps, "Ds": Ds, "values": cells.init, "label": "control: untrained network"},
        )
    return figures


def _peaks(cells: _Cells) -> dict[str, Any]:
    """Peak tables: per D (train, validation, control) and per P (roles of P and D swapped)."""
    Ps, Ds, theory = cells.Ps, cells.Ds, cells.theory
    by_P = peak_table(Ds, Ps, cells.train.T, theory.T, names=("D", "P"))
    for row in by_P:
        row["P"] = row.pop("D")
        row["peak_D"] = row.pop("peak_P")
        row["theory_peak_D"] = row.pop("theory_peak_P")
    return {
        "by_D": peak_table(Ps, Ds, cells.train, theory),
        "by_D_val": peak_table(Ps, Ds, cells.val, theory),
        "by_D_init": peak_table(Ps, Ds, cells.init, theory) if cells.has_init else None,
        "by_P": by_P,
    }


def _peak_statement(peaks: Mapping[str, Any]) -> str:
    in_range = [
        r for r in peaks["by_D"] if r["verdict"] not in ("ridge outside the P range", "not enough runs")
    ]
    n_at = sum(r["verdict"] == "at P = D" for r in in_range)
    n_near = sum(r["verdict"] != "away from P = D" for r in in_range)
    n_at_val = sum(r["verdict"] == "at P = D" for r in peaks["by_D_val"])
    n_at_by_P = sum(r["verdict"] == "at D = P" for r in peaks["by_P"])
    return (
        f"Measured train-batch PPE peaks at P = D for {n_at} of {len(in_range)} embedding dimensions "
        f"(within a factor 2 of P = D for {n_near}); the validation PPE peaks at P = D for {n_at_val}. "
        f"Read the other way, for {n_at_by_P} of {len(peaks['by_P'])} batch sizes the largest PPE is at "
        "D = P. The theory for ideal embeddings peaks at P = D for every D (ridge height "
        "1 - 8/(3 pi) = 0.151)."
    )


def _control(cells: _Cells, peaks_init: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The untrained-network control: its peaks and what training changed, and its sentence."""
    ridge = np.array([[P == D for D in cells.Ds] for P in cells.Ps])
    ratio = cells.val / cells.init
    on, off = mean(ratio[ridge].tolist()), mean(ratio[~ridge].tolist())
    n_at_init = sum(r["verdict"] == "at P = D" for r in peaks_init)
    control = {
        "peaks_by_D": peaks_init,
        "n_at_ridge": n_at_init,
        "val_over_init_on_ridge": on,
        "val_over_init_off_ridge": off,
    }
    sentence = (
        f" Control: the untrained network's PPE already peaks at P = D for {n_at_init} of "
        f"{len(peaks_init)} D (the normaliser sqrt(P min(P, D)) changes form there), so the "
        "ridge's location alone is no evidence of training; training brought the validation "
        f"PPE to {on:.0%} of its initial value on the ridge and to {off:.0%} off it."
    )
    return control, sentence


def _pct(contrast: Mapping[str, Any]) -> str:
    return f"{contrast['beyond']:.0%} | {contrast['before']:.0%}"


def _contrast(cells: _Cells) -> tuple[dict[str, Any], str]:
    """Ridge contrast of every grid, and the sentence comparing them (empty without validation)."""
    Ps, Ds = cells.Ps, cells.Ds
    val = ridge_contrast(Ps, Ds, cells.val)
    init = ridge_contrast(Ps, Ds, cells.init) if cells.has_init else None
    theory = ridge_contrast(Ps, Ds, cells.theory)
    contrast = {"train": ridge_contrast(Ps, Ds, cells.train), "val": val, "init": init, "theory": theory}
    if val["beyond"] is None or val["before"] is None:
        return contrast, ""
    parts = [f"{_pct(val)} after training (validation PPE)"]
    if init is not None and None not in (init["beyond"], init["before"]):
        parts.append(f"{_pct(init)} at initialisation")
    parts.append(f"{_pct(theory)} for ideal embeddings")
    sentence = (
        " One octave off the ridge (P = 2D | P = D/2) the PPE is, as a fraction of its value on "
        "the ridge, " + ", ".join(parts) + "."
    )
    return contrast, sentence


def _notes(budget: Mapping[str, int]) -> list[str]:
    text = ", ".join(f"{key} {value}" for key, value in budget.items())
    return [
        "PPE = (sqrt(P min(P,D)) - ||C||_*) / sqrt(P min(P,D)) is comparable across P and D; "
        "the raw loss -||C||_* is not (its optimum sqrt(P min(P,D)) grows with P and D).",
        "ppe: mean train-batch PPE of the last ppe_last logged steps; val_ppe: the validation "
        "monitor at the end (held-out images, fresh views, chunks of P images).",
        "theory: Monte-Carlo PPE of perfectly aligned, uniform embeddings at the same (P, D); "
        "the measured PPE adds the error of imperfect training (excess_over_theory).",
        f"Every run has the same budget ({text}); with a step budget, larger P sees more images.",
    ]


def _log_peaks(log: Log, peaks: Mapping[str, Any]) -> None:
    log(f"{'D':>6} | {'peak P (train)':>14} | {'peak P (val)':>12} | {'theory peak P':>13} | verdict (train)")
    for row, row_val in zip(peaks["by_D"], peaks["by_D_val"], strict=True):
        edge = " (at the grid's edge)" if row.get("at_edge") and row["verdict"] != "at P = D" else ""
        train_peak = "-" if row["peak_P"] is None else str(row["peak_P"])
        val_peak = "-" if row_val["peak_P"] is None else str(row_val["peak_P"])
        log(
            f"{row['D']:>6} | {train_peak:>14} | {val_peak:>12} | {row['theory_peak_P']:>13} | "
            f"{row['verdict']}{edge}"
        )
    if peaks["by_D_init"] is not None:
        log(
            "control (untrained network), peak P per D: "
            + ", ".join(f"D={r['D']}: {r['peak_P']}" for r in peaks["by_D_init"])
        )


def double_descent_report(
    out: Path, meta: Mapping[str, Any], results: list[dict[str, Any]], log: Log
) -> dict[str, Any]:
    """Figures, summary.json and summary.md of a double-descent sweep, from its result lines."""
    spec = SweepSpec.from_dict(meta["spec"])
    cells = _cells(out, spec, results)
    figures = _figures(out, cells, spec.ppe_last)
    peaks = _peaks(cells)
    statement = _peak_statement(peaks)
    control = None
    if peaks["by_D_init"] is not None:
        control, sentence = _control(cells, peaks["by_D_init"])
        statement += sentence
    contrast, sentence = _contrast(cells)
    statement += sentence
    some = results[0]["config"] if results else {}
    summary = {
        "kind": "double-descent",
        "statement": statement,
        "finished_runs": len(results),
        "planned_runs": len(meta.get("runs", [])) or len(results),
        "Ps": cells.Ps,
        "Ds": cells.Ds,
        "seeds": spec.seeds,
        "budget": spec.budget,
        "dataset": some.get("dataset"),
        "encoder": some.get("encoder"),
        "encoder_width": some.get("encoder_width"),
        "num_views": some.get("num_views"),
        "measured_train_ppe": cells.train,
        "measured_val_ppe": cells.val,
        "measured_loss": cells.loss,
        "theory_ppe": cells.theory,
        "theory_trials": cells.grid.trials,
        "excess_over_theory": cells.train - cells.theory,
        "peaks_by_D": peaks["by_D"],
        "peaks_by_D_val": peaks["by_D_val"],
        "peaks_by_P": peaks["by_P"],
        "measured_init_ppe": cells.init if cells.has_init else None,
        "control_init": control,
        "correlation_with_theory": correlations(cells.train, cells.theory),
        "ridge_contrast": contrast,
        "total_wall_s": sum(float(r.get("wall_s") or 0.0) for r in results),
        "notes": _notes(spec.budget),
        "figures": {name: str(path) for name, path in figures.items()},
    }
    write_json(out / SUMMARY_JSON, summary)
    write_text(out / SUMMARY_MD, double_descent_markdown(summary))
    log(statement)
    _log_peaks(log, peaks)
    log(f"wrote {out / SUMMARY_MD} and {len(figures)} figures")
    return summary
