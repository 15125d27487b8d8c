"""MMCR against SimCLR, Barlow Twins and VICReg in the same harness, measured side by side.

Every method gets the same encoder, projector, augmentation, optimiser, batch size B and
number of optimiser steps (the base recipe, ``configs/fashion_mnist.toml`` by default,
read at run time); only the objective and, for MMCR, the number of views K differ
(MMCR at K = 2, 4, 8; the baselines at K = 2 with their classes' default
hyper-parameters). At the same B and steps, K = 8 costs about 4x the compute of K = 2:
that is what "the same optimiser budget" means here, and the table shows images/s and
time per epoch so the difference is visible.

Protocol:

1. learning-rate search per method: seed 0, a short budget (``--search-steps``), each lr
   of ``--lrs``; the lr with the best end-of-run *validation* kNN accuracy
   (``knn_val_acc`` in metrics.jsonl) wins. The test split is never looked at.
2. ``--seeds`` (default 0, 1, 2) per method at its chosen lr and the full budget
   (``--budget-epochs`` of the training split, optionally capped by
   ``--max-train-images`` images seen), each scored by ``mmcr.evaluation.evaluate``: kNN
   (k, T chosen on validation) and an L-BFGS softmax probe on frozen backbone features
   (L2 chosen on validation over ``--probe-weight-decays``, ``--probe-max-iter``
   iterations; the same for every method), both reported on test, and the geometry
   (effective rank, PPE) of the test embeddings.
3. results.json and table.md (mean +- std over seeds) in ``--out``.

The probe's L2 grid and iterations go to ``evaluate`` through ``EvalOptions``
(``probe_weight_decays``, ``probe_max_iter``); the kNN grid is ``evaluate``'s own.
``--max-train-images`` caps the images *seen* per final run (steps = N // B); it does
not draw a subset of the training set.

Runs live in ``--work-dir``/<method>_lr<lr>_s<seed>[_search]/; a run whose summary.json
exists is skipped, and an interrupted one resumes from its checkpoint, so the whole
comparison can be re-launched until it completes. ``--parallel 2`` runs two training
processes at once, each with one torch thread (two-thread processes slow down badly
on a shared 2-core machine).

    python benchmarks/compare_objectives.py --parallel 2
    python benchmarks/compare_objectives.py --dry-run
    python benchmarks/compare_objectives.py --report-only   # tables from the runs finished so far

A finished run whose saved configuration differs from the planned one (the recipe
changed) is an error, not silently reused; each invocation that runs saves the recipe it
read as WORK/recipe.yaml (JSON, which YAML reads), so ``--config runs/compare/recipe.yaml
--report-only`` re-reports a finished comparison after the recipe has moved on.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "fashion_mnist.toml"

# name -> (objective, K)
METHODS: dict[str, tuple[str, int]] = {
    "mmcr_k2": ("mmcr", 2),
    "mmcr_k4": ("mmcr", 4),
    "mmcr_k8": ("mmcr", 8),
    "simclr": ("simclr", 2),
    "barlow_twins": ("barlow_twins", 2),
    "vicreg": ("vicreg", 2),
}
LABELS = {
    "mmcr_k2": "MMCR (K=2)",
    "mmcr_k4": "MMCR (K=4)",
    "mmcr_k8": "MMCR (K=8)",
    "simclr": "SimCLR",
    "barlow_twins": "Barlow Twins",
    "vicreg": "VICReg",
}
SUMMARY_NAME = "summary.json"


@dataclass
class Job:
    """One pretraining run (and, for the final runs, its evaluation)."""

    method: str
    lr: float
    seed: int
    kind: str  # "search" or "final"
    steps: int
    run_dir: Path
    overrides: dict[str, Any]

    @property
    def cost(self) -> float:
        return self.steps * METHODS[self.method][1]

    @property
    def name(self) -> str:
        return self.run_dir.name


# ----------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="base recipe shared by every method")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key for every run (repeatable), e.g. --set dataset=digits",
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the final runs")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="learning rates of the search")
    p.add_argument(
        "--budget-epochs",
        type=float,
        default=0.2,
        help="full budget in epochs of the training split (may be fractional; rounded to whole steps)",
    )
    p.add_argument(
        "--max-train-images",
        type=int,
        default=None,
        help="cap on the images seen per final run (steps = this // B); applied on top of --budget-epochs",
    )
    p.add_argument("--search-steps", type=int, default=20, help="steps of each lr-search run (seed 0)")
    p.add_argument("--parallel", type=int, default=2, help="training processes at once (1 thread each)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument(
        "--probe-weight-decays",
        default="1e-4,1e-3,1e-2",
        help="L2 grid of the linear probe (chosen on validation), the same for every method",
    )
    p.add_argument("--probe-max-iter", type=int, default=50, help="L-BFGS iterations of the linear probe")
    p.add_argument(
        "--geometry-images",
        type=int,
        default=2048,
        help="test images whose K-view embeddings give the effective rank and PPE",
    )
    p.add_argument("--work-dir", default="runs/compare", help="where the runs go (resumable)")
    p.add_argument("--out", default="results/compare_objectives", help="folder of results.json and table.md")
    p.add_argument("--json", default=None, help="path of the results JSON (default: OUT/results.json)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without running")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write results.json and table.md from the runs already finished",
    )
    return p.parse_args(argv)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.replace(" ", "").split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _lr_tag(lr: float) -> str:
    return f"{lr:g}"


# ----------------------------------------------------------------------------- planning


def _base(config: str, sets: dict[str, Any]) -> tuple[Any, int]:
    """The resolved base configuration and its steps per epoch (loads the training split once)."""
    from mmcr.training.config import build_config
    from mmcr.training.pretrain import load_data

    cfg = build_config(None, sets)
    data = load_data(cfg)
    steps_per_epoch = len(data.train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"batch_size {cfg.batch_size} exceeds the {len(data.train)} training images")
    return cfg, steps_per_epoch


def _run_overrides(
    base: Any, sets: dict[str, Any], method: str, lr: float, seed: int, steps: int, spe: int, threads: int
) -> dict[str, Any]:
    objective, k = METHODS[method]
    # keep the recipe's warm-up share of the run, whatever the run's length
    warmup_share = base.warmup_epochs / base.epochs if base.epochs else 0.0
    over: dict[str, Any] = dict(sets)
    over.update(
        objective=objective,
        num_views=k,
        lr=lr,
        seed=seed,
        epochs=max(1, math.ceil(steps / spe)),
        max_steps=steps,
        warmup_epochs=warmup_share * steps / spe,
        eval_every=0,  # validation kNN / geometry once, at the end of the run
        checkpoint_every=0,
        threads=threads,
        progress=False,
    )
    if objective != "mmcr":
        over.update(lmbda=0.0, objective_args={})  # the baselines' default hyper-parameters
    return over


def plan(args: argparse.Namespace) -> dict[str, Any]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    from mmcr.training.config import load_recipe

    # the recipe is read once, so every run of this invocation sees the same values
    sets = {**load_recipe(args.config), **_parse_sets(args.sets)}
    base, spe = _base(args.config, sets)
    full_steps = max(1, round(args.budget_epochs * spe))
    if args.max_train_images is not None:
        full_steps = max(1, min(full_steps, args.max_train_images // base.batch_size))
    search_steps = max(1, args.search_steps)
    work = Path(args.work_dir)
    lrs, seeds = _floats(args.lrs), _ints(args.seeds)
    search = [
        Job(
            m,
            lr,
            0,
            "search",
            search_steps,
            work / f"{m}_lr{_lr_tag(lr)}_s0_search",
            _run_overrides(base, sets, m, lr, 0, search_steps, spe, args.threads),
        )
        for m in methods
        for lr in lrs
    ]
    return {
        "methods": methods,
        "lrs": lrs,
        "seeds": seeds,
        "sets": sets,
        "base": base,
        "steps_per_epoch": spe,
        "full_steps": full_steps,
        "search_steps": search_steps,
        "search": search,
        "work": work,
    }


def final_jobs(p: dict[str, Any], chosen: dict[str, float], threads: int) -> list[Job]:
    return [
        Job(
            m,
            chosen[m],
            s,
            "final",
            p["full_steps"],
            p["work"] / f"{m}_lr{_lr_tag(chosen[m])}_s{s}",
            _run_overrides(
                p["base"], p["sets"], m, chosen[m], s, p["full_steps"], p["steps_per_epoch"], threads
            ),
        )
        for m in p["methods"]
        if m in chosen
        for s in p["seeds"]
    ]


# ----------------------------------------------------------------------------- one run (worker)


def _read_metrics(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last step record and the last epoch record of a metrics.jsonl."""
    last_step: dict[str, Any] = {}
    last_epoch: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "step":
            last_step = rec
        elif rec.get("kind") == "epoch":
            last_epoch = rec
    return last_step, last_epoch


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Pretrain (resuming if interrupted), read the metrics, evaluate a final run; write summary.json."""
    import torch

    import mmcr.evaluation.evaluate as ev
    from mmcr.training.config import build_config
    from mmcr.training.pretrain import METRICS_NAME, pretrain

    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(spec["overrides"], out=str(run_dir))
    torch.set_num_threads(int(overrides.get("threads") or 1))
    cfg = build_config(None, overrides)  # the overrides hold the recipe's values
    t0 = time.perf_counter()
    ckpt = pretrain(cfg, resume=True)
    train_wall = time.perf_counter() - t0
    last_step, last_epoch = _read_metrics(run_dir / METRICS_NAME)
    steps = int(last_step.get("step", 0))
    epochs = float(last_step.get("epoch", 0.0))
    loop_time = float(last_step.get("time", float("nan")))  # training-loop wall time (no set-up, no monitor)
    summary: dict[str, Any] = {
        "method": spec["method"],
        "objective": cfg.objective,
        "num_views": cfg.num_views,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "kind": spec["kind"],
        "steps": steps,
        "batch_size": cfg.batch_size,
        "epochs": epochs,
        "images_seen": steps * cfg.batch_size,
        "train_loop_s": loop_time,
        "images_per_s": steps * cfg.batch_size / loop_time if loop_time > 0 else None,
        "time_per_epoch_s": loop_time / epochs if epochs > 0 else None,
        "process_train_s": train_wall,
        "final_loss": last_step.get("loss"),
        "knn_val_acc": last_epoch.get("knn_val_acc"),
        "val_effective_rank": last_epoch.get("val_effective_rank"),
        "val_ppe": last_epoch.get("val_ppe"),
    }
    if spec["kind"] == "final":
        t1 = time.perf_counter()
        options = ev.EvalOptions(
            checkpoint=str(ckpt),
            out=str(run_dir / "eval"),
            probe=True,
            # the probe grid is a documented option of this benchmark, the same for every method
            probe_weight_decays=tuple(float(d) for d in spec["probe_weight_decays"]),
            probe_max_iter=int(spec["probe_max_iter"]),
            report=False,  # eval.json only: no per-run plots
            geometry_images=int(spec.get("geometry_images", 2048)),
        )
        res = ev.evaluate(options)
        summary.update(
            eval_s=time.perf_counter() - t1,
            knn_test_acc=res["knn"]["test_accuracy"],
            knn_k=res["knn"]["k"],
            knn_temperature=res["knn"]["temperature"],
            knn_val_acc_selected=res["knn"]["val_accuracy"],
            probe_test_acc=res["linear_probe"]["test_accuracy"],
            probe_weight_decay=res["linear_probe"]["weight_decay"],
            probe_val_acc=res["linear_probe"]["val_accuracy"],
            effective_rank=res["geometry"]["effective_rank"],
            ppe=res["geometry"]["ppe"],
            feature_effective_rank=res.get("feature_effective_rank"),
        )
    tmp = run_dir / (SUMMARY_NAME + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(run_dir / SUMMARY_NAME)
    return summary


def _worker_main(spec_path: str) -> int:
    run_job(json.loads(Path(spec_path).read_text()))
    return 0


# ----------------------------------------------------------------------------- scheduling


def _spec(job: Job, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": job.method,
        "kind": job.kind,
        "run_dir": str(job.run_dir),
        "config": args.config,
        "overrides": job.overrides,
        "probe_weight_decays": _floats(args.probe_weight_decays),
        "probe_max_iter": args.probe_max_iter,
        "geometry_images": args.geometry_images,
    }


def _launch(job: Job, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run one job (logging to RUN/log.txt); its summary, or None if it failed.

    With ``--parallel 1`` the job runs in this process; otherwise in a subprocess.
    """
    job.run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = job.run_dir / "spec.json"
    spec_file.write_text(json.dumps(_spec(job, args), indent=2) + "\n")
    if args.parallel <= 1:
        import contextlib
        import traceback

        with (job.run_dir / "log.txt").open("a") as log:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    return run_job(_spec(job, args))
                except Exception:  # a failed run is reported; the comparison goes on
                    traceback.print_exc()
                    return None
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with (job.run_dir / "log.txt").open("a") as log:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    summary_path = job.run_dir / SUMMARY_NAME
    if proc.returncode != 0 or not summary_path.exists():
        return None
    result: dict[str, Any] = json.loads(summary_path.read_text())
    return result


