"""The objective comparison's results: mean and spread over seeds per method, and the table.

:func:`aggregate` gathers the finished runs' summaries into results.json (budget, model,
protocol, lr search, per-method means and standard deviations, hardware, time), and
:func:`render_table` turns it into table.md.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import torch

from mmcr.data import dataset_info
from mmcr.experiments.compare_plan import (
    LABELS,
    METHODS,
    OBJECTIVE_ARGS,
    SPEC_NAME,
    SUMMARY_NAME,
    CompareOptions,
    Job,
    Plan,
)
from mmcr.objectives.graphs import DEFAULT_TEMPLATE

__all__ = ["aggregate", "render_table"]

# the numbers of a final run averaged over seeds
_AVERAGED = (
    "knn_test_acc",
    "probe_test_acc",
    "effective_rank",
    "ppe",
    "images_per_s",
    "time_per_epoch_s",
    "train_loop_s",
    "eval_s",
)


def _mean_std(values: list[Any]) -> dict[str, float | int | None]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals)}


def _span_s(dirs: list[Path]) -> float | None:
    """Wall time from the first run's launch to the last run's end (file times; includes any pauses)."""
    starts = [(d / SPEC_NAME).stat().st_mtime for d in dirs if (d / SPEC_NAME).exists()]
    ends = [(d / SUMMARY_NAME).stat().st_mtime for d in dirs if (d / SUMMARY_NAME).exists()]
    if not starts or not ends:
        return None
    return max(ends) - min(starts)


def _hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _method_row(
    m: str, chosen: dict[str, float], finals: dict[str, dict[str, Any] | None], final_list: list[Job]
) -> dict[str, Any]:
    """One method's final runs: how many finished, and the mean and std of each number."""
    names = [j.name for j in final_list if j.method == m]
    ok = [r for n in names if (r := finals.get(n)) is not None]
    failed = sum(1 for n in names if n in finals and finals[n] is None)
    row: dict[str, Any] = {
        "label": LABELS[m],
        "objective": METHODS[m][0],
        "num_views": METHODS[m][1],
        "chosen_lr": chosen.get(m),
        "seeds_finished": len(ok),
        "seeds_failed": failed,
        "seeds_not_run": len(names) - len(ok) - failed,
    }
    if m in OBJECTIVE_ARGS:  # what the method is given besides the images (X-CLR: its graph)
        row["objective_args"] = dict(OBJECTIVE_ARGS[m])
    for key in _AVERAGED:
        row[key] = _mean_std([r.get(key) for r in ok])
    row["runs"] = ok
    return row


