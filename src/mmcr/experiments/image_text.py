"""MMCR against CLIP and SigLIP on paired image-text data, over the batch size, side by side.

The image-text claim of Schaeffer et al. (2024) is that MMCR, an image method, also works
on image-text pairs. This study trains the same two towers (the paired recipe, read at run
time: by default ``configs/emoji_image_text.toml``) with four objectives:

- ``mmcr``: one image view and one caption per datum, ``(B, 2, D)`` into MMCRLoss;
- ``mmcr_multi``: one image view and two captions (``text_views = 2``: with English names
  and keywords, both of a datum's captions at every step), ``(B, 3, D)``;
- ``clip``: symmetric InfoNCE with a learned logit scale, one image and one caption;
- ``siglip``: the pairwise sigmoid loss with a learned temperature and bias.

Every objective gets the same towers, augmentation, optimiser, schedule and budget: the
same number of epochs at every batch size ``B`` (so the same number of pairs seen; a
smaller ``B`` takes more steps). The axis is ``B`` because that is where sample-contrastive
losses (whose negatives come from the batch) and MMCR (whose centroid spectrum spans the
batch) are expected to differ.

Protocol (:func:`run_image_text`):

1. For each (objective, B): seed ``seeds[0]`` at each learning rate of ``lrs``, the full
   budget. The lr with the best *validation* mean recall (the mean of recall@1, @5 and @10
   in both directions, 1:1 protocol, ``val_retrieval`` of ``mmcr eval``) is chosen. The
   test split is never read for the choice.
2. The other seeds at the chosen lr. The run of ``seeds[0]`` at the chosen lr is that
   seed's final run (the same budget; it was chosen on validation, not on test).
3. Every run is scored by ``mmcr eval`` (no linear probe): test retrieval (1:1 and
   multi-caption), zero-shot classification, the image tower's kNN on the labels.
4. results.json, table.md, and ``recall_vs_batch.png`` (recall@1 against B, both
   directions, mean and standard deviation over seeds) in ``out``.
5. Timing (``timing = True``; ``timing_only`` reports the finished runs and measures this
   alone): the step time of each objective at each B and the share of
   it spent in the loss (the objective's forward and backward on embeddings of the step's
   shape), and the time of a 10k x 10k retrieval evaluation. These run after the training,
   in this process, with ``timing_threads`` threads.

Runs live in ``work_dir``/<method>_B<B>_lr<lr>_s<seed>/ (:class:`~mmcr.experiments.runner.Run`
folders with the done marker ``summary.json``): a finished run is skipped (after its
configuration is checked against the plan), an interrupted one resumes from its checkpoint,
so the study can be relaunched until it completes. ``parallel`` jobs run at once, each in a
subprocess with ``threads`` torch threads.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcr.config import build_config, load_recipe
from mmcr.experiments.runner import Run, check_fingerprints, run_worker
from mmcr.records import read_json, write_json, write_text

__all__ = [
    "METHODS",
    "ImageTextOptions",
    "Job",
    "aggregate",
    "plan_searches",
    "render_table",
    "run_image_text",
    "selection_score",
]

#: name -> (label, the recipe keys that make the method).
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "mmcr": ("MMCR, 1 image + 1 caption (K = 2)", {"objective": "mmcr", "image_views": 1, "text_views": 1}),
    "mmcr_multi": (
        "MMCR, 1 image + 2 captions (K = 3)",
        {"objective": "mmcr", "image_views": 1, "text_views": 2},
    ),
    "clip": ("CLIP", {"objective": "clip", "image_views": 1, "text_views": 1}),
    "siglip": ("SigLIP", {"objective": "siglip", "image_views": 1, "text_views": 1}),
}
#: The done marker of a run of this study, and its job files.
SUMMARY_NAME = "summary.json"
SPEC_NAME = "spec.json"
JOB_LOG = "log.txt"
#: The recall levels the selection score averages.
SELECTION_KS = (1, 5, 10)
DIRECTIONS = ("image_to_text", "text_to_image")


@dataclass
class ImageTextOptions:
    """What to run; see the module docstring for the protocol."""

    config: str
    work_dir: str = "runs/compare_image_text"
    out: str = "results/compare_image_text"
    sets: dict[str, Any] = field(default_factory=dict)
    methods: Sequence[str] = tuple(METHODS)
    batch_sizes: Sequence[int] = (32, 64, 128, 256)
    seeds: Sequence[int] = (0, 1, 2)
    lrs: Sequence[float] = (1e-3, 3e-3)
    epochs: int | None = None  # None: the recipe's
    parallel: int = 2
    threads: int = 1
    report_only: bool = False
    dry_run: bool = False
    timing: bool = True
    timing_only: bool = False  # report the finished runs (train nothing) and measure the timing
    timing_threads: int = 2
    timing_steps: int = 8
    retrieval_n: int = 10_000


@dataclass(frozen=True)
class Job:
    """One pretraining run and its evaluation."""

    method: str
    batch_size: int
    lr: float
    seed: int
    run_dir: Path
    overrides: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def group(self) -> tuple[str, int]:
        return (self.method, self.batch_size)

    @property
    def run(self) -> Run:
        cfg = build_config(None, {**self.overrides, "out": str(self.run_dir)})
        return Run(self.name, cfg, marker=SUMMARY_NAME)


def _check(options: ImageTextOptions, base: Mapping[str, Any]) -> None:
    unknown = [m for m in options.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; valid: {list(METHODS)}")
    if not base.get("paired"):
        raise SystemExit(f"{options.config} is not a paired recipe (paired = true)")
    if not options.seeds or not options.lrs or not options.batch_sizes:
        raise SystemExit("give at least one seed, one lr and one batch size")
    if any(b < 2 for b in options.batch_sizes):
        raise SystemExit(
            f"batch sizes must be >= 2 (contrastive losses need negatives), got {options.batch_sizes}"
        )


def base_recipe(options: ImageTextOptions) -> dict[str, Any]:
    """The recipe's values with the study's overrides (``sets``, ``epochs``)."""
    base = dict(load_recipe(options.config))
    base.update(options.sets)
    if options.epochs is not None:
        base["epochs"] = options.epochs
    base.update(progress=False, threads=options.threads, checkpoint_every=1)
    return base


def _job(
    options: ImageTextOptions, base: Mapping[str, Any], method: str, b: int, lr: float, seed: int
) -> Job:
    name = f"{method}_B{b}_lr{lr:g}_s{seed}"
    overrides = {**base, **METHODS[method][1], "batch_size": b, "lr": lr, "seed": seed}
    return Job(method, b, lr, seed, Path(options.work_dir) / name, overrides)


def plan_searches(options: ImageTextOptions, base: Mapping[str, Any]) -> list[Job]:
    """The lr-search runs: the first seed at every lr, for every (method, B)."""
    seed = options.seeds[0]
    return [
        _job(options, base, m, b, lr, seed)
        for m in options.methods
        for b in options.batch_sizes
        for lr in options.lrs
    ]


def selection_score(summary: Mapping[str, Any]) -> float:
    """The validation mean recall of a run: recall@1, @5, @10 of both directions (1:1), averaged."""
    val = summary["val_retrieval"]
    return statistics.fmean(val[d][f"recall@{k}"] for d in DIRECTIONS for k in SELECTION_KS)


# ----------------------------------------------------------------------------- one job


def _evaluation(checkpoint: Path, run_dir: Path) -> dict[str, Any]:
    from mmcr.evaluate import EvalOptions, evaluate

    res = evaluate(
        EvalOptions(checkpoint=str(checkpoint), out=str(run_dir / "eval"), probe=False, report=False)
    )
    out: dict[str, Any] = {
        "val_retrieval": _recalls(res["val_retrieval"]),
        "retrieval": _recalls(res["retrieval"]),
    }
    out["multi_caption"] = _recalls(res["retrieval"]["multi_caption"])
    out["zero_shot"] = {k: v["top1"] for k, v in res.get("zero_shot", {}).items() if isinstance(v, dict)}
    out["knn"] = {k: v["knn"]["test_accuracy"] for k, v in res.get("image_probes", {}).items()}
    out["eval_s"] = res["seconds"]
    return out


def _recalls(section: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    keys = [f"recall@{k}" for k in SELECTION_KS] + ["median_rank"]
    return {d: {k: float(section[d][k]) for k in keys} for d in DIRECTIONS}


def run_job(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Train (resuming if interrupted), evaluate, write the run's summary.json."""
    run_dir = Path(spec["run_dir"])
    overrides = dict(spec["overrides"], out=str(run_dir))
    torch.set_num_threads(int(overrides.get("threads") or 1))
    run = Run(run_dir.name, build_config(None, overrides), marker=SUMMARY_NAME)
    checkpoint = run.train(verbose=True)  # the job's output already goes to its log
    last_step, _ = run.last_metrics()
    steps = int(last_step.get("step", 0))
    loop_s = float(last_step.get("time", math.nan))
    summary: dict[str, Any] = {
        "method": spec["method"],
        "objective": run.cfg.objective,
        "batch_size": run.cfg.batch_size,
        "lr": run.cfg.lr,
        "seed": run.cfg.seed,
        "steps": steps,
        "epochs": float(last_step.get("epoch", 0.0)),
        "pairs_seen": steps * run.cfg.batch_size,
        "final_loss": last_step.get("loss"),
        "train_loop_s": loop_s,
        "step_ms": 1000 * loop_s / steps if steps else None,
    }
    summary.update(_evaluation(checkpoint, run_dir))
    run.finish(summary)
    return summary