def _progress_line(job: Job, s: dict[str, Any] | None, done: int, total: int, t0: float) -> str:
    head = f"[{done}/{total} {time.perf_counter() - t0:6.0f}s] {job.name}"
    if s is None:
        return f"{head}: FAILED (see {job.run_dir / 'log.txt'})"
    parts = [f"val kNN {s['knn_val_acc']:.4f}" if s.get("knn_val_acc") is not None else "val kNN n/a"]
    if s.get("knn_test_acc") is not None:
        parts.append(f"test kNN {s['knn_test_acc']:.4f}, probe {s['probe_test_acc']:.4f}")
    if s.get("images_per_s"):
        parts.append(f"{s['images_per_s']:.0f} img/s")
    return f"{head}: " + ", ".join(parts)


_UNCOMPARED = {"out", "progress", "threads"}


def _stale_keys(job: Job) -> list[str]:
    """Configuration fields where a finished run's config.json differs from the planned run."""
    from mmcr.training.config import build_config
    from mmcr.training.pretrain import CONFIG_NAME

    path = job.run_dir / CONFIG_NAME
    if not (job.run_dir / SUMMARY_NAME).exists() or not path.exists():
        return []
    saved = json.loads(path.read_text())
    planned = build_config(None, job.overrides).to_dict()
    return sorted(k for k, v in planned.items() if k not in _UNCOMPARED and saved.get(k) != v)


