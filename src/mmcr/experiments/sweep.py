"""Sweeps of short pretraining runs: double descent over (P, D) and compute scaling laws.

Schaeffer et al. (2024), arXiv 2406.09366, study the MMCR pretraining loss as a function of
the batch size P and embedding dimension D (a "double descent" ridge at P = D) and of
compute (gradient steps, batch size, embedding dimension, number of views). A sweep file
(:mod:`mmcr.experiments.spec`) plans many short runs; :func:`run_sweep` trains each through
the runner (:mod:`mmcr.experiments.runner`), records one result line per finished run
(:mod:`mmcr.experiments.results`), and draws the report of its kind
(:mod:`mmcr.experiments.double_descent`, :mod:`mmcr.experiments.scaling`).

The measured quantity is the pretraining percent error (PPE),

    PPE = (sqrt(P min(P, D)) - ||C||_*) / sqrt(P min(P, D))  in [0, 1],

not the raw loss -||C||_*: the loss's optimum sqrt(P min(P, D)) grows with P and D, so raw
losses of different cells are not comparable, while the PPE is a fraction of each cell's own
optimum. Two PPEs are recorded per run: the train-batch PPE averaged over the last
``ppe_last`` logged steps, and the PPE of the validation monitor (held-out images, K fresh
views, averaged over chunks of P images).

Sweeps are resumable: a run with a result line or a done-marker is skipped, and a run that
was interrupted continues from its last checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmcr.analysis.flops import count_forward_flops
from mmcr.analysis.theory import ppe_marchenko_pastur
from mmcr.build import Data, augment_config, build_network
from mmcr.config import PretrainConfig
from mmcr.data import dataset_info
from mmcr.experiments.double_descent import double_descent_report, ensure_theory_grid, init_ppe
from mmcr.experiments.results import (
    RESULTS_FILE,
    SUMMARY_JSON,
    SUMMARY_MD,
    SWEEP_FILE,
    append_result,
    fmt,
    load_meta,
    mean,
    read_results,
)
from mmcr.experiments.runner import Run
from mmcr.experiments.scaling import scaling_report
from mmcr.experiments.spec import (
    HUGE_EPOCHS,
    Log,
    PlannedRun,
    SweepSpec,
    dataset_overrides,
    plan_runs,
    print_line,
    run_config,
)
from mmcr.objectives.mmcr import max_nuclear_norm
from mmcr.records import METRICS_NAME, read_json, write_json

__all__ = ["SweepOutcome", "collect_result", "forward_flops", "report_sweep", "run_sweep"]


def forward_flops(cfg: PretrainConfig) -> float:
    """Forward FLOPs of one view through encoder + projector (conv and linear layers)."""
    channels = dataset_info(cfg.dataset).channels
    crop = augment_config(cfg).crop_size
    network = build_network(cfg, channels)
    return count_forward_flops(network, (channels, crop, crop))


def collect_result(
    run: PlannedRun,
    cfg: PretrainConfig,
    ppe_last: int,
    wall_s: float | None = None,
    kind: str = "double-descent",
) -> dict[str, Any]:
    """The result line of a finished run, read from its ``metrics.jsonl``.

    ``ppe`` is the mean train-batch PPE of the last ``ppe_last`` logged steps; ``val_*``
    come from the last validation-monitor record; ``flops`` = 3 x (forward FLOPs of one
    view) x B x K x S and ``sample_views`` = B x K x S, with S the steps actually taken.
    """
    records = Run(run.name, cfg).metrics()
    steps = [r for r in records if r.get("kind") == "step" and r.get("ppe") is not None]
    if not steps:
        raise ValueError(
            f"run {run.name}: {Path(cfg.out) / METRICS_NAME} holds no step records with a PPE "
            "(sweeps need objective = 'mmcr'); delete the run's directory to train it again."
        )
    tail = steps[-ppe_last:]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    monitor = epochs[-1] if epochs else {}
    total_steps = int(steps[-1]["step"])
    P, D, K = int(cfg.batch_size), int(cfg.projector_dim), int(cfg.num_views)
    forward = forward_flops(cfg)
    ppes = [float(r["ppe"]) for r in tail]
    result: dict[str, Any] = {
        "name": run.name,
        "kind": kind,
        "groups": list(run.groups),
        "P": P,
        "D": D,
        "seed": int(cfg.seed),
        "steps": total_steps,
        "batch_size": P,
        "projector_dim": D,
        "num_views": K,
        "ppe": mean(ppes),
        "ppe_std": float(np.std(ppes)) if len(ppes) > 1 else 0.0,
        "ppe_steps": [int(tail[0]["step"]), int(tail[-1]["step"])],
        "loss": mean(r.get("loss") for r in tail),
        "final_loss": float(steps[-1]["loss"]),
        "global_nuclear_norm": mean(r.get("global_nuclear_norm") for r in tail),
        "max_nuclear_norm": max_nuclear_norm(P, D),
        "theory_ppe_limit": ppe_marchenko_pastur(P, D),
        "forward_flops_per_view": forward,
        "flops": 3.0 * forward * P * K * total_steps,
        "sample_views": P * K * total_steps,
        "images": P * total_steps,
        "images_per_s": float(np.median([r["images_per_s"] for r in steps if "images_per_s" in r] or [0.0])),
        "train_s": float(steps[-1].get("time", math.nan)),
        "wall_s": wall_s,
        "config": cfg.to_dict(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for key, value in monitor.items():
        if key.startswith("val_") or key == "knn_val_acc":
            result[key] = value
    return result


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: runs planned, trained now, skipped, and the summary."""

    planned: list[str]
    trained: list[str]
    skipped: list[str]
    summary: dict[str, Any] | None


