"""Sweep files: their keys, their checks, and the runs they plan.

A sweep file is TOML. Common keys::

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
much of the measured ridge is there before any training). Scaling: ``[point]`` (the base
point: steps, batch_size, projector_dim, num_views), ``[axes]`` (values of each variable
swept one at a time around the point) and an optional ``[joint]`` (a Cartesian grid over two
or more variables, the others at the point); or, for a study designed to predict,
``[design]``: ``steps = [...]`` (a geometric grid) and ``cells = [{batch_size = B,
projector_dim = D, num_views = K}, ...]``, every cell trained at every number of steps
(``[point]`` and ``[axes]`` are then optional). Unless ``[base]`` sets them, sweeps use
``progress = false``, ``eval_every = 0`` (validation monitor at the end only) and
``warmup_epochs = 0``; with a step budget only, ``epochs`` is set so large that
``max_steps`` is what ends each run.

Every run of a sweep in ``OUT`` lives in ``OUT/runs/<name>/``
(:func:`mmcr.experiments.runner.run_dir`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import tomllib

from mmcr.config import PretrainConfig, build_config, check_keys
from mmcr.data import dataset_info, load_dataset
from mmcr.experiments.runner import run_dir

__all__ = [
    "SCALING_VARIABLES",
    "SWEEP_KINDS",
    "VARIABLE_LABELS",
    "Log",
    "PlannedRun",
    "SweepSpec",
    "cell_name",
    "dataset_overrides",
    "load_sweep",
    "parse_sweep",
    "plan_runs",
    "print_line",
    "run_config",
    "run_overrides",
]

SWEEP_KINDS = ("double-descent", "scaling")
#: The four variables of a scaling sweep; ``steps`` is pretrain's ``max_steps``.
SCALING_VARIABLES = ("steps", "batch_size", "projector_dim", "num_views")
#: Their names on a figure's axis.
VARIABLE_LABELS = {
    "steps": "gradient steps S",
    "batch_size": "batch size B",
    "projector_dim": "embedding dimension D",
    "num_views": "views per image K",
}

#: ``epochs`` of a run whose budget is a number of steps: large enough never to end it.
HUGE_EPOCHS = 1_000_000
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
_KIND_KEYS = {
    "double-descent": ("grid", "theory", "control_init"),
    "scaling": ("point", "axes", "joint", "design"),
}
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
        "batch_size": "[point] and [axes], or [design] cells",
        "projector_dim": "[point] and [axes], or [design] cells",
        "num_views": "[point] and [axes], or [design] cells",
        "max_steps": "[point] and [axes] (steps), or [design] steps",
        "epochs": "[point] and [axes] (steps), or [design] steps",
        "seed": "seeds",
        "out": "--out",
    },
}

#: Where a sweep's progress lines go.
Log = Callable[[str], None]


def print_line(message: str) -> None:
    """The default :data:`Log`: print, flushed at once (so a log file under nohup keeps up)."""
    print(message, flush=True)


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
        design_steps, cells: the designed scaling study: every cell (batch_size,
            projector_dim, num_views) at every number of steps.
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
    design_steps: list[int] = field(default_factory=list)
    cells: list[dict[str, int]] = field(default_factory=list)

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
            "design_steps": list(self.design_steps),
            "cells": [dict(c) for c in self.cells],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        """Rebuild a spec stored by :meth:`to_dict` (e.g. in OUT/sweep.json)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------
# Checking a sweep file.
# --------------------------------------------------------------------------------------


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


def _bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} in {source} must be true or false; got {value!r}.")
    return value


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


def _check_kind(data: Mapping[str, Any], source: str, kind: str | None) -> str:
    """The sweep's kind (the file's, else the command's), with the file's keys checked for it."""
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
    return str(file_kind)


def _parse_common(data: Mapping[str, Any], source: str, kind: str) -> SweepSpec:
    """The keys every sweep has: description, out, base_recipe, [base], seeds, ppe_last, fallback."""
    spec = SweepSpec(kind=kind, source=source)
    spec.description = str(data.get("description", ""))
    if "out" in data:
        if not isinstance(data["out"], str) or not data["out"]:
            raise ValueError(f"out in {source} must be a directory path; got {data['out']!r}.")
        spec.out = data["out"]
    if "base_recipe" in data:
        spec.base_recipe = _resolve_recipe(data["base_recipe"], source)
    base = _table(data, "base", source)
    check_keys(base, source=f"[base] of {source}")
    for key, where in _SET_BY_SWEEP[kind].items():
        if key in base:
            raise ValueError(f"base.{key} in {source} is set by the sweep itself; set it in {where}.")
    spec.base = base
    spec.seeds = _int_list(data.get("seeds", [0]), "seeds", minimum=0)
    spec.ppe_last = _positive_int(data.get("ppe_last", 5), "ppe_last")
    spec.fallback_to_digits = _bool(data.get("fallback_to_digits", True), "fallback_to_digits", source)
    return spec


def _parse_double_descent(spec: SweepSpec, data: Mapping[str, Any], source: str) -> None:
    """[budget], [grid], [theory] and control_init of a double-descent sweep."""
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
    spec.control_init = _bool(data.get("control_init", True), "control_init", source)