def run_jobs(jobs: list[Job], args: argparse.Namespace, t0: float) -> dict[str, dict[str, Any] | None]:
    """Run the jobs (the costliest first), skipping finished ones; one line per finished run."""
    results: dict[str, dict[str, Any] | None] = {}
    todo: list[Job] = []
    stale = [f"{job.run_dir} ({', '.join(keys)})" for job in jobs if (keys := _stale_keys(job))]
    if stale:
        raise SystemExit(
            "these runs were made with a different configuration (the recipe changed?); delete them or "
            "use another --work-dir:\n  " + "\n  ".join(stale)
        )
    for job in jobs:
        path = job.run_dir / SUMMARY_NAME
        if path.exists():
            results[job.name] = json.loads(path.read_text())
        else:
            todo.append(job)
    total, done = len(jobs), len(results)
    if done:
        print(f"{done}/{total} runs already finished in {args.work_dir}: skipped", flush=True)
    if args.report_only:
        if todo:
            print(f"--report-only: {len(todo)} unfinished run(s) left out", flush=True)
        return results
    # seed by seed (so an unfinished comparison still covers every method), the costliest first
    todo.sort(key=lambda j: (j.seed if j.kind == "final" else 0, -j.cost))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        futures = {pool.submit(_launch, job, args): job for job in todo}
        for fut in concurrent.futures.as_completed(futures):
            job = futures[fut]
            summary = fut.result()
            results[job.name] = summary
            done += 1
            print(_progress_line(job, summary, done, total, t0), flush=True)
    return results