def worker_main(spec_path: str) -> int:
    run_job(read_json(spec_path))
    return 0


def _launch(job: Job, options: ImageTextOptions) -> dict[str, Any] | None:
    """Run one job in a subprocess (its output in RUN/log.txt); its summary, or None if it failed."""
    job.run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = job.run_dir / SPEC_NAME
    write_json(
        spec_file, {"method": job.method, "run_dir": str(job.run_dir), "overrides": dict(job.overrides)}
    )
    status = run_worker("mmcr.experiments.image_text", spec_file, job.run_dir / JOB_LOG, options.threads)
    return job.run.result() if status == 0 else None


# ----------------------------------------------------------------------------- the schedule


class _Schedule:
    """The searches first; a (method, B) group's final runs as soon as its searches are in."""

    def __init__(self, options: ImageTextOptions, base: Mapping[str, Any]) -> None:
        self.options, self.base = options, base
        self.searches = plan_searches(options, base)
        self.results: dict[str, dict[str, Any] | None] = {}
        self.chosen: dict[tuple[str, int], float] = {}
        self.finals: dict[tuple[str, int], list[Job]] = {}

    def group_searches(self, group: tuple[str, int]) -> list[Job]:
        return [j for j in self.searches if j.group == group]

    def choose(self, group: tuple[str, int]) -> list[Job]:
        """The group's lr from its finished searches, and its final jobs (empty if none succeeded)."""
        scored = [
            (selection_score(s), job.lr)
            for job in self.group_searches(group)
            if (s := self.results.get(job.name)) is not None
        ]
        if not scored:
            return []
        lr = max(scored)[1]
        self.chosen[group] = lr
        first = next(j for j in self.group_searches(group) if j.lr == lr)
        method, b = group
        others = [_job(self.options, self.base, method, b, lr, seed) for seed in self.options.seeds[1:]]
        self.finals[group] = [first, *others]
        return others


