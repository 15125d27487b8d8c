"""A sweep directory's files: the stored specification, one result line per run, the number formats.

Layout of a sweep directory ``OUT``::

    OUT/sweep.json          the sweep's kind and resolved specification (what report reads)
    OUT/results.jsonl       one JSON line per finished run
    OUT/runs/<name>/        the run's folder (:mod:`mmcr.experiments.runner`), with
                            result.json, its done-marker (its result line)
    OUT/theory_grid.json    (double descent) Monte-Carlo PPE of ideal embeddings on the grid
    OUT/summary.json, summary.md and *.png     the analysis, redrawn by ``mmcr report OUT``
    OUT/fit.json, fit.md, fit_*.png            (scaling) written by ``mmcr fit OUT``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmcr.experiments.spec import SWEEP_KINDS
from mmcr.records import append_jsonl, read_json, read_jsonl

__all__ = ["append_result", "load_meta", "read_results"]

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.jsonl"
THEORY_FILE = "theory_grid.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
FIT_FILE = "fit.json"
FIT_MD = "fit.md"

#: The quantities a scaling law may be fitted to, and the measures of compute, of a result line.
TARGETS = {
    "ppe": "train-batch PPE",
    "val_ppe": "validation PPE",
}
COMPUTES = {
    "flops": "training FLOPs (3 x forward x B x K x S)",
    "sample_views": "sample-views (B x K x S)",
}
#: How a result line's ``flops`` and ``sample_views`` are counted.
FLOPS_CONVENTION = (
    "Compute: FLOPs = 3 x F x B x K x S, with F the forward FLOPs of one view through encoder "
    "and projector (count_forward_flops: 2 per multiply-add of conv and linear layers; biases, "
    "normalisation, activations and the loss not counted), backward = 2 x forward, B images per "
    "step, K views each, S steps. Sample-views = B x K x S."
)


def read_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The result lines of a sweep (the last line of each run name wins)."""
    by_name: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(Path(sweep_dir) / RESULTS_FILE):
        if "name" in record:
            by_name[str(record["name"])] = record
    return list(by_name.values())


def append_result(sweep_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Add a run's result line to ``OUT/results.jsonl``."""
    append_jsonl(Path(sweep_dir) / RESULTS_FILE, record)


def load_meta(sweep_dir: Path) -> dict[str, Any]:
    """OUT/sweep.json, checked to name a known kind of sweep."""
    path = sweep_dir / SWEEP_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep directory: it has no {SWEEP_FILE} "
            "(written by mmcr sweep double-descent / scaling)"
        )
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds no sweep description (a JSON object); it is corrupt.")
    if meta.get("kind") not in SWEEP_KINDS:
        raise ValueError(f"{path} names an unknown sweep kind {meta.get('kind')!r}.")
    if not isinstance(meta.get("spec"), dict):
        raise ValueError(
            f"{path} has no 'spec' (the sweep's resolved specification); it is corrupt or was "
            "not written by mmcr sweep: rerun the sweep's command to rewrite it"
        )
    return meta


def positive(value: Any) -> bool:
    """Whether ``value`` is a finite number > 0 (drawable on a log axis)."""
    return value is not None and math.isfinite(float(value)) and float(value) > 0


def mean(values: Iterable[float | None]) -> float:
    """The mean of the finite values (None and NaN left out); NaN if there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table or a progress line; a dash for a missing or non-finite one."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "  -   "
    return f"{float(value):.{digits}f}"
