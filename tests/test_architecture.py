"""The package's layers point one way: read the import graph from the source and check it.

Every ``import`` and ``from ... import`` in ``src/mmcr`` counts, also those inside
functions (a deferred import is still a dependency). Each module belongs to a layer; a
module may import its own layer or one below, never one above, and the subpackages form
no import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. Within a layer, imports are allowed as long as they form no cycle.
LAYERS: list[set[str]] = [
    {"mmcr.records", "mmcr.distributed", "mmcr.threads"},  # utilities
    {"mmcr.data", "mmcr.models", "mmcr.objectives", "mmcr.optim"},  # leaves
    {"mmcr.geometry", "mmcr.analysis"},  # measurements on embeddings, theory and fits
    {"mmcr.evaluation"},  # kNN, probe, embedding, the training-time monitor
    {"mmcr.config", "mmcr.checkpoint", "mmcr.build"},  # assembly: recipe -> objects
    {"mmcr.training", "mmcr.evaluate", "mmcr.export", "mmcr.embedding", "mmcr.manifolds"},  # jobs
    {"mmcr.experiments"},  # studies of many runs
    {"mmcr.cli"},  # the command line
]
# ``from mmcr import MMCRLoss, load_encoder``: the root imports these on first use of the name
# (PEP 562), so importing the root costs a module of the leaves' layer, nothing more.
ROOT_MAY_IMPORT = {"mmcr.objectives", "mmcr.export"}
ROOT_LAYER = "mmcr.objectives"


def unit_of(module: str) -> str:
    """The layered unit of a dotted module name: ``mmcr.<top>``, or ``mmcr`` itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_of(unit: str) -> int:
    if unit == "mmcr":
        return layer_of(ROOT_LAYER)
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"{unit} is in no layer of tests/test_architecture.py: add it to LAYERS")


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> set[str]:
    """Absolute ``mmcr...`` module names imported anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "mmcr":  # from mmcr import distributed, MMCRLoss, ...
                for alias in node.names:
                    candidate = f"mmcr.{alias.name}"
                    found.add(candidate if unit_of(candidate) in set().union(*LAYERS) else "mmcr")
            else:
                found.add(module)
    return {name for name in found if name == "mmcr" or name.startswith("mmcr.")}


def import_graph() -> dict[str, set[str]]:
    """Unit -> units it imports (self-imports dropped)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((SRC / "mmcr").rglob("*.py")):
        unit = unit_of(module_name(path))
        targets = {unit_of(name) for name in imports_of(path)} - {unit}
        graph.setdefault(unit, set()).update(targets)
    return graph


def test_every_module_is_in_a_layer() -> None:
    for unit in import_graph():
        layer_of(unit)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted((SRC / "mmcr").rglob("*.py")):
        unit = unit_of(module_name(path))
        for name in sorted(imports_of(path)):
            target = unit_of(name)
            if target == unit:
                continue
            if unit == "mmcr":
                if target not in ROOT_MAY_IMPORT:
                    upward.append(f"{path.relative_to(SRC)} imports {name}")
            elif layer_of(target) > layer_of(unit):
                upward.append(f"{path.relative_to(SRC)} (layer {layer_of(unit)}) imports {name}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_subpackages_form_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(unit: str) -> None:
        state[unit] = 1
        path.append(unit)
        for target in sorted(graph.get(unit, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # the checker itself: a deferred import of the trainer from evaluation is found
    module = tmp_path / "mmcr" / "evaluation" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from . import knn\n\ndef f():\n    from mmcr.training.loop import pretrain\n    return pretrain\n"
    )
    names = imports_of(module, tmp_path)
    assert names == {"mmcr.training.loop", "mmcr.evaluation"}
    assert layer_of(unit_of("mmcr.training.loop")) > layer_of(unit_of("mmcr.evaluation.bad"))

