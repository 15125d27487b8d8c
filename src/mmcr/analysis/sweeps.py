"""Sweeps of short pretraining runs: double descent over (P, D) and compute scaling laws.

Schaeffer et al. (2024), arXiv 2406.09366, study the MMCR pretraining loss as a function of
the batch size P and embedding dimension D (a "double descent" ridge at P = D) and of
compute (gradient steps, batch size, embedding dimension, number of views). This module
drives many short :func:`~mmcr.training.pretrain.pretrain` runs from one sweep file, records
one result line per finished run, and draws the figures and summaries from those lines.

The measured quantity is the pretraining percent error (PPE),

    PPE = (sqrt(P min(P, D)) - ||C||_*) / sqrt(P min(P, D))  in [0, 1],

not the raw loss -||C||_*: the loss's optimum sqrt(P min(P, D)) grows with P and D, so raw
losses of different cells are not comparable, while the PPE is a fraction of each cell's own
optimum. Two PPEs are recorded per run: the train-batch PPE averaged over the last
``ppe_last`` logged steps, and the PPE of the validation monitor (held-out images, K fresh
views, averaged over chunks of P images).

Layout of a sweep directory ``OUT``::

    OUT/sweep.json          the sweep's kind and resolved specification (what report reads)
    OUT/results.jsonl       one JSON line per finished run
    OUT/runs/<name>/        pretrain's output: config.json, metrics.jsonl, last.pt, train.log,
                            and result.json, the run's done-marker (its result line)
    OUT/theory_grid.json    (double descent) Monte-Carlo PPE of ideal embeddings on the grid
    OUT/summary.json, summary.md and *.png     the analysis, redrawn by ``mmcr report OUT``
    OUT/fit.json, fit.md, fit_*.png            (scaling) written by ``mmcr fit OUT``

Sweeps are resumable: a run with a result line or a done-marker is skipped, and a run that
was interrupted continues from its last checkpoint (``pretrain(..., resume=True)``; a run
killed before its first checkpoint starts again).

Sweep files are TOML. Common keys::

    kind = "double-descent"            # or "scaling"; must match the command if given
    description = "..."                # free text, copied to the summary
    out = "runs/dd"                    # default output directory (--out overrides)
    base_recipe = "configs/x.toml"     # optional pretraining recipe (relative to the current
                                       # directory, else to the sweep file)
    seeds = [0]                        # one run per seed and grid point
    ppe_last = 5                       # logged steps averaged for the train-batch PPE
    fallback_to_digits = true          # Fashion-MNIST absent: use scikit-learn's digits
    [base]                             # PretrainConfig fields, over the recipe
    [budget]                           # double descent only: max_steps and/or epochs

Double descent: ``[grid] P = [...], D = [...]``, ``[theory] trials, seed`` (Monte Carlo
of :func:`~mmcr.analysis.theory.ppe_grid`) and ``control_init = true`` (also measure the
PPE of each cell's network at initialisation, on the validation monitor's protocol: the
PPE's normaliser sqrt(P min(P, D)) alone can put a ridge at P = D, and the control shows how
much of the measured ridge is there before any training). Scaling: ``[point]`` (the base point: steps,
batch_size, projector_dim, num_views), ``[axes]`` (values of each variable swept one at a
time around the point) and an optional ``[joint]`` (a Cartesian grid over two or more
variables, the others at the point). Unless ``[base]`` sets them, sweeps use
``progress = false``, ``eval_every = 0`` (validation monitor at the end only) and
``warmup_epochs = 0``; with a step budget only, ``epochs`` is set so large that
``max_steps`` is what ends each run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

__all__ = [
    "SCALING_VARIABLES",
    "SWEEP_KINDS",
    "PlannedRun",
    "SweepSpec",
    "collect_result",
    "fit_sweep",
    "init_ppe",
    "load_sweep",
    "parse_sweep",
    "peak_table",
    "plan_runs",
    "read_results",
    "report_sweep",
    "ridge_contrast",
    "run_config",
    "run_sweep",
]

SWEEP_KINDS = ("double-descent", "scaling")
#: The four variables of a scaling sweep; ``steps`` is pretrain's ``max_steps``.
SCALING_VARIABLES = ("steps", "batch_size", "projector_dim", "num_views")
_VARIABLE_LABELS = {
    "steps": "gradient steps S",
    "batch_size": "batch size B",
    "projector_dim": "embedding dimension D",
    "num_views": "views per image K",
}
_TARGETS = {
    "ppe": "train-batch PPE",
    "val_ppe": "validation PPE",
}
_COMPUTES = {
    "flops": "training FLOPs (3 x forward x B x K x S)",
    "sample_views": "sample-views (B x K x S)",
}

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.jsonl"
DONE_FILE = "result.json"
THEORY_FILE = "theory_grid.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
FIT_FILE = "fit.json"
FIT_MD = "fit.md"

_HUGE_EPOCHS = 1_000_000
# Fields that may differ between a finished run and the same run planned again.
_UNFINGERPRINTED = frozenset({"out", "progress", "threads", "device", "data_dir"})
_COMMON_KEYS = (
    "kind",
    "description",
    "out",
    "base_recipe",
    "base",
    "budget",
    "seeds",
    "ppe_last",
    "fallback_to_digits",
)
_KIND_KEYS = {"double-descent": ("grid", "theory", "control_init"), "scaling": ("point", "axes", "joint")}
# [base] keys that the sweep itself sets, with the place to set them instead.
_SET_BY_SWEEP = {
    "double-descent": {
        "batch_size": "the grid (grid.P)",
        "projector_dim": "the grid (grid.D)",
        "seed": "seeds",
        "out": "--out",
        "max_steps": "[budget]",
        "epochs": "[budget]",
    },
    "scaling": {
        "batch_size": "[point] and [axes]",
        "projector_dim": "[point] and [axes]",
        "num_views": "[point] and [axes]",
        "max_steps": "[point] and [axes] (steps)",
        "epochs": "[point] and [axes] (steps)",
        "seed": "seeds",
        "out": "--out",
    },
}

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------
# The sweep file.
# --------------------------------------------------------------------------------------


@dataclass
class SweepSpec:
    """A parsed, checked sweep file (see the module docstring for its keys).

    Attributes:
        kind: ``"double-descent"`` or ``"scaling"``.
        base: PretrainConfig fields applied over the recipe (and over the sweep defaults).
        base_recipe: resolved path of the recipe file, or None.
        budget: double descent: ``{"max_steps": S}`` and/or ``{"epochs": E}``.
        seeds: one run per seed and grid point.
        ppe_last: number of logged steps whose train-batch PPE is averaged.
        fallback_to_digits: use scikit-learn's digits when Fashion-MNIST is absent.
        Ps, Ds: the double-descent grid; theory_trials, theory_seed: its Monte Carlo;
            control_init: also measure each cell's untrained network (a control).
        point, axes, joint: the scaling sweep's base point, one-at-a-time axes and joint grid.
    """

    kind: str
    base: dict[str, Any] = field(default_factory=dict)
    base_recipe: str | None = None
    budget: dict[str, int] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    ppe_last: int = 5
    fallback_to_digits: bool = True
    description: str = ""
    out: str | None = None
    source: str | None = None
    Ps: list[int] = field(default_factory=list)
    Ds: list[int] = field(default_factory=list)
    theory_trials: int = 32
    theory_seed: int = 0
    control_init: bool = True
    point: dict[str, int] = field(default_factory=dict)
    axes: dict[str, list[int]] = field(default_factory=dict)
    joint: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "kind": self.kind,
            "description": self.description,
            "source": self.source,
            "out": self.out,
            "base_recipe": self.base_recipe,
            "base": dict(self.base),
            "budget": dict(self.budget),
            "seeds": list(self.seeds),
            "ppe_last": self.ppe_last,
            "fallback_to_digits": self.fallback_to_digits,
            "Ps": list(self.Ps),
            "Ds": list(self.Ds),
            "theory_trials": self.theory_trials,
            "theory_seed": self.theory_seed,
            "control_init": self.control_init,
            "point": dict(self.point),
            "axes": {k: list(v) for k, v in self.axes.items()},
            "joint": {k: list(v) for k, v in self.joint.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """Rebuild a spec stored by :meth:`to_dict` (e.g. in OUT/sweep.json)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _int_list(value: Any, key: str, minimum: int = 1) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key} must be a non-empty list of integers; got {value!r}.")
    out = [_positive_int(v, f"{key} (entry {v!r})", minimum) for v in value]
    if len(set(out)) != len(out):
        raise ValueError(f"{key} lists a value twice: {value!r}.")
    return out


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} in {source} must be a table ([{key}]); got {value!r}.")
    return dict(value)