@dataclass
class _Sweep:
    """One invocation of a sweep: where it writes, what it has done so far."""

    spec: SweepSpec
    out: Path
    dry_run: bool
    verbose: bool
    log: Log
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    changed: bool = False  # whether results.jsonl gained a line, so the report must be redrawn
    data_cache: dict[tuple[Any, ...], Data] = field(default_factory=dict)  # for the untrained control

    @property
    def control_init(self) -> bool:
        return self.spec.kind == "double-descent" and self.spec.control_init

    def record(self, record: dict[str, Any]) -> None:
        if not self.dry_run:
            append_result(self.out, record)
            self.changed = True

    def reuse(self, run: Run, record: dict[str, Any], prefix: str) -> None:
        """Skip a finished run, after its fingerprint check; add the control if it lacks one."""
        changes = run.changes(record.get("config", {}))
        if changes:
            raise ValueError(
                f"run {record.get('name')} in {self.out} was trained with a different configuration: "
                f"{', '.join(changes)}. Use another --out, or delete runs/{record.get('name')} and its "
                f"line in {RESULTS_FILE} to train it again."
            )
        if self.control_init and "init_ppe" not in record and not self.dry_run:
            # a run finished before the control existed: add it now
            record = {**record, "init_ppe": init_ppe(run.cfg, self.data_cache)}
            run.finish(record)
            self.record(record)
        self.skipped.append(run.name)
        self.log(
            f"{prefix} done earlier        PPE {fmt(record.get('ppe'))}  val PPE {fmt(record.get('val_ppe'))}"
        )

    def train(self, planned: PlannedRun, run: Run, prefix: str) -> None:
        """Train one run (resuming it if it was interrupted), measure it and mark it done."""
        start = time.perf_counter()
        try:
            run.train(verbose=self.verbose)
        except ValueError as exc:
            hint = f" (delete {run.dir} to train it from scratch)" if "resume" in str(exc) else ""
            raise ValueError(f"run {run.name}: {exc}{hint}") from exc
        wall = time.perf_counter() - start
        result = collect_result(planned, run.cfg, self.spec.ppe_last, wall_s=wall, kind=self.spec.kind)
        if self.control_init:
            result["init_ppe"] = init_ppe(run.cfg, self.data_cache)
        run.finish(result)
        self.record(result)
        self.trained.append(run.name)
        self.log(
            f"{prefix} {wall:7.1f} s          PPE {fmt(result['ppe'])}  "
            f"val PPE {fmt(result.get('val_ppe'))}"
            f"  (ideal embeddings {result['theory_ppe_limit']:.4f})"
        )


def _describe(run: PlannedRun, cfg: PretrainConfig) -> str:
    c = run.coords
    budget = f"max_steps {cfg.max_steps}" if cfg.max_steps is not None else ""
    if cfg.epochs < HUGE_EPOCHS:
        budget = (budget + f", epochs {cfg.epochs}").lstrip(", ")
    if "P" in c:
        return f"P={c['P']:<4} D={c['D']:<4} seed {c['seed']}  ({budget}, K={cfg.num_views})"
    return (
        f"S={c['steps']:<5} B={c['batch_size']:<4} D={c['projector_dim']:<4} K={c['num_views']:<2} "
        f"seed {c['seed']}  [{', '.join(run.groups)}]"
    )