def aggregate(
    p: Plan,
    options: CompareOptions,
    chosen: dict[str, float],
    search_table: dict[str, list[dict[str, Any]]],
    search_runs: list[dict[str, Any] | None],
    finals: dict[str, dict[str, Any] | None],
    final_list: list[Job],
    elapsed: float,
) -> dict[str, Any]:
    """results.json: the budget, model and protocol shared by every method, and each method's numbers."""
    base = p.base
    methods = {m: _method_row(m, chosen, finals, final_list) for m in p.methods}
    spe, full = p.steps_per_epoch, p.full_steps
    return {
        "benchmark": "compare_objectives",
        "recipe": str(options.config),
        "base_values": p.sets,  # the recipe, with --set overrides
        "budget": {
            "steps": full,
            "batch_size": base.batch_size,
            "steps_per_epoch": spe,
            "epochs": full / spe,
            "images_per_run": full * base.batch_size,
            "views": {m: METHODS[m][1] for m in p.methods},
            "search_steps": p.search_steps,
            "schedule": f"{base.schedule}, warm-up share {base.warmup_epochs / base.epochs:.3g} of each run",
            "optimizer": base.optimizer,
            "weight_decay": base.weight_decay,
            "threads_per_process": options.threads,
            "parallel_processes": options.parallel,
        },
        "model": {
            "dataset": base.dataset,
            "augment": base.augment or dataset_info(base.dataset).augment,
            "encoder": base.encoder,
            "encoder_width": base.encoder_width,
            "encoder_args": base.encoder_args,
            "projector_hidden": base.projector_hidden,
            "projector_dim": base.projector_dim,
            "bf16": base.bf16,
            "channels_last": base.channels_last,
        },
        "protocol": {
            "selection": f"end-of-run validation kNN accuracy (k={base.knn_k}, "
            f"T={base.knn_temperature:g}), seed 0, {p.search_steps} steps",
            "evaluation": "offline, frozen backbone features; kNN with k and T chosen on validation; "
            "L-BFGS softmax probe on standardised features, L2 chosen on validation, refit on train+val; "
            "test split used once per run",
            "probe_weight_decays": list(options.probe_weight_decays),
            "probe_max_iter": options.probe_max_iter,
            "geometry": f"effective rank and PPE of the K-view embeddings of {options.geometry_images} test "
            "images, in chunks of the training batch size, averaged",
        },
        "lrs": p.lrs,
        "seeds": p.seeds,
        "lr_search": search_table,
        "chosen_lr": chosen,
        "methods": methods,
        "hardware": _hardware(),
        "elapsed_s": elapsed,
        "span_s": _span_s([j.run_dir for j in [*p.search, *final_list]]),
        "cpu_s_train_loop": sum(
            float(r["train_loop_s"]) for r in [*search_runs, *finals.values()] if r and r.get("train_loop_s")
        ),
        "cpu_s_eval": sum(float(r["eval_s"]) for r in finals.values() if r and r.get("eval_s")),
    }


def _pct(ms: dict[str, Any]) -> str:
    if ms["mean"] is None:
        return "n/a"
    return f"{100 * ms['mean']:.2f} ± {100 * ms['std']:.2f}"


def _num(ms: dict[str, Any], fmt: str = "{:.1f}", pm: bool = True) -> str:
    if ms["mean"] is None:
        return "n/a"
    text = fmt.format(ms["mean"])
    return f"{text} ± {fmt.format(ms['std'])}" if pm else text


def _time_sentence(results: dict[str, Any]) -> str:
    span = results.get("span_s")
    text = (
        f"The whole comparison (lr search, final runs and evaluations) took {span / 60:.1f} min of wall "
        "time from the first run's launch to the last run's end"
        if span is not None
        else "No run finished"
    )
    return (
        f"{text}; in all, {results['cpu_s_train_loop'] / 60:.1f} min of training loops and "
        f"{results['cpu_s_eval'] / 60:.1f} min of evaluations over the parallel processes."
    )