def _progress(job: Job, s: Mapping[str, Any] | None, done: int, t0: float) -> str:
    head = f"[{done} {time.perf_counter() - t0:6.0f}s] {job.name}"
    if s is None:
        return f"{head}: FAILED (see {job.run_dir / JOB_LOG})"
    r = s["retrieval"]
    return (
        f"{head}: val score {selection_score(s):.4f}, test R@1 i2t {r['image_to_text']['recall@1']:.4f} "
        f"t2i {r['text_to_image']['recall@1']:.4f}, {s['step_ms']:.0f} ms/step"
    )


def _run_all(schedule: _Schedule, options: ImageTextOptions, t0: float) -> None:
    """Run every unfinished job, ``parallel`` at once, enqueueing each group's finals when ready."""
    pending_groups = {j.group for j in schedule.searches}
    queue: list[Job] = []
    for job in schedule.searches:
        summary = job.run.result()
        if summary is not None:
            schedule.results[job.name] = summary
        else:
            queue.append(job)

    def ready_groups() -> list[tuple[str, int]]:
        return [
            g
            for g in sorted(pending_groups)
            if all(j.name in schedule.results for j in schedule.group_searches(g))
        ]

    def release() -> None:
        for g in ready_groups():
            pending_groups.discard(g)
            for job in schedule.choose(g):
                check_fingerprints([job.run])
                summary = job.run.result()
                if summary is not None:
                    schedule.results[job.name] = summary
                elif not options.report_only:
                    queue.append(job)

    release()
    if options.report_only:
        return
    order = list(options.batch_sizes)
    queue.sort(key=lambda j: (order.index(j.batch_size), j.seed == options.seeds[0], j.method))
    done = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.parallel)) as pool:
        running: dict[concurrent.futures.Future[dict[str, Any] | None], Job] = {}
        while queue or running:
            while queue and len(running) < max(1, options.parallel):
                job = queue.pop(0)
                running[pool.submit(_launch, job, options)] = job
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                summary = fut.result()
                schedule.results[job.name] = summary
                done += 1
                print(_progress(job, summary, done, t0), flush=True)
            release()
            # batch sizes in the order given (an unfinished study covers every method at the first
            # ones), and within one, a group's finals before the remaining searches
            queue.sort(key=lambda j: (order.index(j.batch_size), j.seed == options.seeds[0], j.method))