def _start(spec: SweepSpec, out: Path, runs: list[Run], overrides: dict[str, Any]) -> None:
    """Store the sweep's specification in OUT/sweep.json (and, for double descent, its theory)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": spec.kind,
        "spec": spec.to_dict(),
        "runs": [r.name for r in runs],
        "dataset_overrides": overrides,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(out / SWEEP_FILE, meta)
    if spec.kind == "double-descent":
        ensure_theory_grid(out, spec.Ps, spec.Ds, spec.theory_trials, spec.theory_seed)


def _check_out(spec: SweepSpec, out: Path, max_runs: int | None) -> None:
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs must be >= 0; got {max_runs}.")
    if (out / SWEEP_FILE).exists():
        old = read_json(out / SWEEP_FILE)
        if old.get("kind") != spec.kind:
            raise ValueError(
                f"{out} holds a {old.get('kind')!r} sweep; this is a {spec.kind!r} sweep. Use another --out."
            )


def _summary(sweep: _Sweep) -> dict[str, Any] | None:
    """The report: redrawn when a result line was added, else the stored one."""
    out = sweep.out
    if sweep.changed or not (out / SUMMARY_JSON).exists():
        return report_sweep(out, log=sweep.log) if read_results(out) else None
    sweep.log(
        f"nothing new: the figures and {out / SUMMARY_MD} are up to date (mmcr report {out} redraws them)"
    )
    summary: dict[str, Any] = read_json(out / SUMMARY_JSON)
    return summary


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    dry_run: bool = False,
    max_runs: int | None = None,
    verbose: bool = False,
    log: Log = print_line,
    shard: tuple[int, int] | None = None,
) -> SweepOutcome:
    """Train every run of ``spec`` not yet finished in ``out_dir``, then write the report.

    The report (figures, summary) is redrawn when a result line was added; otherwise the
    stored one is up to date and returned as it is.

    One line per run is logged: ``[i/N] name, seconds, PPE``. Finished runs (a line in
    results.jsonl or a done-marker runs/<name>/result.json) are skipped, after checking that
    they were trained with the configuration planned now; an interrupted run continues from
    its checkpoint.

    Args:
        spec: a checked sweep (:func:`~mmcr.experiments.spec.load_sweep`).
        out_dir: the sweep directory.
        dry_run: list the runs and their state; train nothing and write nothing.
        max_runs: train at most this many runs now (the rest on a later call).
        verbose: show pretrain's own output instead of writing it to runs/<name>/train.log.
        log: where progress lines go.
        shard: ``(k, n)``: train only the runs whose position i (from 0) in the plan has
            i mod n = k; the others' runs are left to them. Without it, several processes
            may still share one sweep directory: a run another process is training (its
            folder is locked) is skipped, so each takes the next free run. The report
            covers every finished run.
    """
    out = Path(out_dir)
    _check_out(spec, out, max_runs)
    if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be k/n with 0 <= k < n; got {shard[0]}/{shard[1]}.")
    overrides = dataset_overrides(spec, log)
    planned = plan_runs(spec)
    runs = [Run(p.name, run_config(spec, p, out, overrides)) for p in planned]
    done = {r["name"]: r for r in read_results(out)}
    if not dry_run:
        _start(spec, out, runs, overrides)
    log(
        f"{spec.kind} sweep: {len(runs)} runs in {out}"
        + (f" (dataset {runs[0].cfg.dataset})" if runs else "")
        + (" [dry run]" if dry_run else "")
    )
    sweep = _Sweep(spec, out, dry_run, verbose, log)
    sweep_start = time.perf_counter()
    width = len(str(len(runs)))
    for i, (plan, run) in enumerate(zip(planned, runs, strict=True), start=1):
        prefix = f"[{i:>{width}}/{len(runs)}] {run.name:<24}"
        record = done.get(run.name)
        mine = shard is None or (i - 1) % shard[1] == shard[0]
        if record is None and not mine:
            continue  # another shard's run, not finished when this one started: left to it
        if record is None:
            record = run.result()
            if record is not None:  # the sweep stopped between the done-marker and its line
                sweep.record(record)
        if record is not None:
            sweep.reuse(run, record, prefix)
        elif dry_run:
            state = "partial (resumes)" if run.has_checkpoint() else "to train"
            log(f"{prefix} {state:<18} {_describe(plan, run.cfg)}")
        elif max_runs is not None and len(sweep.trained) >= max_runs:
            log(f"stopping after {max_runs} new run(s) (--max-runs); run the same command again to go on")
            break
        elif run.in_use():
            log(f"{prefix} being trained by another process: left to it")
        else:
            try:
                sweep.train(plan, run, prefix)
            except ValueError as exc:
                if "another process is writing" not in str(exc):
                    raise
                log(f"{prefix} taken by another process a moment ago: left to it")
    if dry_run:
        return SweepOutcome([r.name for r in runs], [], sweep.skipped, None)
    log(
        f"trained {len(sweep.trained)} run(s) in {time.perf_counter() - sweep_start:.0f} s, "
        f"{len(sweep.skipped)} done earlier"
    )
    return SweepOutcome([r.name for r in runs], sweep.trained, sweep.skipped, _summary(sweep))


def report_sweep(sweep_dir: str | Path, log: Log = print_line) -> dict[str, Any]:
    """Redraw every figure and the summary of a sweep from its stored results (no training).

    The kind (double descent or scaling) is read from OUT/sweep.json. A scaling sweep's fit
    figures are redrawn too when OUT/fit.json exists.
    """
    out = Path(sweep_dir)
    meta = load_meta(out)
    results = read_results(out)
    if not results:
        raise ValueError(f"{out / RESULTS_FILE} holds no finished runs yet; nothing to report.")
    if meta["kind"] == "double-descent":
        return double_descent_report(out, meta, results, log)
    return scaling_report(out, meta, results, log)