def _method_lines(results: dict[str, Any]) -> list[str]:
    """The main table: one row per method, mean ± std over seeds."""
    b, m, pr = results["budget"], results["model"], results["protocol"]
    lines = [
        "### Objectives compared in the same harness",
        "",
        f"{m['dataset']}, {m['encoder']} encoder"
        + (f" (width {m['encoder_width']})" if m["encoder_width"] else "")
        + (f" {m['encoder_args']}" if m["encoder_args"] else "")
        + f", projector {m['projector_hidden']} -> {m['projector_dim']}, augmentation `{m['augment']}`"
        + (", bf16" if m["bf16"] else ", float32 (no bf16)")
        + ". **Budget, the same for every method:** "
        f"{b['steps']} optimiser steps at B = {b['batch_size']} images "
        f"({b['images_per_run']} images, {b['epochs']:.2f} epochs of {b['steps_per_epoch']} steps), "
        f"{b['optimizer']}, {b['schedule']}. Each image is seen in K views, so MMCR at K = 4 and 8 "
        "does 2x and 4x the encoder compute of K = 2 at the same steps (see img/s).",
        "",
        f"**Protocol:** {pr['evaluation']} (probe L2 grid {pr['probe_weight_decays']}, "
        f"{pr['probe_max_iter']} L-BFGS iterations). Mean ± std over seeds {results['seeds']}; "
        f"learning rate chosen per method by {pr['selection']} from {results['lrs']}.",
        "",
        *_label_note(results),
        "| Method | K | lr | kNN test acc (%) | Linear probe test acc (%) | Eff. rank | PPE "
        "| img/s | s / epoch | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["methods"].values():
        lr = f"{row['chosen_lr']:g}" if row["chosen_lr"] is not None else "n/a"
        lines.append(
            f"| {row['label']} | {row['num_views']} | {lr} | {_pct(row['knn_test_acc'])} "
            f"| {_pct(row['probe_test_acc'])} | {_num(row['effective_rank'])} "
            f"| {_num(row['ppe'], '{:.3f}')} | {_num(row['images_per_s'], '{:.0f}', pm=False)} "
            f"| {_num(row['time_per_epoch_s'], '{:.0f}', pm=False)} | {row['seeds_finished']}"
            + (f" ({row['seeds_failed']} failed)" if row["seeds_failed"] else "")
            + (f" ({row['seeds_not_run']} not run)" if row["seeds_not_run"] else "")
            + " |"
        )
    return lines


def _label_note(results: dict[str, Any]) -> list[str]:
    """The caption's sentence on X-CLR, which alone sees label names (nothing without it)."""
    row = results["methods"].get("xclr")
    if row is None:
        return []
    args = row.get("objective_args") or {}
    graph = args.get("graph", "class-names")
    source = {
        "class-names": "the cosine similarities of the class names' sentence embeddings "
        f"(all-MiniLM-L6-v2, frozen, each name in the prompt \"{args.get('template', DEFAULT_TEMPLATE)}\")",
        "matrix": "a class-similarity matrix from a file",
        "identity": "the identity class graph (same class or not)",
    }.get(graph, f"the {graph!r} graph")
    return [
        f"**X-CLR uses label names, which the other objectives do not see:** its soft targets come "
        f"from the labels of the training images and {source}; every other method is self-supervised.",
        "",
    ]


def _lr_search_lines(results: dict[str, Any]) -> list[str]:
    """The lr search: validation kNN accuracy of every method and lr, the chosen one in bold."""
    lrs = results["lrs"]
    lines = [
        "",
        f"Learning-rate search (seed 0, {results['budget']['search_steps']} steps, validation kNN "
        "accuracy %, chosen in bold):",
        "",
        "| Method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    for method, rows in results["lr_search"].items():
        by_lr = {r["lr"]: r for r in rows}
        cells = []
        for lr in lrs:
            r = by_lr.get(lr)
            if r is None or r["knn_val_acc"] is None:
                cells.append("failed" if r is not None and r["failed"] else "n/a")
                continue
            text = f"{100 * r['knn_val_acc']:.2f}"
            cells.append(f"**{text}**" if results["chosen_lr"].get(method) == lr else text)
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    edge = [
        LABELS[m] for m, lr in results["chosen_lr"].items() if len(lrs) > 1 and lr in (min(lrs), max(lrs))
    ]
    if edge:
        lines += [
            "",
            "Chosen at the edge of the grid (a wider grid might help them): " + ", ".join(edge) + ".",
        ]
    return lines


def render_table(results: dict[str, Any]) -> str:
    """table.md: the methods' table, the lr search, and the hardware and time it took."""
    b, hw = results["budget"], results["hardware"]
    lines = [*_method_lines(results), *_lr_search_lines(results)]
    load = hw.get("load_average_at_end")
    lines += [
        "",
        f"Hardware: {hw['cpu']}, {hw['cpu_count']} CPU cores shared with other jobs"
        + (f" (load average {load[0]:.1f} at the end)" if load else "")
        + f"; torch {hw['torch']}; {b['parallel_processes']} training process(es) at once, "
        f"{b['threads_per_process']} thread each. img/s and s / epoch are training-loop rates under "
        "that contention (s / epoch extrapolated from the run), not clean single-job timings. "
        + _time_sentence(results),
        "",
        f"Produced by `python benchmarks/compare_objectives.py` (recipe `{results['recipe']}`; "
        "per-run numbers in results.json beside this file).",
        "",
    ]
    return "\n".join(lines)
