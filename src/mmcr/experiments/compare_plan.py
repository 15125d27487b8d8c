"""The objective comparison's plan: the methods, their budget, the runs of the lr search and of the seeds.

Every method gets the base recipe's encoder, projector, augmentation, optimiser, batch size
and number of steps; only the objective and, for MMCR, the number of views K differ (and
X-CLR, alone, sees the class names: its targets come from their similarity). A run
is a :class:`Job`; its folder is ``WORK/<method>_lr<lr>_s<seed>[_search]/``, a run folder
of :mod:`mmcr.experiments.runner` whose done marker is ``summary.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcr.build import load_data
from mmcr.config import PretrainConfig, build_config, load_recipe
from mmcr.experiments.runner import Run

__all__ = [
    "LABELS",
    "METHODS",
    "OBJECTIVE_ARGS",
    "CompareOptions",
    "Job",
    "Plan",
    "choose_lrs",
    "final_jobs",
    "plan",
]

#: name -> (objective, K)
METHODS: dict[str, tuple[str, int]] = {
    "mmcr_k2": ("mmcr", 2),
    "mmcr_k4": ("mmcr", 4),
    "mmcr_k8": ("mmcr", 8),
    "simclr": ("simclr", 2),
    "barlow_twins": ("barlow_twins", 2),
    "vicreg": ("vicreg", 2),
    "xclr": ("xclr", 2),
}
LABELS = {
    "mmcr_k2": "MMCR (K=2)",
    "mmcr_k4": "MMCR (K=4)",
    "mmcr_k8": "MMCR (K=8)",
    "simclr": "SimCLR",
    "barlow_twins": "Barlow Twins",
    "vicreg": "VICReg",
    "xclr": "X-CLR",
}
#: The objective_args of a method other than MMCR (the others take their defaults, {}).
#: X-CLR's targets: the class-name graph (sentence embeddings of the data set's class names).
OBJECTIVE_ARGS: dict[str, dict[str, Any]] = {
    "xclr": {"graph": "class-names"},
}
#: A job's done marker: its training and evaluation numbers.
SUMMARY_NAME = "summary.json"
#: What a job was launched with (its start time is the file's).
SPEC_NAME = "spec.json"
#: A job's printed output, training and evaluation.
JOB_LOG = "log.txt"


@dataclass
class CompareOptions:
    """The settings of one comparison (the options of ``benchmarks/compare_objectives.py``).

    Attributes:
        config: the base recipe shared by every method.
        sets: recipe keys overridden for every run (values as given on the command line).
        methods: names of :data:`METHODS` to compare.
        seeds: seeds of the final runs.
        lrs: learning rates of the search.
        budget_epochs: the final runs' budget in epochs of the training split (rounded to steps).
        max_train_images: cap on the images seen per final run (steps = this // B), or None.
        search_steps: steps of each lr-search run (seed 0).
        parallel: training processes at once; threads: torch threads per process.
        probe_weight_decays, probe_max_iter: the linear probe's L2 grid and L-BFGS iterations.
        geometry_images: test images whose K-view embeddings give the effective rank and PPE.
        work_dir: where the runs go; out: folder of results.json and table.md;
        json: path of the results JSON (None: OUT/results.json).
        dry_run: print the plan only; report_only: run nothing, report the finished runs.
    """

    config: str
    sets: dict[str, Any]
    methods: list[str]
    seeds: list[int]
    lrs: list[float]
    budget_epochs: float
    search_steps: int
    parallel: int
    threads: int
    probe_weight_decays: list[float]
    probe_max_iter: int
    geometry_images: int
    work_dir: str
    out: str
    max_train_images: int | None = None
    json: str | None = None
    dry_run: bool = False
    report_only: bool = False


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

    @property
    def run(self) -> Run:
        """The job's run folder (the overrides hold the recipe's values)."""
        cfg = build_config(None, {**self.overrides, "out": str(self.run_dir)})
        return Run(self.name, cfg, marker=SUMMARY_NAME)


@dataclass
class Plan:
    """The resolved comparison: base configuration, budget, and the lr-search jobs."""

    methods: list[str]
    lrs: list[float]
    seeds: list[int]
    sets: dict[str, Any]  # the recipe, with the --set overrides
    base: PretrainConfig
    steps_per_epoch: int
    full_steps: int
    search_steps: int
    work: Path
    search: list[Job] = field(default_factory=list)


def _lr_tag(lr: float) -> str:
    return f"{lr:g}"


def _base(sets: dict[str, Any]) -> tuple[PretrainConfig, int]:
    """The resolved base configuration and its steps per epoch (loads the training split once)."""
    cfg = build_config(None, sets)
    data = load_data(cfg)
    steps_per_epoch = len(data.train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"batch_size {cfg.batch_size} exceeds the {len(data.train)} training images")
    return cfg, steps_per_epoch


def _run_overrides(
    base: PretrainConfig,
    sets: dict[str, Any],
    method: str,
    lr: float,
    seed: int,
    steps: int,
    spe: int,
    threads: int,
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
        # the baselines' default hyper-parameters (X-CLR: and where its graph comes from)
        over.update(lmbda=0.0, objective_args=dict(OBJECTIVE_ARGS.get(method, {})))
    return over


def _job(p: Plan, method: str, lr: float, seed: int, kind: str, steps: int, threads: int) -> Job:
    suffix = "_search" if kind == "search" else ""
    return Job(
        method,
        lr,
        seed,
        kind,
        steps,
        p.work / f"{method}_lr{_lr_tag(lr)}_s{seed}{suffix}",
        _run_overrides(p.base, p.sets, method, lr, seed, steps, p.steps_per_epoch, threads),
    )


def plan(options: CompareOptions) -> Plan:
    """Resolve the recipe and the budget, and plan the lr search (seed 0, every method and lr)."""
    unknown = [m for m in options.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    # the recipe is read once, so every run of this invocation sees the same values
    sets = {**load_recipe(options.config), **options.sets}
    base, spe = _base(sets)
    full_steps = max(1, round(options.budget_epochs * spe))
    if options.max_train_images is not None:
        full_steps = max(1, min(full_steps, options.max_train_images // base.batch_size))
    p = Plan(
        methods=list(options.methods),
        lrs=list(options.lrs),
        seeds=list(options.seeds),
        sets=sets,
        base=base,
        steps_per_epoch=spe,
        full_steps=full_steps,
        search_steps=max(1, options.search_steps),
        work=Path(options.work_dir),
    )
    p.search = [
        _job(p, m, lr, 0, "search", p.search_steps, options.threads) for m in p.methods for lr in p.lrs
    ]
    return p


def final_jobs(p: Plan, chosen: dict[str, float], threads: int) -> list[Job]:
    """The final runs: every seed of every method that has a chosen lr, at the full budget."""
    return [
        _job(p, m, chosen[m], s, "final", p.full_steps, threads)
        for m in p.methods
        if m in chosen
        for s in p.seeds
    ]


def choose_lrs(
    p: Plan, search: dict[str, dict[str, Any] | None]
) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    """Per method, the lr with the best validation kNN accuracy (ties: the smaller lr)."""
    chosen: dict[str, float] = {}
    table: dict[str, list[dict[str, Any]]] = {}
    for job in p.search:
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