# ----------------------------------------------------------------------------- aggregation


def _mean_std(values: list[Any]) -> dict[str, float | int | None]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals)}


def choose_lrs(p: dict[str, Any], search: dict[str, dict[str, Any] | None]) -> tuple[dict[str, float], dict]:
    """Per method, the lr with the best validation kNN accuracy (ties: the smaller lr)."""
    chosen: dict[str, float] = {}
    table: dict[str, list[dict[str, Any]]] = {}
    for job in p["search"]:
        s = search.get(job.name)
        acc = None if s is None else s.get("knn_val_acc")
        table.setdefault(job.method, []).append(
            {"lr": job.lr, "knn_val_acc": acc, "failed": job.name in search and s is None, "steps": job.steps}
        )
    for method, rows in table.items():
        ok = [r for r in sorted(rows, key=lambda r: r["lr"]) if r["knn_val_acc"] is not None]
        if ok:
            chosen[method] = max(ok, key=lambda r: r["knn_val_acc"])["lr"]
    return chosen, table


def _span_s(dirs: list[Path]) -> float | None:
    """Wall time from the first run's launch to the last run's end (file times; includes any pauses)."""
    starts = [(d / "spec.json").stat().st_mtime for d in dirs if (d / "spec.json").exists()]
    ends = [(d / SUMMARY_NAME).stat().st_mtime for d in dirs if (d / SUMMARY_NAME).exists()]
    if not starts or not ends:
        return None
    return max(ends) - min(starts)


