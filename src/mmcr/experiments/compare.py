"""MMCR against SimCLR, Barlow Twins and VICReg in the same harness, measured side by side.

Every method gets the same encoder, projector, augmentation, optimiser, batch size B and
number of optimiser steps (the base recipe, read at run time); only the objective and, for
MMCR, the number of views K differ (MMCR at K = 2, 4, 8; the baselines at K = 2 with their
classes' default hyper-parameters). At the same B and steps, K = 8 costs about 4x the
compute of K = 2: that is what "the same optimiser budget" means here, and the table shows
images/s and time per epoch so the difference is visible.

Protocol (:func:`run_comparison`):

1. learning-rate search per method: seed 0, a short budget (``search_steps``), each lr of
   ``lrs``; the lr with the best end-of-run *validation* kNN accuracy (``knn_val_acc`` in
   metrics.jsonl) wins. The test split is never looked at.
2. ``seeds`` per method at its chosen lr and the full budget (``budget_epochs`` of the
   training split, optionally capped by ``max_train_images`` images seen), each scored by
   :func:`mmcr.evaluate.evaluate`: kNN (k, T chosen on validation) and an L-BFGS softmax
   probe on frozen backbone features (L2 chosen on validation over
   ``probe_weight_decays``, ``probe_max_iter`` iterations; the same for every method),
   both reported on test, and the geometry (effective rank, PPE) of the test embeddings.
3. results.json and table.md (mean +- std over seeds) in ``out``.

``max_train_images`` caps the images *seen* per final run (steps = N // B); it does not
draw a subset of the training set.

Runs live in ``work_dir``/<method>_lr<lr>_s<seed>[_search]/ (:mod:`mmcr.experiments.runner`
run folders); a run whose summary.json exists is skipped, and an interrupted one resumes
from its checkpoint, so the whole comparison can be re-launched until it completes. A
finished run whose saved configuration differs from the planned one (the recipe changed) is
an error, not silently reused; each invocation that runs saves the recipe it read as
WORK/recipe.yaml (JSON, which YAML reads), so a later report can read the recipe the runs
were made with.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmcr.config import load_recipe
from mmcr.experiments.compare_plan import METHODS, CompareOptions, Plan, choose_lrs, final_jobs, plan
from mmcr.experiments.compare_report import aggregate, render_table
from mmcr.experiments.compare_runs import run_jobs
from mmcr.records import write_json, write_text

__all__ = ["run_comparison"]


def _header(p: Plan) -> str:
    return (
        f"budget: {p.full_steps} steps x B={p.base.batch_size} "
        f"({p.full_steps / p.steps_per_epoch:.2f} epochs); search: {p.search_steps} steps, "
        f"lrs {p.lrs}; seeds {p.seeds}; methods {p.methods}"
    )


def _print_dry_run(p: Plan, options: CompareOptions) -> None:
    n_final = len(p.methods) * len(p.seeds)
    cost = sum(j.cost for j in p.search) + sum(p.full_steps * METHODS[m][1] * len(p.seeds) for m in p.methods)
    print(
        f"dry run: {len(p.search)} search runs + {n_final} final runs (+ evaluations), "
        f"{cost} view-steps (steps x K) in {options.work_dir}",
        flush=True,
    )
    for job in p.search:
        print(f"  search {job.name}: {job.steps} steps", flush=True)
    for m in p.methods:
        print(f"  final  {m}: seeds {p.seeds}, {p.full_steps} steps, K={METHODS[m][1]}", flush=True)


def _write_results(results: dict[str, Any], options: CompareOptions) -> None:
    out = Path(options.out)
    json_path = Path(options.json) if options.json else out / "results.json"
    write_json(json_path, results)
    table = render_table(results)
    write_text(out / "table.md", table)
    print(table, flush=True)
    print(f"wrote {json_path} and {out / 'table.md'}", flush=True)


def run_comparison(options: CompareOptions) -> dict[str, Any]:
    """Run (or resume, or only report) the comparison; results.json's contents.

    With ``dry_run`` nothing runs and ``{"dry_run": True, "plan": header}`` is returned.

    Raises:
        SystemExit: an unknown method, a batch larger than the training split, or finished
            runs made with a different configuration.
    """
    t0 = time.perf_counter()
    p = plan(options)
    header = _header(p)
    print(header, flush=True)
    if options.dry_run:
        _print_dry_run(p, options)
        return {"dry_run": True, "plan": header}
    if not options.report_only:
        # the recipe as this comparison read it: --config WORK/recipe.yaml reports on these runs later
        snapshot = Path(options.work_dir) / "recipe.yaml"
        write_json(snapshot, load_recipe(options.config), sort_keys=True)
    search = run_jobs(p.search, options, t0)
    chosen, search_table = choose_lrs(p, search)
    print("chosen lr: " + ", ".join(f"{m} {lr:g}" for m, lr in chosen.items()), flush=True)
    finals_list = final_jobs(p, chosen, options.threads)
    finals = run_jobs(finals_list, options, t0)
    results = aggregate(
        p,
        options,
        chosen,
        search_table,
        list(search.values()),
        finals,
        finals_list,
        time.perf_counter() - t0,
    )
    _write_results(results, options)
    return results