def _scaling_values(table: Mapping[str, Any], key: str) -> dict[str, list[int]]:
    return {
        k: sorted(_int_list(v, f"{key}.{k}", minimum=2 if k == "batch_size" else 1)) for k, v in table.items()
    }


_CELL_KEYS = ("batch_size", "projector_dim", "num_views")


def _parse_design(spec: SweepSpec, data: Mapping[str, Any], source: str) -> None:
    """[design] of a scaling sweep: steps = [...] and cells = [{batch_size, projector_dim, num_views}]."""
    design = _table(data, "design", source)
    _check_table_keys(design, ("steps", "cells"), "design", source)
    for key in ("steps", "cells"):
        if key not in design:
            raise ValueError(f"design.{key} in {source} is missing.")
    spec.design_steps = sorted(_int_list(design["steps"], "design.steps"))
    cells = design["cells"]
    if not isinstance(cells, list) or not cells:
        raise ValueError(
            f"design.cells in {source} must be a non-empty list of tables "
            f"{{batch_size = B, projector_dim = D, num_views = K}}; got {cells!r}."
        )
    parsed: list[dict[str, int]] = []
    for i, cell in enumerate(cells):
        where = f"design.cells[{i}]"
        if not isinstance(cell, dict):
            raise ValueError(f"{where} in {source} must be a table {{batch_size = B, ...}}; got {cell!r}.")
        _check_table_keys(cell, _CELL_KEYS, where, source)
        missing = [k for k in _CELL_KEYS if k not in cell]
        if missing:
            raise ValueError(f"{where} in {source} lacks {', '.join(missing)}.")
        value = {
            k: _positive_int(cell[k], f"{where}.{k}", minimum=2 if k == "batch_size" else 1)
            for k in _CELL_KEYS
        }
        if value in parsed:
            raise ValueError(f"{where} in {source} repeats an earlier cell: {value}.")
        parsed.append(value)
    spec.cells = parsed


def cell_name(values: Mapping[str, int]) -> str:
    """The name of a design cell: ``B<batch>_D<dim>_K<views>``."""
    return f"B{values['batch_size']}_D{values['projector_dim']}_K{values['num_views']}"


def _parse_scaling(spec: SweepSpec, data: Mapping[str, Any], source: str) -> None:
    """[point], [axes] and [joint] of a scaling sweep."""
    if "budget" in data:
        raise ValueError(
            f"budget in {source} does not apply to a scaling sweep: its steps come from "
            "point.steps and axes.steps."
        )
    if "design" in data:
        _parse_design(spec, data, source)
        if "point" not in data and "axes" not in data and "joint" not in data:
            return
    if "point" not in data:
        raise ValueError(f"point in {source} is missing: give [point] with {', '.join(SCALING_VARIABLES)}.")
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
    spec.axes = _scaling_values(axes, "axes")
    if joint and len(joint) < 2:
        raise ValueError(f"joint in {source} must name at least two variables; got {sorted(joint)}.")
    spec.joint = _scaling_values(joint, "joint")


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
    file_kind = _check_kind(data, source, kind)
    spec = _parse_common(data, source, file_kind)
    if file_kind == "double-descent":
        _parse_double_descent(spec, data, source)
    else:
        _parse_scaling(spec, data, source)
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


def _scaling_points(spec: SweepSpec) -> list[tuple[dict[str, int], str]]:
    """Every point of a scaling sweep with the group it comes from (repeats included)."""
    points: list[tuple[dict[str, int], str]] = []
    for cell in spec.cells:
        points += [({"steps": steps, **cell}, f"cell:{cell_name(cell)}") for steps in spec.design_steps]
    if not spec.point:
        return points
    points.append((dict(spec.point), "point"))
    for var, axis_values in spec.axes.items():
        points += [({**spec.point, var: v}, f"axis:{var}") for v in axis_values]
    if spec.joint:
        names = list(spec.joint)
        for combo in product(*(spec.joint[n] for n in names)):
            points.append(({**spec.point, **dict(zip(names, combo, strict=True))}, "joint"))
    return points


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
        for coords, group in _scaling_points(spec):
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
            values["epochs"] = HUGE_EPOCHS
        values.update(spec.budget)
        values.update(batch_size=c["P"], projector_dim=c["D"], seed=c["seed"])
    else:
        values.update(
            max_steps=c["steps"],
            epochs=HUGE_EPOCHS,
            batch_size=c["batch_size"],
            projector_dim=c["projector_dim"],
            num_views=c["num_views"],
            seed=c["seed"],
        )
    return values


def run_config(
    spec: SweepSpec, run: PlannedRun, out_dir: str | Path, dataset_overrides: Mapping[str, Any] | None = None
) -> PretrainConfig:
    """The resolved :class:`~mmcr.config.PretrainConfig` of one run, in ``OUT/runs/<name>``."""
    values = run_overrides(spec, run, dataset_overrides)
    values["out"] = str(run_dir(out_dir, run.name))
    return build_config(spec.base_recipe, values)


def dataset_overrides(spec: SweepSpec, log: Log) -> dict[str, Any]:
    """Fall back from Fashion-MNIST to scikit-learn's digits if the files are absent."""
    cfg = build_config(spec.base_recipe, {k: v for k, v in spec.base.items() if k != "out"})
    if dataset_info(cfg.dataset).name != "fashion-mnist":
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
