"""The objective comparison's jobs: train a run, read its metrics, evaluate it; many at once.

A job trains through the runner (:class:`~mmcr.experiments.runner.Run`: resumed from its
checkpoint if interrupted), reads its last step and monitor records, and, for a final run,
scores its checkpoint with ``mmcr eval`` (:func:`mmcr.evaluate.evaluate`); its numbers are
its done marker, ``summary.json``. With ``parallel > 1`` each job runs in a subprocess of
its own (``python -m mmcr.experiments.compare_runs --worker SPEC``) with ``threads`` torch
threads: two 1-thread processes use a shared 2-core machine far better than one 2-thread one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmcr.config import build_config
from mmcr.evaluate import EvalOptions, evaluate
from mmcr.experiments.compare_plan import JOB_LOG, SPEC_NAME, SUMMARY_NAME, CompareOptions, Job
from mmcr.experiments.runner import Run, check_fingerprints, run_worker
from mmcr.records import read_json, write_json

__all__ = ["run_job", "run_jobs"]


def _evaluation(checkpoint: Path, run_dir: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
    """kNN, linear probe and geometry of a final run's checkpoint (eval.json in RUN/eval)."""
    t1 = time.perf_counter()
    options = EvalOptions(
        checkpoint=str(checkpoint),
        out=str(run_dir / "eval"),
        probe=True,
        # the probe grid is a documented option of this benchmark, the same for every method
        probe_weight_decays=tuple(float(d) for d in spec["probe_weight_decays"]),
        probe_max_iter=int(spec["probe_max_iter"]),
        report=False,  # eval.json only: no per-run plots
        geometry_images=int(spec.get("geometry_images", 2048)),
    )
    res = evaluate(options)
    return {
        "eval_s": time.perf_counter() - t1,
        "knn_test_acc": res["knn"]["test_accuracy"],
        "knn_k": res["knn"]["k"],
        "knn_temperature": res["knn"]["temperature"],
        "knn_val_acc_selected": res["knn"]["val_accuracy"],
        "probe_test_acc": res["linear_probe"]["test_accuracy"],
        "probe_weight_decay": res["linear_probe"]["weight_decay"],
        "probe_val_acc": res["linear_probe"]["val_accuracy"],
        "effective_rank": res["geometry"]["effective_rank"],
        "ppe": res["geometry"]["ppe"],
        "feature_effective_rank": res.get("feature_effective_rank"),
    }


def run_job(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Pretrain (resuming if interrupted), read the metrics, evaluate a final run; write summary.json."""
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(spec["overrides"], out=str(run_dir))
    torch.set_num_threads(int(overrides.get("threads") or 1))
    # the overrides hold the recipe's values
    run = Run(run_dir.name, build_config(None, overrides), marker=SUMMARY_NAME)
    cfg = run.cfg
    t0 = time.perf_counter()
    checkpoint = run.train(verbose=True)  # the job's own output already goes to its log
    train_wall = time.perf_counter() - t0
    last_step, last_epoch = run.last_metrics()
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
        summary.update(_evaluation(checkpoint, run_dir, spec))
    run.finish(summary)
    return summary


def worker_main(spec_path: str) -> int:
    """The subprocess entry point: run the job described by a spec.json."""
    run_job(read_json(spec_path))
    return 0


def _spec(job: Job, options: CompareOptions) -> dict[str, Any]:
    return {
        "method": job.method,
        "kind": job.kind,
        "run_dir": str(job.run_dir),
        "config": options.config,
        "overrides": job.overrides,
        "probe_weight_decays": list(options.probe_weight_decays),
        "probe_max_iter": options.probe_max_iter,
        "geometry_images": options.geometry_images,
    }


def _launch(job: Job, options: CompareOptions) -> dict[str, Any] | None:
    """Run one job (logging to RUN/log.txt); its summary, or None if it failed.

    With ``parallel <= 1`` the job runs in this process; otherwise in a subprocess.
    """
    job.run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = job.run_dir / SPEC_NAME
    write_json(spec_file, _spec(job, options))
    if options.parallel <= 1:
        with (job.run_dir / JOB_LOG).open("a") as log:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    return run_job(_spec(job, options))
                except Exception:  # a failed run is reported; the comparison goes on
                    traceback.print_exc()
                    return None
    status = run_worker("mmcr.experiments.compare_runs", spec_file, job.run_dir / JOB_LOG, options.threads)
    return job.run.result() if status == 0 else None


def _progress_line(job: Job, s: dict[str, Any] | None, done: int, total: int, t0: float) -> str:
    head = f"[{done}/{total} {time.perf_counter() - t0:6.0f}s] {job.name}"
    if s is None:
        return f"{head}: FAILED (see {job.run_dir / JOB_LOG})"
    parts = [f"val kNN {s['knn_val_acc']:.4f}" if s.get("knn_val_acc") is not None else "val kNN n/a"]
    if s.get("knn_test_acc") is not None:
        parts.append(f"test kNN {s['knn_test_acc']:.4f}, probe {s['probe_test_acc']:.4f}")
    if s.get("images_per_s"):
        parts.append(f"{s['images_per_s']:.0f} img/s")
    return f"{head}: " + ", ".join(parts)


def run_jobs(jobs: list[Job], options: CompareOptions, t0: float) -> dict[str, dict[str, Any] | None]:
    """Run the jobs (the costliest first), skipping finished ones; one line per finished run."""
    check_fingerprints(job.run for job in jobs)
    results: dict[str, dict[str, Any] | None] = {}
    todo: list[Job] = []
    for job in jobs:
        summary = job.run.result()
        if summary is not None:
            results[job.name] = summary
        else:
            todo.append(job)
    total, done = len(jobs), len(results)
    if done:
        print(f"{done}/{total} runs already finished in {options.work_dir}: skipped", flush=True)
    if options.report_only:
        if todo:
            print(f"--report-only: {len(todo)} unfinished run(s) left out", flush=True)
        return results
    # seed by seed (so an unfinished comparison still covers every method), the costliest first
    todo.sort(key=lambda j: (j.seed if j.kind == "final" else 0, -j.cost))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.parallel)) as pool:
        futures = {pool.submit(_launch, job, options): job for job in todo}
        for fut in concurrent.futures.as_completed(futures):
            job = futures[fut]
            summary = fut.result()
            results[job.name] = summary
            done += 1
            print(_progress_line(job, summary, done, total, t0), flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    sys.exit(f"usage: python -m mmcr.experiments.compare_runs --worker SPEC_JSON (got {sys.argv[1:]})")