def _check_table_keys(table: Mapping[str, Any], allowed: Sequence[str], key: str, source: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(f'{key}.{u}' for u in unknown)} in {source}; "
            f"valid keys of [{key}]: {', '.join(allowed)}."
        )


def _resolve_recipe(recipe: Any, source: str) -> str:
    if not isinstance(recipe, str) or not recipe:
        raise ValueError(f"base_recipe in {source} must be a path string; got {recipe!r}.")
    path = Path(recipe)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, Path(source).parent / path]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    raise ValueError(
        f"base_recipe {recipe!r} in {source} does not exist (looked at "
        + ", ".join(str(c) for c in candidates)
        + ")."
    )


def parse_sweep(data: Mapping[str, Any], source: str = "<sweep>", kind: str | None = None) -> SweepSpec:
    """Check a sweep file's contents and turn them into a :class:`SweepSpec`.

    Args:
        data: the parsed TOML table.
        source: the file's name, for messages.
        kind: the kind the calling command runs; the file's ``kind``, if given, must match.

    Raises:
        ValueError: naming the offending key, for unknown keys, wrong types or ranges,
            keys the sweep sets itself, or a configuration pretrain would refuse.
    """
    from mmcr.training.config import build_config, check_keys

    file_kind = data.get("kind", kind)
    if file_kind not in SWEEP_KINDS:
        raise ValueError(f"kind in {source} must be one of {', '.join(SWEEP_KINDS)}; got {file_kind!r}.")
    if kind is not None and file_kind != kind:
        raise ValueError(
            f"kind in {source} is {file_kind!r}, but this command runs a {kind!r} sweep; "
            f"use `mmcr sweep {file_kind}`."
        )
    allowed = (*_COMMON_KEYS, *_KIND_KEYS[file_kind])
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} in {source} (a {file_kind} sweep); "
            f"valid keys: {', '.join(allowed)}."
        )
    spec = SweepSpec(kind=file_kind, source=source)
    spec.description = str(data.get("description", ""))
    if "out" in data:
        if not isinstance(data["out"], str) or not data["out"]:
            raise ValueError(f"out in {source} must be a directory path; got {data['out']!r}.")
        spec.out = data["out"]
    if "base_recipe" in data:
        spec.base_recipe = _resolve_recipe(data["base_recipe"], source)
    base = _table(data, "base", source)
    check_keys(base, source=f"[base] of {source}")
    for key, where in _SET_BY_SWEEP[file_kind].items():
        if key in base:
            raise ValueError(f"base.{key} in {source} is set by the sweep itself; set it in {where}.")
    spec.base = base
    spec.seeds = _int_list(data.get("seeds", [0]), "seeds", minimum=0)
    spec.ppe_last = _positive_int(data.get("ppe_last", 5), "ppe_last")
    fallback = data.get("fallback_to_digits", True)
    if not isinstance(fallback, bool):
        raise ValueError(f"fallback_to_digits in {source} must be true or false; got {fallback!r}.")
    spec.fallback_to_digits = fallback

    if file_kind == "double-descent":
        budget = _table(data, "budget", source)
        _check_table_keys(budget, ("max_steps", "epochs"), "budget", source)
        if not budget:
            raise ValueError(f"budget in {source} is missing: give [budget] max_steps and/or epochs.")
        spec.budget = {k: _positive_int(v, f"budget.{k}") for k, v in budget.items()}
        if "grid" not in data:
            raise ValueError(f"grid in {source} is missing: give [grid] P = [...] and D = [...].")
        grid = _table(data, "grid", source)
        _check_table_keys(grid, ("P", "D"), "grid", source)
        for key in ("P", "D"):
            if key not in grid:
                raise ValueError(f"grid.{key} in {source} is missing.")
        spec.Ps = sorted(_int_list(grid["P"], "grid.P", minimum=2))
        spec.Ds = sorted(_int_list(grid["D"], "grid.D"))
        theory = _table(data, "theory", source)
        _check_table_keys(theory, ("trials", "seed"), "theory", source)
        spec.theory_trials = _positive_int(theory.get("trials", 32), "theory.trials", minimum=2)
        spec.theory_seed = _positive_int(theory.get("seed", 0), "theory.seed", minimum=0)
        control = data.get("control_init", True)
        if not isinstance(control, bool):
            raise ValueError(f"control_init in {source} must be true or false; got {control!r}.")
        spec.control_init = control
    else:
        if "budget" in data:
            raise ValueError(
                f"budget in {source} does not apply to a scaling sweep: its steps come from "
                "point.steps and axes.steps."
            )
        if "point" not in data:
            raise ValueError(
                f"point in {source} is missing: give [point] with {', '.join(SCALING_VARIABLES)}."
            )
        point = _table(data, "point", source)
        _check_table_keys(point, SCALING_VARIABLES, "point", source)
        for key in SCALING_VARIABLES:
            if key not in point:
                raise ValueError(f"point.{key} in {source} is missing.")
        spec.point = {
            k: _positive_int(point[k], f"point.{k}", minimum=2 if k == "batch_size" else 1)
            for k in SCALING_VARIABLES
        }
        axes = _table(data, "axes", source)
        _check_table_keys(axes, SCALING_VARIABLES, "axes", source)
        joint = _table(data, "joint", source)
        _check_table_keys(joint, SCALING_VARIABLES, "joint", source)
        if not axes and not joint:
            raise ValueError(f"axes in {source} is missing: give [axes] with at least one variable.")
        spec.axes = {
            k: sorted(_int_list(v, f"axes.{k}", minimum=2 if k == "batch_size" else 1))
            for k, v in axes.items()
        }
        if joint and len(joint) < 2:
            raise ValueError(f"joint in {source} must name at least two variables; got {sorted(joint)}.")
        spec.joint = {
            k: sorted(_int_list(v, f"joint.{k}", minimum=2 if k == "batch_size" else 1))
            for k, v in joint.items()
        }
    # Let pretrain's own checks speak now rather than after hours of runs.
    for run in plan_runs(spec)[:1]:
        build_config(spec.base_recipe, run_overrides(spec, run))
    return spec


def load_sweep(path: str | Path, kind: str | None = None) -> SweepSpec:
    """Read and check a TOML sweep file (see :func:`parse_sweep`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep file {path} is not valid TOML: {exc}") from exc
    return parse_sweep(data, source=str(path), kind=kind)


# --------------------------------------------------------------------------------------
# Planning runs.
# --------------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    """One run of a sweep: its directory name, grid coordinates and config overrides."""

    name: str
    coords: dict[str, Any]
    groups: list[str] = field(default_factory=list)  # scaling: "point", "axis:<var>", "joint"


def _scaling_name(values: Mapping[str, int], seed: int) -> str:
    return (
        f"S{values['steps']}_B{values['batch_size']}_D{values['projector_dim']}"
        f"_K{values['num_views']}_s{seed}"
    )


def plan_runs(spec: SweepSpec) -> list[PlannedRun]:
    """The sweep's runs, in the order they are trained (each name once)."""
    runs: list[PlannedRun] = []
    if spec.kind == "double-descent":
        for seed in spec.seeds:
            for D in spec.Ds:
                for P in spec.Ps:
                    runs.append(PlannedRun(f"P{P}_D{D}_s{seed}", {"P": P, "D": D, "seed": seed}))
        return runs
    by_name: dict[str, PlannedRun] = {}
    for seed in spec.seeds:
        points: list[tuple[dict[str, int], str]] = [(dict(spec.point), "point")]
        for var, axis_values in spec.axes.items():
            points += [({**spec.point, var: v}, f"axis:{var}") for v in axis_values]
        if spec.joint:
            names = list(spec.joint)
            for combo in product(*(spec.joint[n] for n in names)):
                points.append(({**spec.point, **dict(zip(names, combo, strict=True))}, "joint"))
        for coords, group in points:
            name = _scaling_name(coords, seed)
            if name not in by_name:
                by_name[name] = PlannedRun(name, {**coords, "seed": seed})
                runs.append(by_name[name])
            if group not in by_name[name].groups:
                by_name[name].groups.append(group)
    # every run on an axis's line also lies on the other axes' lines at the point
    for run in runs:
        if "point" in run.groups:
            run.groups += [f"axis:{v}" for v in spec.axes if f"axis:{v}" not in run.groups]
    return runs