# ----------------------------------------------------------------------------- the report


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return (math.nan, math.nan)
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _flat_scores(summary: Mapping[str, Any]) -> dict[str, float]:
    """A final run's scores by flat key: ``retrieval_image_to_text_recall@1``, ``zero_shot_category``..."""
    flat = {
        f"{section}_{d}_{k}": float(v)
        for section in ("retrieval", "multi_caption")
        for d in DIRECTIONS
        for k, v in summary[section][d].items()
    }
    flat["val_score"] = selection_score(summary)
    flat["step_ms"] = float(summary["step_ms"])
    flat.update({f"zero_shot_{k}": float(v) for k, v in summary["zero_shot"].items()})
    flat.update({f"knn_{k}": float(v) for k, v in summary["knn"].items()})
    return flat


def aggregate(schedule: _Schedule, options: ImageTextOptions) -> dict[str, Any]:
    """results.json's contents: per (method, B) the chosen lr, the search and the seeds' scores."""
    rows: list[dict[str, Any]] = []
    for method in options.methods:
        for b in sorted(options.batch_sizes):
            group = (method, b)
            search = {
                f"{j.lr:g}": (selection_score(s) if (s := schedule.results.get(j.name)) is not None else None)
                for j in schedule.group_searches(group)
            }
            finals = [
                s for j in schedule.finals.get(group, []) if (s := schedule.results.get(j.name)) is not None
            ]
            row: dict[str, Any] = {
                "method": method,
                "label": METHODS[method][0],
                "batch_size": b,
                "lr": schedule.chosen.get(group),
                "search_val_score": search,
                "seeds": [s["seed"] for s in finals],
                "steps": finals[0]["steps"] if finals else None,
            }
            values = [_flat_scores(s) for s in finals]
            for key in values[0] if values else ():
                mean, std = _mean_std([v[key] for v in values])
                row[key] = {"mean": mean, "std": std}
            rows.append(row)
    return {"protocol": __doc__.split("\n\n")[0] if __doc__ else "", "rows": rows}