def _hardware() -> dict[str, Any]:
    import torch

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


def aggregate(
    p: dict[str, Any],
    args: argparse.Namespace,
    chosen: dict[str, float],
    search_table: dict[str, list[dict[str, Any]]],
    search_runs: list[dict[str, Any] | None],
    finals: dict[str, dict[str, Any] | None],
    final_list: list[Job],
    elapsed: float,
) -> dict[str, Any]:
    base = p["base"]
    methods: dict[str, Any] = {}
    for m in p["methods"]:
        names = [j.name for j in final_list if j.method == m]
        ok = [r for n in names if (r := finals.get(n)) is not None]
        failed = sum(1 for n in names if n in finals and finals[n] is None)
        methods[m] = {
            "label": LABELS[m],
            "objective": METHODS[m][0],
            "num_views": METHODS[m][1],
            "chosen_lr": chosen.get(m),
            "seeds_finished": len(ok),
            "seeds_failed": failed,
            "seeds_not_run": len(names) - len(ok) - failed,
            "knn_test_acc": _mean_std([r.get("knn_test_acc") for r in ok]),
            "probe_test_acc": _mean_std([r.get("probe_test_acc") for r in ok]),
            "effective_rank": _mean_std([r.get("effective_rank") for r in ok]),
            "ppe": _mean_std([r.get("ppe") for r in ok]),
            "images_per_s": _mean_std([r.get("images_per_s") for r in ok]),
            "time_per_epoch_s": _mean_std([r.get("time_per_epoch_s") for r in ok]),
            "train_loop_s": _mean_std([r.get("train_loop_s") for r in ok]),
            "eval_s": _mean_std([r.get("eval_s") for r in ok]),
            "runs": ok,
        }
    spe, full = p["steps_per_epoch"], p["full_steps"]
    return {
        "benchmark": "compare_objectives",
        "recipe": str(args.config),
        "base_values": p["sets"],  # the recipe, with --set overrides
        "budget": {
            "steps": full,
            "batch_size": base.batch_size,
            "steps_per_epoch": spe,
            "epochs": full / spe,
            "images_per_run": full * base.batch_size,
            "views": {m: METHODS[m][1] for m in p["methods"]},
            "search_steps": p["search_steps"],
            "schedule": f"{base.schedule}, warm-up share {base.warmup_epochs / base.epochs:.3g} of each run",
            "optimizer": base.optimizer,
            "weight_decay": base.weight_decay,
            "threads_per_process": args.threads,
            "parallel_processes": args.parallel,
        },
        "model": {
            "dataset": base.dataset,
            "augment": base.augment,
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
            f"T={base.knn_temperature:g}), seed 0, {p['search_steps']} steps",
            "evaluation": "offline, frozen backbone features; kNN with k and T chosen on validation; "
            "L-BFGS softmax probe on standardised features, L2 chosen on validation, refit on train+val; "
            "test split used once per run",
            "probe_weight_decays": _floats(args.probe_weight_decays),
            "probe_max_iter": args.probe_max_iter,
            "geometry": f"effective rank and PPE of the K-view embeddings of {args.geometry_images} test "
            "images, in chunks of the training batch size, averaged",
        },
        "lrs": p["lrs"],
        "seeds": p["seeds"],
        "lr_search": search_table,
        "chosen_lr": chosen,
        "methods": methods,
        "hardware": _hardware(),
        "elapsed_s": elapsed,
        "span_s": _span_s([j.run_dir for j in [*p["search"], *final_list]]),
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


def render_table(results: dict[str, Any]) -> str:
    b, m, pr, hw = results["budget"], results["model"], results["protocol"], results["hardware"]
    seeds = results["seeds"]
    lines = [
        "### Objectives compared in the same harness",
        "",
        f"{m['dataset']}, {m['encoder']} encoder"
        + (f" (width {m['encoder_width']})" if m["encoder_width"] else "")
        + (f" {m['encoder_args']}" if m["encoder_args"] else "")
        + f", projector {m['projector_hidden']} -> {m['projector_dim']}, augmentation `{m['augment']}`"
        + (", bf16" if m["bf16"] else "")
        + ". **Budget, the same for every method:** "
        f"{b['steps']} optimiser steps at B = {b['batch_size']} images "
        f"({b['images_per_run']} images, {b['epochs']:.2f} epochs of {b['steps_per_epoch']} steps), "
        f"{b['optimizer']}, {b['schedule']}. Each image is seen in K views, so MMCR at K = 4 and 8 "
        "does 2x and 4x the encoder compute of K = 2 at the same steps (see img/s).",
        "",
        f"**Protocol:** {pr['evaluation']} (probe L2 grid {pr['probe_weight_decays']}, "
        f"{pr['probe_max_iter']} L-BFGS iterations). Mean ± std over seeds {seeds}; "
        f"learning rate chosen per method by {pr['selection']} from {results['lrs']}.",
        "",
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
    lrs = results["lrs"]
    lines += [
        "",
        f"Learning-rate search (seed 0, {b['search_steps']} steps, validation kNN accuracy %, "
        "chosen in bold):",
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


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from mmcr.training.config import load_recipe

    args = parse_args(argv)
    t0 = time.perf_counter()
    p = plan(args)
    base = p["base"]
    header = (
        f"budget: {p['full_steps']} steps x B={base.batch_size} "
        f"({p['full_steps'] / p['steps_per_epoch']:.2f} epochs); search: {p['search_steps']} steps, "
        f"lrs {p['lrs']}; seeds {p['seeds']}; methods {p['methods']}"
    )
    print(header, flush=True)
    if args.dry_run:
        n_final = len(p["methods"]) * len(p["seeds"])
        cost = sum(j.cost for j in p["search"]) + sum(
            p["full_steps"] * METHODS[m][1] * len(p["seeds"]) for m in p["methods"]
        )
        print(
            f"dry run: {len(p['search'])} search runs + {n_final} final runs (+ evaluations), "
            f"{cost} view-steps (steps x K) in {args.work_dir}",
            flush=True,
        )
        for job in p["search"]:
            print(f"  search {job.name}: {job.steps} steps", flush=True)
        for m in p["methods"]:
            print(f"  final  {m}: seeds {p['seeds']}, {p['full_steps']} steps, K={METHODS[m][1]}", flush=True)
        return {"dry_run": True, "plan": header}
    if not args.report_only:
        # the recipe as this comparison read it: --config WORK/recipe.yaml reports on these runs later
        snapshot = Path(args.work_dir) / "recipe.yaml"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(json.dumps(load_recipe(args.config), indent=2, sort_keys=True) + "\n")
    search = run_jobs(p["search"], args, t0)
    chosen, search_table = choose_lrs(p, search)
    print("chosen lr: " + ", ".join(f"{m} {lr:g}" for m, lr in chosen.items()), flush=True)
    finals_list = final_jobs(p, chosen, args.threads)
    finals = run_jobs(finals_list, args, t0)
    results = aggregate(
        p, args, chosen, search_table, list(search.values()), finals, finals_list, time.perf_counter() - t0
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else out / "results.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = render_table(results)
    (out / "table.md").write_text(table)
    print(table, flush=True)
    print(f"wrote {json_path} and {out / 'table.md'}", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    main()
    sys.exit(0)