def run_overrides(
    spec: SweepSpec, run: PlannedRun, dataset_overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """PretrainConfig overrides of one run (over ``spec.base_recipe``), without ``out``."""
    values: dict[str, Any] = {"progress": False, "eval_every": 0, "warmup_epochs": 0.0}
    values.update(spec.base)
    if dataset_overrides:
        values.update(dataset_overrides)
    c = run.coords
    if spec.kind == "double-descent":
        if "epochs" not in spec.budget:
            values["epochs"] = _HUGE_EPOCHS
        values.update(spec.budget)
        values.update(batch_size=c["P"], projector_dim=c["D"], seed=c["seed"])
    else:
        values.update(
            max_steps=c["steps"],
            epochs=_HUGE_EPOCHS,
            batch_size=c["batch_size"],
            projector_dim=c["projector_dim"],
            num_views=c["num_views"],
            seed=c["seed"],
        )
    return values


def run_config(
    spec: SweepSpec, run: PlannedRun, out_dir: str | Path, dataset_overrides: Mapping[str, Any] | None = None
) -> Any:
    """The resolved :class:`~mmcr.training.config.PretrainConfig` of one run."""
    from mmcr.training.config import build_config

    values = run_overrides(spec, run, dataset_overrides)
    values["out"] = str(Path(out_dir) / "runs" / run.name)
    return build_config(spec.base_recipe, values)


def _dataset_overrides(spec: SweepSpec, log: Log) -> dict[str, Any]:
    """Fall back from Fashion-MNIST to scikit-learn's digits if the files are absent."""
    from mmcr.data.datasets import load_dataset
    from mmcr.training.config import build_config

    cfg = build_config(spec.base_recipe, {k: v for k, v in spec.base.items() if k != "out"})
    if cfg.dataset.replace("_", "-").lower() not in ("fashion-mnist", "fashionmnist", "fmnist"):
        return {}
    try:
        load_dataset(cfg.dataset, "test", cfg.data_dir)
    except FileNotFoundError as exc:
        if not spec.fallback_to_digits:
            raise
        log(
            "Fashion-MNIST is not on this machine; falling back to scikit-learn's digits "
            f"(dataset = digits, augment = digits). To use Fashion-MNIST: {exc}"
        )
        return {"dataset": "digits", "augment": "digits", "crop_size": None, "image_size": None}
    return {}


# --------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption
        if isinstance(record, dict):
            records.append(record)
    return records


def read_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The result lines of a sweep (the last line of each run name wins)."""
    by_name: dict[str, dict[str, Any]] = {}
    for record in _read_jsonl(Path(sweep_dir) / RESULTS_FILE):
        if "name" in record:
            by_name[str(record["name"])] = record
    return list(by_name.values())


def _append_result(path: Path, record: Mapping[str, Any]) -> None:
    text = path.read_text() if path.exists() else ""
    with path.open("a") as handle:
        if text and not text.endswith("\n"):
            handle.write("\n")
        handle.write(json.dumps(_jsonable(record)) + "\n")


def _positive(value: Any) -> bool:
    return value is not None and math.isfinite(float(value)) and float(value) > 0


def _mean(values: Iterable[float | None]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def _forward_flops(cfg: Any) -> float:
    """Forward FLOPs of one view through encoder + projector (conv and linear layers)."""
    from mmcr.analysis.fit import count_forward_flops
    from mmcr.data.datasets import dataset_info
    from mmcr.training.pretrain import augment_config, build_network

    channels = dataset_info(cfg.dataset).channels
    crop = augment_config(cfg).crop_size
    network = build_network(cfg, channels)
    return count_forward_flops(network, (channels, crop, crop))


def init_ppe(cfg: Any, data_cache: dict[tuple[Any, ...], Any] | None = None) -> float:
    """PPE of the run's network at initialisation, measured like the validation monitor.

    The control of a double-descent sweep: the network of ``cfg`` (seeded with ``cfg.seed``,
    not trained, eval mode) embeds ``monitor_size`` held-out images in ``num_views`` fresh
    views, and the PPE is averaged over chunks of ``batch_size`` images. ``data_cache``
    (a dict kept across calls) saves loading the same data set for every run.
    """
    import importlib

    import torch

    from mmcr.data.views import MultiViewAugment
    from mmcr.objectives.mmcr import pretraining_percent_error

    pretrain_module = importlib.import_module("mmcr.training.pretrain")
    key = (cfg.dataset, cfg.data_dir, cfg.image_size, cfg.val_fraction, cfg.seed, cfg.synthetic_size)
    cache = {} if data_cache is None else data_cache
    if key not in cache:
        cache[key] = pretrain_module.load_data(cfg)
    data = cache[key]
    torch.manual_seed(cfg.seed)
    network = pretrain_module.build_network(cfg, data.channels).eval()
    augment = MultiViewAugment(pretrain_module.augment_config(cfg))
    P, K = int(cfg.batch_size), int(cfg.num_views)
    images = data.val.images if len(data.val) >= P else data.memory.images
    images = images[: max(int(cfg.monitor_size), P)]
    generator = torch.Generator().manual_seed(cfg.seed + 7)
    values = []
    with torch.no_grad():
        for start in range(0, images.shape[0] - P + 1, P):
            views = augment(images[start : start + P], K, generator=generator)
            _, z = network(views.flatten(0, 1))
            values.append(float(pretraining_percent_error(z.float().reshape(P, K, -1))))
    return _mean(values)


def collect_result(
    run: PlannedRun, cfg: Any, ppe_last: int, wall_s: float | None = None, kind: str = "double-descent"
) -> dict[str, Any]:
    """The result line of a finished run, read from its ``metrics.jsonl``.

    ``ppe`` is the mean train-batch PPE of the last ``ppe_last`` logged steps; ``val_*``
    come from the last validation-monitor record; ``flops`` = 3 x (forward FLOPs of one
    view) x B x K x S and ``sample_views`` = B x K x S, with S the steps actually taken.
    """
    from mmcr.analysis.theory import ppe_marchenko_pastur
    from mmcr.objectives.mmcr import max_nuclear_norm

    run_dir = Path(cfg.out)
    records = _read_jsonl(run_dir / "metrics.jsonl")
    steps = [r for r in records if r.get("kind") == "step" and r.get("ppe") is not None]
    if not steps:
        raise ValueError(
            f"run {run.name}: {run_dir / 'metrics.jsonl'} holds no step records with a PPE "
            "(sweeps need objective = 'mmcr'); delete the run's directory to train it again."
        )
    tail = steps[-ppe_last:]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    monitor = epochs[-1] if epochs else {}
    total_steps = int(steps[-1]["step"])
    P, D, K = int(cfg.batch_size), int(cfg.projector_dim), int(cfg.num_views)
    forward = _forward_flops(cfg)
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
        "ppe": _mean(ppes),
        "ppe_std": float(np.std(ppes)) if len(ppes) > 1 else 0.0,
        "ppe_steps": [int(tail[0]["step"]), int(tail[-1]["step"])],
        "loss": _mean(r.get("loss") for r in tail),
        "final_loss": float(steps[-1]["loss"]),
        "global_nuclear_norm": _mean(r.get("global_nuclear_norm") for r in tail),
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


def _config_differences(stored: Mapping[str, Any], planned: Mapping[str, Any]) -> list[str]:
    """Fields whose stored and planned values differ.

    A field the stored configuration lacks (added to PretrainConfig since the run) counts as
    its default; a field the current PretrainConfig lacks (removed since) is ignored.
    """
    from mmcr.training.config import PretrainConfig

    defaults = PretrainConfig().to_dict()
    keys = set(planned) - _UNFINGERPRINTED
    return sorted(k for k in keys if stored.get(k, defaults.get(k)) != planned.get(k))


def _check_same_config(record: Mapping[str, Any], cfg: Any, sweep_dir: Path) -> None:
    changed = _config_differences(record.get("config", {}), cfg.to_dict())
    if changed:
        stored = record.get("config", {})
        detail = ", ".join(
            f"{k} ({stored.get(k, '<absent>')!r} -> {cfg.to_dict().get(k)!r})" for k in changed
        )
        raise ValueError(
            f"run {record.get('name')} in {sweep_dir} was trained with a different configuration: "
            f"{detail}. Use another --out, or delete runs/{record.get('name')} and its line in "
            f"{RESULTS_FILE} to train it again."
        )


# --------------------------------------------------------------------------------------
# Running a sweep.
# --------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: runs planned, trained now, skipped, and the summary."""

    planned: list[str]
    trained: list[str]
    skipped: list[str]
    summary: dict[str, Any] | None


def _train(cfg: Any, log_path: Path, verbose: bool) -> Path:
    """Run pretrain, resuming from the run's checkpoint if one exists.

    Unless ``verbose``, pretrain's printed output goes to ``log_path`` (its stderr too, when
    the configuration has no progress bar to show).
    """
    import importlib

    pretrain_module = importlib.import_module("mmcr.training.pretrain")
    resume = (Path(cfg.out) / pretrain_module.CHECKPOINT_NAME).exists()
    if verbose:
        return pretrain_module.pretrain(cfg, resume=resume)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(log_path.open("a"))
        stack.enter_context(contextlib.redirect_stdout(handle))
        if not cfg.progress:  # keep pretrain's bar on the terminal when it is asked for
            stack.enter_context(contextlib.redirect_stderr(handle))
        path: Path = pretrain_module.pretrain(cfg, resume=resume)
    return path


def _describe(run: PlannedRun, cfg: Any) -> str:
    c = run.coords
    budget = f"max_steps {cfg.max_steps}" if cfg.max_steps is not None else ""
    if cfg.epochs < _HUGE_EPOCHS:
        budget = (budget + f", epochs {cfg.epochs}").lstrip(", ")
    if "P" in c:
        return f"P={c['P']:<4} D={c['D']:<4} seed {c['seed']}  ({budget}, K={cfg.num_views})"
    return (
        f"S={c['steps']:<5} B={c['batch_size']:<4} D={c['projector_dim']:<4} K={c['num_views']:<2} "
        f"seed {c['seed']}  [{', '.join(run.groups)}]"
    )


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    dry_run: bool = False,
    max_runs: int | None = None,
    verbose: bool = False,
    log: Log = _print,
) -> SweepOutcome:
    """Train every run of ``spec`` not yet finished in ``out_dir``, then write the report.

    The report (figures, summary) is redrawn when a result line was added; otherwise the
    stored one is up to date and returned as it is.

    One line per run is logged: ``[i/N] name, seconds, PPE``. Finished runs (a line in
    results.jsonl or a done-marker runs/<name>/result.json) are skipped, after checking that
    they were trained with the configuration planned now; an interrupted run continues from
    its checkpoint.

    Args:
        spec: a checked sweep (:func:`load_sweep`).
        out_dir: the sweep directory.
        dry_run: list the runs and their state; train nothing and write nothing.
        max_runs: train at most this many runs now (the rest on a later call).
        verbose: show pretrain's own output instead of writing it to runs/<name>/train.log.
        log: where progress lines go.
    """
    out = Path(out_dir)
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs must be >= 0; got {max_runs}.")
    meta_path = out / SWEEP_FILE
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("kind") != spec.kind:
            raise ValueError(
                f"{out} holds a {old.get('kind')!r} sweep; this is a {spec.kind!r} sweep. Use another --out."
            )
    dataset_overrides = _dataset_overrides(spec, log)
    runs = plan_runs(spec)
    configs = [run_config(spec, run, out, dataset_overrides) for run in runs]
    done = {r["name"]: r for r in read_results(out)}
    total = len(runs)
    width = len(str(total))
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(
            meta_path,
            {
                "kind": spec.kind,
                "spec": spec.to_dict(),
                "runs": [r.name for r in runs],
                "dataset_overrides": dataset_overrides,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        if spec.kind == "double-descent":
            _ensure_theory_grid(out, spec.Ps, spec.Ds, spec.theory_trials, spec.theory_seed)
    log(
        f"{spec.kind} sweep: {total} runs in {out}"
        + (f" (dataset {configs[0].dataset})" if configs else "")
        + (" [dry run]" if dry_run else "")
    )
    trained: list[str] = []
    skipped: list[str] = []
    changed = False  # whether results.jsonl gained a line, so the report must be redrawn
    data_cache: dict[tuple[Any, ...], Any] = {}  # data sets loaded for the untrained-network control
    sweep_start = time.perf_counter()
    for i, (run, cfg) in enumerate(zip(runs, configs, strict=True), start=1):
        prefix = f"[{i:>{width}}/{total}] {run.name:<24}"
        marker = Path(cfg.out) / DONE_FILE
        record = done.get(run.name)
        if record is None and marker.exists():
            record = json.loads(marker.read_text())
            if not dry_run:
                _append_result(out / RESULTS_FILE, record)
                changed = True
        if record is not None:
            _check_same_config(record, cfg, out)
            if spec.kind == "double-descent" and spec.control_init and "init_ppe" not in record:
                if not dry_run:  # a run finished before the control existed: add it now
                    record = {**record, "init_ppe": init_ppe(cfg, data_cache)}
                    _write_json(marker, record)
                    _append_result(out / RESULTS_FILE, record)
                    changed = True
            skipped.append(run.name)
            log(
                f"{prefix} done earlier        PPE {_fmt(record.get('ppe'))}  "
                f"val PPE {_fmt(record.get('val_ppe'))}"
            )
            continue
        if dry_run:
            state = "partial (resumes)" if (Path(cfg.out) / "last.pt").exists() else "to train"
            log(f"{prefix} {state:<18} {_describe(run, cfg)}")
            continue
        if max_runs is not None and len(trained) >= max_runs:
            log(f"stopping after {max_runs} new run(s) (--max-runs); run the same command again to go on")
            break
        start = time.perf_counter()
        try:
            _train(cfg, Path(cfg.out) / "train.log", verbose)
        except ValueError as exc:
            hint = f" (delete {cfg.out} to train it from scratch)" if "resume" in str(exc) else ""
            raise ValueError(f"run {run.name}: {exc}{hint}") from exc
        wall = time.perf_counter() - start
        result = collect_result(run, cfg, spec.ppe_last, wall_s=wall, kind=spec.kind)
        if spec.kind == "double-descent" and spec.control_init:
            result["init_ppe"] = init_ppe(cfg, data_cache)
        _write_json(marker, result)
        _append_result(out / RESULTS_FILE, result)
        changed = True
        trained.append(run.name)
        log(
            f"{prefix} {wall:7.1f} s          PPE {_fmt(result['ppe'])}  "
            f"val PPE {_fmt(result.get('val_ppe'))}"
            f"  (ideal embeddings {result['theory_ppe_limit']:.4f})"
        )
    if dry_run:
        return SweepOutcome([r.name for r in runs], [], skipped, None)
    log(
        f"trained {len(trained)} run(s) in {time.perf_counter() - sweep_start:.0f} s, "
        f"{len(skipped)} done earlier"
    )
    summary: dict[str, Any] | None = None
    if changed or not (out / SUMMARY_JSON).exists():
        summary = report_sweep(out, log=log) if read_results(out) else None
    else:
        log(
            f"nothing new: the figures and {out / SUMMARY_MD} are up to date (mmcr report {out} redraws them)"
        )
        summary = json.loads((out / SUMMARY_JSON).read_text())
    return SweepOutcome([r.name for r in runs], trained, skipped, summary)


def _pct(contrast: Mapping[str, Any]) -> str:
    return f"{contrast['beyond']:.0%} | {contrast['before']:.0%}"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "  -   "
    return f"{float(value):.{digits}f}"


# --------------------------------------------------------------------------------------
# Double descent: analysis and figures.
# --------------------------------------------------------------------------------------


def _ensure_theory_grid(out: Path, Ps: Sequence[int], Ds: Sequence[int], trials: int, seed: int) -> Any:
    """Load OUT/theory_grid.json if it covers (Ps, Ds) with these settings, else compute it."""
    from mmcr.analysis.theory import PPEGrid, ppe_grid

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


def _cell_means(
    results: Sequence[Mapping[str, Any]], Ps: Sequence[int], Ds: Sequence[int], key: str
) -> np.ndarray:
    values = np.full((len(Ps), len(Ds)), math.nan)
    for i, P in enumerate(Ps):
        for j, D in enumerate(Ds):
            values[i, j] = _mean(r.get(key) for r in results if r.get("P") == P and r.get("D") == D)
    return values


def _subgrid(grid: Any, Ps: Sequence[int], Ds: Sequence[int]) -> Any:
    from mmcr.analysis.theory import PPEGrid

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


def peak_table(
    Ps: Sequence[int],
    Ds: Sequence[int],
    measured: np.ndarray,
    theory: np.ndarray,
    names: tuple[str, str] = ("P", "D"),
) -> list[dict[str, Any]]:
    """For each D, the batch size P with the largest measured PPE, against the ridge P = D.

    Args:
        Ps, Ds: the grid's sizes; measured, theory: (len(Ps), len(Ds)) PPE arrays (NaN where
            a run is missing).

    Returns:
        One dict per D: ``peak_P`` (measured), ``theory_peak_P``, ``octaves_from_ridge``
        (log2(peak_P / D)), ``at_edge`` (the peak is the smallest or largest P of the grid,
        so the curve may keep rising beyond it) and ``verdict``: "at P = D",
        "near P = D (within a factor 2)", "away from P = D", "ridge outside the P range"
        or "not enough runs". ``names`` renames P and D in the verdicts (the table with
        the roles swapped: ``peak_table(Ds, Ps, measured.T, theory.T, ("D", "P"))``).
    """
    x, line = names
    rows: list[dict[str, Any]] = []
    P_arr = np.asarray(Ps, dtype=np.float64)
    for j, D in enumerate(Ds):
        column = measured[:, j]
        finite = np.isfinite(column)
        row: dict[str, Any] = {"D": int(D), "n_finished": int(finite.sum())}
        theory_column = theory[:, j]
        row["theory_peak_P"] = int(Ps[int(np.nanargmax(theory_column))])
        if finite.sum() < 2:
            row.update(peak_P=None, peak_ppe=None, octaves_from_ridge=None, at_edge=None)
            row["verdict"] = "not enough runs"
            rows.append(row)
            continue
        k = int(np.nanargmax(np.where(finite, column, -np.inf)))
        peak = int(Ps[k])
        octaves = math.log2(peak / D)
        row.update(
            peak_P=peak,
            peak_ppe=float(column[k]),
            octaves_from_ridge=octaves,
            at_edge=bool(k in (0, len(Ps) - 1)),
            ppe_at_ridge=float(column[list(Ps).index(D)]) if D in Ps and finite[list(Ps).index(D)] else None,
        )
        if not P_arr.min() <= D <= P_arr.max():
            row["verdict"] = f"ridge outside the {x} range"
        elif peak == D:
            row["verdict"] = f"at {x} = {line}"
        elif abs(octaves) <= 1.0:
            row["verdict"] = f"near {x} = {line} (within a factor 2)"
        else:
            row["verdict"] = f"away from {x} = {line}"
        rows.append(row)
    return rows


def ridge_contrast(Ps: Sequence[int], Ds: Sequence[int], values: np.ndarray) -> dict[str, float | None]:
    """How sharp the ridge is: PPE one octave off P = D, as a fraction of the PPE on it.

    ``beyond`` is the mean over D of PPE(P = 2D, D) / PPE(P = D, D) and ``before`` that of
    PPE(P = D/2, D) / PPE(P = D, D), over the D whose cells are in the grid (None if none).
    Ideal embeddings give about 0.44 on both sides (0.067 / 0.151).
    """
    index_p = {int(P): i for i, P in enumerate(Ps)}
    out: dict[str, float | None] = {}
    for side, factor in (("beyond", 2.0), ("before", 0.5)):
        ratios = []
        for j, D in enumerate(Ds):
            off = D * factor
            if D in index_p and off.is_integer() and int(off) in index_p:
                ridge, other = values[index_p[D], j], values[index_p[int(off)], j]
                if np.isfinite(ridge) and np.isfinite(other) and ridge > 0:
                    ratios.append(float(other / ridge))
        out[side] = _mean(ratios) if ratios else None
        out[f"n_{side}"] = len(ratios)
    return out


def _correlations(measured: np.ndarray, theory: np.ndarray) -> dict[str, float | None]:
    from scipy import stats

    ok = np.isfinite(measured) & np.isfinite(theory)
    if ok.sum() < 3 or np.ptp(measured[ok]) == 0:
        return {"pearson": None, "spearman": None}
    return {
        "pearson": float(np.corrcoef(measured[ok], theory[ok])[0, 1]),
        "spearman": float(stats.spearmanr(measured[ok], theory[ok]).statistic),
    }


def _plot_curves(
    sizes: Sequence[int],
    lines: Sequence[int],
    panels: Sequence[tuple[str, np.ndarray]],
    theory: np.ndarray,
    path: Path,
    xlabel: str,
    line_name: str,
) -> Path:
    """PPE against one size (x), one curve per value of the other (lines), with the ridge.

    Arrays have shape (len(sizes), len(lines)). Solid: measured; dashed: Monte-Carlo PPE of
    ideal (aligned, uniform) embeddings; dotted vertical: x = line value (the ridge);
    star: the measured maximum of each curve.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(panels) + 1.6, 4.4), layout="constrained")
    palette = colormaps["viridis"]
    x = np.asarray(sizes, dtype=np.float64)
    for p, (title, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for j, value in enumerate(lines):
            colour = palette(0.9 * j / max(len(lines) - 1, 1))
            y = values[:, j]
            ok = np.isfinite(y) & (y > 0)
            ax.plot(x[ok], y[ok], "o-", color=colour, ms=4, lw=1.4, label=f"{line_name} = {value}")
            if ok.sum() >= 2:
                k = int(np.nanargmax(np.where(ok, y, -np.inf)))
                ax.plot([x[k]], [y[k]], "*", color=colour, ms=13, mec="black", mew=0.6)
            ax.plot(x, theory[:, j], "--", color=colour, lw=1.0, alpha=0.8)
            if x.min() <= value <= x.max():
                ax.axvline(float(value), color=colour, ls=":", lw=0.9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(x, [str(int(v)) for v in x])
        ax.set_xticks([], minor=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pretraining percent error (fraction)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [
        Line2D([], [], color="0.3", ls="--", lw=1.0),
        Line2D([], [], color="0.3", ls=":", lw=0.9),
        Line2D([], [], color="0.3", marker="*", ls="none", ms=10, mec="black"),
    ]
    labels += [
        "ideal embeddings (Monte Carlo)",
        f"ridge ({xlabel.split()[-1]} = {line_name})",
        "measured peak",
    ]
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=130)
    return path


def _double_descent_report(
    out: Path, meta: Mapping[str, Any], results: list[dict[str, Any]], log: Log
) -> dict[str, Any]:
    from mmcr.analysis.plots import plot_ppe_heatmap

    spec = SweepSpec.from_dict(meta["spec"])
    Ps = sorted({int(p) for p in spec.Ps} | {int(r["P"]) for r in results})
    Ds = sorted({int(d) for d in spec.Ds} | {int(r["D"]) for r in results})
    full_grid = _ensure_theory_grid(out, Ps, Ds, spec.theory_trials, spec.theory_seed)
    grid = _subgrid(full_grid, Ps, Ds)
    train = _cell_means(results, Ps, Ds, "ppe")
    val = _cell_means(results, Ps, Ds, "val_ppe")
    loss = _cell_means(results, Ps, Ds, "loss")
    init = _cell_means(results, Ps, Ds, "init_ppe")
    has_init = bool(np.isfinite(init).any())
    theory = grid.mean
    k = spec.ppe_last
    curve_panels = [(f"train-batch PPE (mean of last {k} logged steps)", train), ("validation PPE", val)]
    if has_init:
        curve_panels.append(("control: untrained network (validation protocol)", init))
    figures = {
        "heatmap": plot_ppe_heatmap(
            grid,
            out / "ppe_heatmap.png",
            measured={
                "Ps": Ps,
                "Ds": Ds,
                "values": train,
                "label": f"measured train-batch PPE (last {k} logs)",
            },
        ),
        "heatmap_val": plot_ppe_heatmap(
            grid,
            out / "ppe_heatmap_val.png",
            measured={"Ps": Ps, "Ds": Ds, "values": val, "label": "measured validation PPE"},
        ),
        "ppe_vs_P": _plot_curves(
            Ps,
            Ds,
            curve_panels,
            theory,
            out / "ppe_vs_P.png",
            "batch size P",
            "D",
        ),
        "ppe_vs_D": _plot_curves(
            Ds,
            Ps,
            [(title, values.T) for title, values in curve_panels],
            theory.T,
            out / "ppe_vs_D.png",
            "embedding dimension D",
            "P",
        ),
    }
    if has_init:
        figures["heatmap_init"] = plot_ppe_heatmap(
            grid,
            out / "ppe_heatmap_init.png",
            measured={"Ps": Ps, "Ds": Ds, "values": init, "label": "control: untrained network"},
        )
    peaks = peak_table(Ps, Ds, train, theory)
    peaks_val = peak_table(Ps, Ds, val, theory)
    peaks_init = peak_table(Ps, Ds, init, theory) if has_init else None
    peaks_by_P = peak_table(Ds, Ps, train.T, theory.T, names=("D", "P"))
    for row in peaks_by_P:  # the same table with the roles of P and D swapped
        row["P"] = row.pop("D")
        row["peak_D"] = row.pop("peak_P")
        row["theory_peak_D"] = row.pop("theory_peak_P")
    in_range = [r for r in peaks if r["verdict"] not in ("ridge outside the P range", "not enough runs")]
    n_at = sum(r["verdict"] == "at P = D" for r in in_range)
    n_near = sum(r["verdict"] != "away from P = D" for r in in_range)
    n_at_val = sum(r["verdict"] == "at P = D" for r in peaks_val)
    planned = len(meta.get("runs", [])) or len(results)
    some = results[0]["config"] if results else {}
    budget = ", ".join(f"{key} {value}" for key, value in spec.budget.items())
    n_at_by_P = sum(r["verdict"] == "at D = P" for r in peaks_by_P)
    statement = (
        f"Measured train-batch PPE peaks at P = D for {n_at} of {len(in_range)} embedding dimensions "
        f"(within a factor 2 of P = D for {n_near}); the validation PPE peaks at P = D for {n_at_val}. "
        f"Read the other way, for {n_at_by_P} of {len(peaks_by_P)} batch sizes the largest PPE is at "
        "D = P. The theory for ideal embeddings peaks at P = D for every D (ridge height "
        "1 - 8/(3 pi) = 0.151)."
    )
    control: dict[str, Any] | None = None
    if peaks_init is not None:
        ridge = np.array([[P == D for D in Ds] for P in Ps])
        ratio = val / init
        on, off = _mean(ratio[ridge].tolist()), _mean(ratio[~ridge].tolist())
        n_at_init = sum(r["verdict"] == "at P = D" for r in peaks_init)
        control = {
            "peaks_by_D": peaks_init,
            "n_at_ridge": n_at_init,
            "val_over_init_on_ridge": on,
            "val_over_init_off_ridge": off,
        }
        statement += (
            f" Control: the untrained network's PPE already peaks at P = D for {n_at_init} of "
            f"{len(peaks_init)} D (the normaliser sqrt(P min(P, D)) changes form there), so the "
            "ridge's location alone is no evidence of training; training brought the validation "
            f"PPE to {on:.0%} of its initial value on the ridge and to {off:.0%} off it."
        )
    corr = _correlations(train, theory)
    contrast_val = ridge_contrast(Ps, Ds, val)
    contrast_init = ridge_contrast(Ps, Ds, init) if has_init else None
    contrast_theory = ridge_contrast(Ps, Ds, theory)
    contrast = {
        "train": ridge_contrast(Ps, Ds, train),
        "val": contrast_val,
        "init": contrast_init,
        "theory": contrast_theory,
    }
    if contrast_val["beyond"] is not None and contrast_val["before"] is not None:
        parts = [f"{_pct(contrast_val)} after training (validation PPE)"]
        if contrast_init is not None and None not in (contrast_init["beyond"], contrast_init["before"]):
            parts.append(f"{_pct(contrast_init)} at initialisation")
        parts.append(f"{_pct(contrast_theory)} for ideal embeddings")
        statement += (
            " One octave off the ridge (P = 2D | P = D/2) the PPE is, as a fraction of its value on "
            "the ridge, " + ", ".join(parts) + "."
        )
    summary = {
        "kind": "double-descent",
        "statement": statement,
        "finished_runs": len(results),
        "planned_runs": planned,
        "Ps": Ps,
        "Ds": Ds,
        "seeds": spec.seeds,
        "budget": spec.budget,
        "dataset": some.get("dataset"),
        "encoder": some.get("encoder"),
        "encoder_width": some.get("encoder_width"),
        "num_views": some.get("num_views"),
        "measured_train_ppe": train,
        "measured_val_ppe": val,
        "measured_loss": loss,
        "theory_ppe": theory,
        "theory_trials": grid.trials,
        "excess_over_theory": train - theory,
        "peaks_by_D": peaks,
        "peaks_by_D_val": peaks_val,
        "peaks_by_P": peaks_by_P,
        "measured_init_ppe": init if has_init else None,
        "control_init": control,
        "correlation_with_theory": corr,
        "ridge_contrast": contrast,
        "total_wall_s": sum(float(r.get("wall_s") or 0.0) for r in results),
        "notes": [
            "PPE = (sqrt(P min(P,D)) - ||C||_*) / sqrt(P min(P,D)) is comparable across P and D; "
            "the raw loss -||C||_* is not (its optimum sqrt(P min(P,D)) grows with P and D).",
            "ppe: mean train-batch PPE of the last ppe_last logged steps; val_ppe: the validation "
            "monitor at the end (held-out images, fresh views, chunks of P images).",
            "theory: Monte-Carlo PPE of perfectly aligned, uniform embeddings at the same (P, D); "
            "the measured PPE adds the error of imperfect training (excess_over_theory).",
            f"Every run has the same budget ({budget}); with a step budget, larger P sees more images.",
        ],
        "figures": {name: str(path) for name, path in figures.items()},
    }
    _write_json(out / SUMMARY_JSON, summary)
    (out / SUMMARY_MD).write_text(_double_descent_markdown(summary))
    log(statement)
    log(f"{'D':>6} | {'peak P (train)':>14} | {'peak P (val)':>12} | {'theory peak P':>13} | verdict (train)")
    for row, row_val in zip(peaks, peaks_val, strict=True):
        edge = " (at the grid's edge)" if row.get("at_edge") and row["verdict"] != "at P = D" else ""
        train_peak = "-" if row["peak_P"] is None else str(row["peak_P"])
        val_peak = "-" if row_val["peak_P"] is None else str(row_val["peak_P"])
        log(
            f"{row['D']:>6} | {train_peak:>14} | {val_peak:>12} | {row['theory_peak_P']:>13} | "
            f"{row['verdict']}{edge}"
        )
    if peaks_init is not None:
        log(
            "control (untrained network), peak P per D: "
            + ", ".join(f"D={r['D']}: {r['peak_P']}" for r in peaks_init)
        )
    log(f"wrote {out / SUMMARY_MD} and {len(figures)} figures")
    return summary


def _grid_markdown(title: str, Ps: Sequence[int], Ds: Sequence[int], values: Any) -> list[str]:
    array = np.asarray(values, dtype=np.float64)
    lines = [f"**{title}** (rows: P, columns: D)", "", "| P \\ D | " + " | ".join(str(d) for d in Ds) + " |"]
    lines.append("|---" * (len(Ds) + 1) + "|")
    for i, P in enumerate(Ps):
        cells = [_fmt(v) if math.isfinite(v) else "-" for v in array[i]]
        marked = [f"**{c}**" if P == D else c for c, D in zip(cells, Ds, strict=True)]
        lines.append(f"| {P} | " + " | ".join(marked) + " |")
    return [*lines, ""]


def _double_descent_markdown(summary: Mapping[str, Any]) -> str:
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


# --------------------------------------------------------------------------------------
# Scaling: figures, summary and fits.
# --------------------------------------------------------------------------------------

_FLOPS_CONVENTION = (
    "Compute: FLOPs = 3 x F x B x K x S, with F the forward FLOPs of one view through encoder "
    "and projector (count_forward_flops: 2 per multiply-add of conv and linear layers; biases, "
    "normalisation, activations and the loss not counted), backward = 2 x forward, B images per "
    "step, K views each, S steps. Sample-views = B x K x S."
)


def _on_axis(result: Mapping[str, Any], point: Mapping[str, int], var: str) -> bool:
    return all(result.get(v) == point[v] for v in SCALING_VARIABLES if v != var)


def _scaling_figures(out: Path, spec: SweepSpec, results: list[dict[str, Any]]) -> dict[str, Path]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figures: dict[str, Path] = {}
    axes_vars = [v for v in SCALING_VARIABLES if v in spec.axes]
    if axes_vars:
        fig = Figure(figsize=(3.6 * len(axes_vars) + 0.6, 3.8), layout="constrained")
        for n, var in enumerate(axes_vars):
            ax = fig.add_subplot(1, len(axes_vars), n + 1)
            line = sorted((r for r in results if _on_axis(r, spec.point, var)), key=lambda r: r[var])
            for key, style, label in (("ppe", "o-", "train-batch PPE"), ("val_ppe", "s--", "validation PPE")):
                pts = [(r[var], r[key]) for r in line if _positive(r.get(key))]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, ms=4, label=label)
            ax.axvline(spec.point[var], color="0.5", ls=":", lw=0.9)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(_VARIABLE_LABELS[var])
            if n == 0:
                ax.set_ylabel("PPE (fraction)")
                ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.25)
        point = ", ".join(f"{k} {v}" for k, v in spec.point.items())
        fig.suptitle(f"one variable at a time around the point ({point}; dotted)", fontsize=9)
        FigureCanvasAgg(fig)
        figures["axes"] = out / "scaling_axes.png"
        fig.savefig(figures["axes"], dpi=130)

    fig = Figure(figsize=(10.5, 4.2), layout="constrained")
    for n, (key, label) in enumerate(_COMPUTES.items()):
        ax = fig.add_subplot(1, 2, n + 1)
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in results:
            member = list(r.get("groups") or ["point"])
            groups.setdefault("point" if "point" in member else member[0], []).append(r)
        for group, rows in sorted(groups.items()):
            pts = [(r[key], r["ppe"]) for r in rows if _positive(r.get("ppe"))]
            if pts:
                marker = "*" if group == "point" else "o"
                ax.plot(*zip(*pts, strict=True), marker, ms=9 if group == "point" else 5, label=group)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("train-batch PPE")
        ax.grid(True, which="both", alpha=0.25)
        if n == 1:
            ax.legend(fontsize=7)
    FigureCanvasAgg(fig)
    figures["compute"] = out / "ppe_vs_compute.png"
    fig.savefig(figures["compute"], dpi=130)
    return figures


def _scaling_report(
    out: Path, meta: Mapping[str, Any], results: list[dict[str, Any]], log: Log
) -> dict[str, Any]:
    spec = SweepSpec.from_dict(meta["spec"])
    figures = _scaling_figures(out, spec, results)
    fit_path = out / FIT_FILE
    fit_summary: dict[str, Any] | None = None
    if fit_path.exists():
        fit_summary = json.loads(fit_path.read_text())
        figures.update(_fit_figures(out, fit_summary, results))
    rows = sorted(results, key=lambda r: r["flops"])
    notes = [
        "ppe (the fit target: positive and bounded) is the mean train-batch PPE of the last "
        "ppe_last logged steps; the raw loss -||C||_* is negative and its optimum grows with B "
        "and D, so it is recorded but not fitted.",
        "PPE has a floor that depends on B and D (the P = D ridge of ideal embeddings), so the "
        "batch-size and dimension axes need not follow a clean power law.",
    ]
    total_wall = sum(float(r.get("wall_s") or 0.0) for r in results)
    summary = {
        "kind": "scaling",
        "finished_runs": len(results),
        "planned_runs": len(meta.get("runs", [])) or len(results),
        "point": spec.point,
        "axes": spec.axes,
        "joint": spec.joint,
        "compute_convention": _FLOPS_CONVENTION,
        "runs": [
            {
                k: r.get(k)
                for k in (
                    "name",
                    *SCALING_VARIABLES,
                    "seed",
                    "ppe",
                    "val_ppe",
                    "loss",
                    "flops",
                    "sample_views",
                    "wall_s",
                    "groups",
                )
            }
            for r in rows
        ],
        "total_wall_s": total_wall,
        "fit": _fit_headline(fit_summary) if fit_summary else None,
        "notes": notes,
        "figures": {name: str(path) for name, path in figures.items()},
    }
    _write_json(out / SUMMARY_JSON, summary)
    lines = [
        "# Compute scaling of the MMCR pretraining percent error",
        "",
        f"Runs finished: {len(results)} of {summary['planned_runs']}; base point {spec.point}; "
        f"total run time {total_wall / 60:.1f} min.",
        "",
        _FLOPS_CONVENTION,
        "",
        "| run | S | B | D | K | PPE | val PPE | FLOPs | sample-views |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['batch_size']} | {r['projector_dim']} | {r['num_views']} | "
            f"{_fmt(r.get('ppe'))} | {_fmt(r.get('val_ppe'))} | {r['flops']:.3g} | {r['sample_views']:.3g} |"
        )
    if fit_summary:
        lines += ["", "## Fits (mmcr fit)", "", *_fit_markdown_lines(fit_summary)]
    lines += ["", "Notes:", "", *[f"- {n}" for n in notes], ""]
    lines += ["Figures: " + ", ".join(Path(p).name for p in figures.values()), ""]
    (out / SUMMARY_MD).write_text("\n".join(lines))
    log(f"{len(results)} scaling runs; wrote {out / SUMMARY_MD} and {len(figures)} figures")
    return summary


def _load_meta(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep directory: it has no {SWEEP_FILE} "
            "(written by mmcr sweep double-descent / scaling)"
        )
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("kind") not in SWEEP_KINDS:
        raise ValueError(f"{path} names an unknown sweep kind {meta.get('kind')!r}.")
    return meta


def report_sweep(sweep_dir: str | Path, log: Log = _print) -> dict[str, Any]:
    """Redraw every figure and the summary of a sweep from its stored results (no training).

    The kind (double descent or scaling) is read from OUT/sweep.json. A scaling sweep's fit
    figures are redrawn too when OUT/fit.json exists.
    """
    out = Path(sweep_dir)
    meta = _load_meta(out)
    results = read_results(out)
    if not results:
        raise ValueError(f"{out / RESULTS_FILE} holds no finished runs yet; nothing to report.")
    if meta["kind"] == "double-descent":
        return _double_descent_report(out, meta, results, log)
    return _scaling_report(out, meta, results, log)


def _power_law_from_dict(data: Mapping[str, Any]) -> Any:
    from mmcr.analysis.fit import PowerLawFit

    boots = np.asarray(data.get("bootstrap_params") or [], dtype=np.float64).reshape(-1, 3)
    return PowerLawFit(
        E=float(data["E"]),
        A=float(data["A"]),
        alpha=float(data["alpha"]),
        ci={k: (_nan(v[0]), _nan(v[1])) for k, v in data.get("ci", {}).items()},
        bootstrap_params=boots,
        objective=float(data.get("objective") or math.nan),
        n_points=int(data.get("n_points", 0)),
        huber_delta=float(data.get("huber_delta", 1e-3)),
        confidence=float(data.get("confidence", 0.95)),
    )


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _fit_figures(out: Path, fit: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Path]:
    """Draw the fit figures from fit.json (and the stored results)."""
    from mmcr.analysis.plots import plot_scaling_fit

    figures: dict[str, Path] = {}
    target, compute = fit["target"], fit["compute"]
    ylabel = _TARGETS.get(target, target)
    by_name = {r["name"]: r for r in results}
    main = fit.get("compute_fit", {})
    names = fit.get("runs", [])
    rows = [by_name[n] for n in names if n in by_name]
    if "E" in main and rows:
        c = [r[compute] for r in rows]
        y = [r[target] for r in rows]
        figures["fit"] = plot_scaling_fit(
            c,
            y,
            _power_law_from_dict(main),
            out / f"fit_{compute}.png",
            xlabel=_COMPUTES[compute],
            ylabel=ylabel,
        )
        hold = fit.get("holdout", {})
        if "fit" in hold and len(hold.get("mask", [])) == len(rows):
            figures["holdout"] = plot_scaling_fit(
                c,
                y,
                _power_law_from_dict(hold["fit"]),
                out / f"holdout_{compute}.png",
                holdout_mask=hold["mask"],
                xlabel=_COMPUTES[compute],
                ylabel=ylabel,
            )
    for var, axis_fit in fit.get("axis_fits", {}).items():
        if "E" not in axis_fit:
            continue
        axis_rows = [by_name[n] for n in axis_fit.get("runs", []) if n in by_name]
        if axis_rows:
            figures[f"axis_{var}"] = plot_scaling_fit(
                [r[var] for r in axis_rows],
                [r[target] for r in axis_rows],
                _power_law_from_dict(axis_fit),
                out / f"fit_axis_{var}.png",
                extrapolate=2.0,
                xlabel=_VARIABLE_LABELS[var],
                ylabel=ylabel,
            )
    joint = fit.get("joint_fit", {})
    if "predicted" in joint:
        figures["joint"] = _parity_plot(
            joint["observed"], joint["predicted"], joint.get("holdout_mask"), out / "joint_parity.png", ylabel
        )
    return figures


def _parity_plot(
    observed: Sequence[float], predicted: Sequence[float], held: Sequence[bool] | None, path: Path, label: str
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    obs = np.asarray(observed, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    mask = np.zeros(obs.shape, dtype=bool) if held is None else np.asarray(held, dtype=bool)
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = float(min(obs.min(), pred.min())) * 0.9, float(max(obs.max(), pred.max())) * 1.1
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", label="predicted = measured")
    ax.plot(obs[~mask], pred[~mask], "o", color="C1", ms=5, label="runs (fitted)")
    if mask.any():
        ax.plot(
            obs[mask], pred[mask], "o", mfc="none", color="C3", ms=7, mew=1.5, label="held out (hold-out fit)"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"measured {label}")
    ax.set_ylabel(f"joint fit's prediction of {label}")
    ax.set_title("L = E + sum_i A_i x_i^-alpha_i over S, B, D, K", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.25)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=130)
    return path


def _ci_text(ci: Sequence[Any] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "[no CI]"
    return f"[{float(ci[0]):.3g}, {float(ci[1]):.3g}]"


def _fit_headline(fit: Mapping[str, Any]) -> dict[str, Any]:
    main = fit.get("compute_fit", {})
    headline: dict[str, Any] = {"target": fit.get("target"), "compute": fit.get("compute")}
    if "alpha" in main:
        headline.update(alpha=main["alpha"], alpha_ci=main["ci"].get("alpha"), E=main["E"], A=main["A"])
    hold = fit.get("holdout", {})
    if "mean_abs_relative_error" in hold:
        headline["holdout_mean_abs_relative_error"] = hold["mean_abs_relative_error"]
    joint = fit.get("joint_fit", {})
    if "variables" in joint:
        headline["joint_alpha"] = {v: joint[f"alpha_{v}"] for v in joint["variables"]}
    return headline


def _bound_note(alpha: float) -> str:
    """A warning when an exponent sits at the fitter's bounds (1e-4 or 10): no power law there."""
    if alpha <= 1.01e-4 or alpha >= 9.9:
        return " (alpha at the fitter's bound: the target does not fall like a power law here)"
    return ""


def _fit_markdown_lines(fit: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    target, compute = fit["target"], fit["compute"]
    main = fit.get("compute_fit", {})
    if "alpha" in main:
        lines.append(
            f"- {_TARGETS.get(target, target)} vs {_COMPUTES[compute]}: L = E + A C^-alpha with "
            f"alpha = {main['alpha']:.3g} {_ci_text(main['ci'].get('alpha'))}, E = {main['E']:.3g} "
            f"{_ci_text(main['ci'].get('E'))}, A = {main['A']:.3g} ({main['n_points']} runs, "
            f"{fit.get('confidence', 0.95):.0%} bootstrap CIs).{_bound_note(main['alpha'])}"
        )
    elif "skipped" in main:
        lines.append(f"- compute fit skipped: {main['skipped']}")
    hold = fit.get("holdout", {})
    if "mean_abs_relative_error" in hold:
        lines.append(
            f"- hold-out: fitted without the {int(sum(hold['mask']))} largest-compute run(s), the law "
            f"predicts them with mean |relative error| {100 * hold['mean_abs_relative_error']:.1f} % "
            f"(max {100 * hold['max_abs_relative_error']:.1f} %)."
        )
    elif "skipped" in hold:
        lines.append(f"- hold-out skipped: {hold['skipped']}")
    for var, axis_fit in fit.get("axis_fits", {}).items():
        if "alpha" in axis_fit:
            lines.append(
                f"- along {_VARIABLE_LABELS[var]} (others at the point): alpha = {axis_fit['alpha']:.3g} "
                f"{_ci_text(axis_fit['ci'].get('alpha'))}, E = {axis_fit['E']:.3g} "
                f"({axis_fit['n_points']} runs).{_bound_note(axis_fit['alpha'])}"
            )
        else:
            lines.append(f"- along {_VARIABLE_LABELS[var]}: skipped ({axis_fit.get('skipped')})")
    joint = fit.get("joint_fit", {})
    if "variables" in joint:
        parts = ", ".join(
            f"alpha_{v} = {joint[f'alpha_{v}']:.3g} {_ci_text(joint['ci'].get(f'alpha_{v}'))}"
            for v in joint["variables"]
        )
        lines.append(f"- joint L = E + sum_i A_i x_i^-alpha_i: {parts}; E = {joint['E']:.3g}.")
        pinned = [v for v in joint["variables"] if _bound_note(joint[f"alpha_{v}"])]
        if pinned:
            lines.append(
                f"  (alpha of {', '.join(pinned)} at the fitter's bounds [1e-4, 10]: the target does not "
                "fall like a power law in them)"
            )
        if "holdout_mean_abs_relative_error" in joint:
            lines.append(
                f"- joint hold-out (largest-compute runs): mean |relative error| "
                f"{100 * joint['holdout_mean_abs_relative_error']:.1f} %."
            )
    elif "skipped" in joint:
        lines.append(f"- joint fit skipped: {joint['skipped']}")
    lines += ["", _FLOPS_CONVENTION]
    return lines


def fit_sweep(
    sweep_dir: str | Path,
    *,
    target: str = "ppe",
    compute: str = "flops",
    bootstrap: int = 200,
    holdout_frac: float = 0.2,
    seed: int = 0,
    log: Log = _print,
) -> dict[str, Any]:
    """Fit scaling laws to a scaling sweep's results; write fit.json, fit.md and figures.

    Fits, each robust (Huber in log space, several starts) with bootstrap CIs:

    - ``compute_fit``: target = E + A C^-alpha over every run, C = FLOPs or sample-views;
    - ``holdout``: the same law fitted without the ``holdout_frac`` largest-compute runs,
      and its relative error in predicting them;
    - ``axis_fits``: target against each variable along its axis (others at the point);
    - ``joint_fit``: target = E + sum_i A_i x_i^-alpha_i over the variables that vary, with
      its own hold-out error.

    A fit without enough runs is recorded as ``{"skipped": reason}``.

    Raises:
        ValueError: not a scaling sweep, an unknown target or compute, or no usable runs.
    """
    from mmcr.analysis.fit import fit_joint, fit_power_law, holdout_error

    out = Path(sweep_dir)
    meta = _load_meta(out)
    if meta["kind"] != "scaling":
        raise ValueError(f"mmcr fit needs a scaling sweep; {out} holds a {meta['kind']!r} sweep.")
    if target == "loss":
        raise ValueError(
            "target 'loss' cannot be fitted: the MMCR loss -||C||_* is negative and its optimum "
            "sqrt(B min(B, D)) changes with B and D; fit a PPE (ppe or val_ppe)."
        )
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {', '.join(_TARGETS)}; got {target!r}.")
    if compute not in _COMPUTES:
        raise ValueError(f"compute must be one of {', '.join(_COMPUTES)}; got {compute!r}.")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0; got {bootstrap}.")
    spec = SweepSpec.from_dict(meta["spec"])
    rows = [r for r in read_results(out) if r.get(target) is not None and float(r[target]) > 0]
    if not rows:
        raise ValueError(f"{out / RESULTS_FILE} holds no runs with a positive {target}.")
    rows.sort(key=lambda r: (r[compute], r["name"]))
    c = np.array([float(r[compute]) for r in rows])
    y = np.array([float(r[target]) for r in rows])
    result: dict[str, Any] = {
        "target": target,
        "compute": compute,
        "compute_convention": _FLOPS_CONVENTION,
        "confidence": 0.95,
        "bootstrap": bootstrap,
        "holdout_frac": holdout_frac,
        "runs": [r["name"] for r in rows],
    }

    def attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except ValueError as exc:
            return {"skipped": str(exc)}

    def power(x: np.ndarray, values: np.ndarray) -> dict[str, Any]:
        fit = fit_power_law(x, values, bootstrap=bootstrap, seed=seed)
        return {**fit.to_dict(), "bootstrap_params": fit.bootstrap_params}

    result["compute_fit"] = attempt(lambda: power(c, y))

    def holdout() -> dict[str, Any]:
        h = holdout_error(c, y, frac_largest=holdout_frac)
        return {
            "mask": h["holdout_mask"],
            "predicted": h["predicted"],
            "observed": h["observed"],
            "relative_error": h["relative_error"],
            "mean_abs_relative_error": h["mean_abs_relative_error"],
            "max_abs_relative_error": h["max_abs_relative_error"],
            "fit": h["fit"].to_dict(),
        }

    result["holdout"] = attempt(holdout)

    def axis_fit(var: str) -> dict[str, Any]:
        line = [r for r in rows if _on_axis(r, spec.point, var)]
        x = np.array([float(r[var]) for r in line])
        if len(set(x.tolist())) < 3:
            raise ValueError(f"{len(set(x.tolist()))} distinct values of {var}; a power law needs 3")
        values = np.array([float(r[target]) for r in line])
        return {**power(x, values), "runs": [r["name"] for r in line]}

    result["axis_fits"] = {
        var: attempt(functools.partial(axis_fit, var)) for var in SCALING_VARIABLES if var in spec.axes
    }

    def joint() -> dict[str, Any]:
        varying = [v for v in SCALING_VARIABLES if len({r[v] for r in rows}) >= 2]
        if not varying:
            raise ValueError("no variable takes two values")
        variables = {v: np.array([float(r[v]) for r in rows]) for v in varying}
        fit = fit_joint(variables, y, bootstrap=bootstrap, seed=seed)
        out_joint: dict[str, Any] = {
            **fit.to_dict(),
            "observed": y,
            "predicted": fit.predict(variables),
        }
        try:
            h = holdout_error(variables, y, frac_largest=holdout_frac, order_by=c)
            out_joint["holdout_mask"] = h["holdout_mask"]
            out_joint["holdout_predicted"] = h["predicted"]
            out_joint["holdout_mean_abs_relative_error"] = h["mean_abs_relative_error"]
            out_joint["holdout_max_abs_relative_error"] = h["max_abs_relative_error"]
        except ValueError as exc:
            out_joint["holdout_skipped"] = str(exc)
        return out_joint

    result["joint_fit"] = attempt(joint)
    _write_json(out / FIT_FILE, result)
    stored = json.loads((out / FIT_FILE).read_text())
    figures = _fit_figures(out, stored, read_results(out))
    lines = [f"# Scaling-law fits of {out}", "", *_fit_markdown_lines(stored), ""]
    lines += ["Figures: " + ", ".join(p.name for p in figures.values()), ""]
    (out / FIT_MD).write_text("\n".join(lines))
    for text in _fit_markdown_lines(stored)[:-2]:
        log(text)
    log(f"wrote {out / FIT_FILE}, {out / FIT_MD} and {len(figures)} figures")
    return stored