def _cell(row: Mapping[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    v = row.get(key)
    if not v or v["mean"] != v["mean"]:
        return "n/a"
    return f"{scale * v['mean']:.{digits}f} ± {scale * v['std']:.{digits}f}"


def render_table(results: Mapping[str, Any], options: ImageTextOptions) -> str:
    rows = results["rows"]
    bs = sorted(options.batch_sizes)
    lines = []
    tables = [
        ("retrieval_image_to_text_recall@1", "Image-to-text recall@1 (%), test, 1:1 protocol"),
        ("retrieval_text_to_image_recall@1", "Text-to-image recall@1 (%), test, 1:1 protocol"),
        ("multi_caption_image_to_text_recall@1", "Image-to-text recall@1 (%), test, multi-caption protocol"),
        ("retrieval_image_to_text_recall@10", "Image-to-text recall@10 (%), test, 1:1 protocol"),
        ("zero_shot_category", "Zero-shot category top-1 (%), test"),
        ("knn_category", "Image tower kNN, category (%), test"),
    ]
    for key, title in tables:
        if not any(key in r for r in rows):
            continue
        lines += [
            f"**{title}** (mean ± std over seeds)",
            "",
            "| method | " + " | ".join(f"B = {b}" for b in bs) + " |",
        ]
        lines.append("|---|" + "---|" * len(bs))
        for m in options.methods:
            cells = [
                _cell(next(r for r in rows if r["method"] == m and r["batch_size"] == b), key) for b in bs
            ]
            lines.append(f"| {METHODS[m][0]} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["**Chosen lr (validation mean recall) and ms per step**", ""]
    lines += ["| method | " + " | ".join(f"B = {b}" for b in bs) + " |", "|---|" + "---|" * len(bs)]
    for m in options.methods:
        cells = []
        for b in bs:
            r = next(r for r in rows if r["method"] == m and r["batch_size"] == b)
            lr = f"{r['lr']:g}" if r["lr"] is not None else "n/a"
            cells.append(f"{lr}, {_cell(r, 'step_ms', scale=1.0, digits=0)} ms")
        lines.append(f"| {METHODS[m][0]} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def plot_recall(results: Mapping[str, Any], options: ImageTextOptions, path: Path) -> Path:
    """Recall@1 against the batch size, one panel per direction, mean and std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, d in zip(axes, DIRECTIONS, strict=True):
        for m in options.methods:
            key = f"retrieval_{d}_recall@1"
            rows = sorted(
                (
                    r
                    for r in results["rows"]
                    if r["method"] == m and r.get(key) and r[key]["mean"] == r[key]["mean"]
                ),
                key=lambda r: r["batch_size"],
            )
            xs = [r["batch_size"] for r in rows]
            ys = [100 * r[key]["mean"] for r in rows]
            es = [100 * r[key]["std"] for r in rows]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=METHODS[m][0])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(options.batch_sizes), [str(b) for b in sorted(options.batch_sizes)])
        ax.set_xlabel("batch size B (same epochs: same pairs seen)")
        ax.set_title(d.replace("_", " ") + ", test, 1:1")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@1 (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- timing


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _time_one(cfg: Any, repeats: int) -> dict[str, float]:
    """Median step time of a paired recipe, and of its objective's forward + backward alone."""
    from mmcr.training.paired import build_paired_state, paired_train_step

    state = build_paired_state(cfg, torch.device("cpu"))
    batches = state.batches()
    step_s = _median_s(lambda: paired_train_step(state, next(batches)), repeats)
    z = torch.randn(cfg.batch_size, cfg.image_views + cfg.text_views, cfg.projector_dim, requires_grad=True)
    loss_s = _median_s(lambda: state.network.objective(z).backward(), repeats)
    return {"step_ms": 1000 * step_s, "loss_ms": 1000 * loss_s, "loss_share": loss_s / step_s}


def measure_timing(options: ImageTextOptions, base: Mapping[str, Any]) -> dict[str, Any]:
    """Step time and the loss's share of it, per objective and B; a 10k x 10k retrieval's time."""
    from mmcr.evaluation.retrieval import retrieval_metrics

    torch.set_num_threads(options.timing_threads)
    rows = []
    for method in options.methods:
        for b in options.batch_sizes:
            cfg = build_config(None, {**base, **METHODS[method][1], "batch_size": b, "out": "/nonexistent"})
            row: dict[str, Any] = {"method": method, "batch_size": b, **_time_one(cfg, options.timing_steps)}
            rows.append(row)
            print(
                f"timing {method} B={b}: step {row['step_ms']:.1f} ms, loss {row['loss_ms']:.2f} ms "
                f"({100 * row['loss_share']:.1f} %)",
                flush=True,
            )
    n = options.retrieval_n
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(n, 128, generator=g), dim=1)
    texts = torch.nn.functional.normalize(
        images + 0.5 * torch.randn(n, 128, generator=g) / math.sqrt(128), dim=1
    )
    ids = torch.arange(n)
    t = time.perf_counter()
    metrics = retrieval_metrics(images, texts, ids)
    retrieval_s = time.perf_counter() - t
    print(f"timing: retrieval of {n} x {n} (both directions) {retrieval_s:.2f} s", flush=True)
    return {
        "threads": options.timing_threads,
        "rows": rows,
        "retrieval": {"n": n, "dim": 128, "seconds": retrieval_s, "recall@1_image_to_text": _r1(metrics)},
        "load_average": list(os.getloadavg()),
    }


def _r1(metrics: Mapping[str, Any]) -> float | None:
    section = metrics.get("image_to_text")
    return float(section["recall@1"]) if isinstance(section, Mapping) and "recall@1" in section else None


def render_timing(timing: Mapping[str, Any], options: ImageTextOptions) -> str:
    bs = sorted(options.batch_sizes)
    lines = [
        f"**Step time (ms) and the loss's share of it**, {timing['threads']} threads, median of "
        f"{options.timing_steps} steps",
        "",
        "| method | " + " | ".join(f"B = {b}" for b in bs) + " |",
        "|---|" + "---|" * len(bs),
    ]
    for m in options.methods:
        cells = []
        for b in bs:
            r = next(r for r in timing["rows"] if r["method"] == m and r["batch_size"] == b)
            cells.append(f"{r['step_ms']:.0f} ({100 * r['loss_share']:.1f} %)")
        lines.append(f"| {METHODS[m][0]} | " + " | ".join(cells) + " |")
    ret = timing["retrieval"]
    lines += [
        "",
        f"Retrieval evaluation, {ret['n']} x {ret['n']} (both directions, chunked): {ret['seconds']:.2f} s",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def run_image_text(options: ImageTextOptions) -> dict[str, Any]:
    """Run (or resume, or only report) the study; results.json's contents."""
    t0 = time.perf_counter()
    base = base_recipe(options)
    _check(options, base)
    searches = plan_searches(options, base)
    n_final = len(options.methods) * len(options.batch_sizes) * (len(options.seeds) - 1)
    print(
        f"{len(searches)} search runs + {n_final} further seeds, {base.get('epochs')} epochs each; methods "
        f"{list(options.methods)}, B {list(options.batch_sizes)}, lrs {list(options.lrs)}, seeds "
        f"{list(options.seeds)}; runs in {options.work_dir}",
        flush=True,
    )
    if options.dry_run:
        for job in searches:
            print(f"  {job.name}", flush=True)
        return {"dry_run": True}
    check_fingerprints(job.run for job in searches)
    if not options.report_only:
        write_json(Path(options.work_dir) / "recipe.yaml", base, sort_keys=True)
    schedule = _Schedule(options, base)
    try:
        _run_all(schedule, options, t0)
    except Exception:
        traceback.print_exc()
        raise
    results = aggregate(schedule, options)
    results["recipe"] = options.config
    results["epochs"] = base.get("epochs")
    results["lrs"] = list(options.lrs)
    results["seeds"] = list(options.seeds)
    out = Path(options.out)
    table = render_table(results, options)
    if options.timing and (options.timing_only or not options.report_only):
        results["timing"] = measure_timing(options, base)
    elif (out / "results.json").exists() and "timing" in (old := read_json(out / "results.json")):
        results["timing"] = old["timing"]  # a report-only pass keeps the last measured timing
    if "timing" in results:
        table += "\n" + render_timing(results["timing"], options)
    results["wall_s"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    write_text(out / "table.md", table)
    plot_recall(results, options, out / "recall_vs_batch.png")
    print(table, flush=True)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and {out / 'recall_vs_batch.png'}", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    sys.exit(f"usage: python -m mmcr.experiments.image_text --worker SPEC_JSON (got {sys.argv[1:]})")
