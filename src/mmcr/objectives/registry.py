"""The registry of objectives: a name in a recipe -> an :class:`~mmcr.objectives.base.Objective` class.

An objective is one file whose class is decorated with :func:`register_objective`; names,
``--help`` choices, recipe validation and error messages all come from here.

>>> from mmcr.objectives import Objective, register_objective
>>> @register_objective
... class MeanCosine(Objective):
...     name = "mean_cosine"
...     def forward(self, z):
...         return -torch.nn.functional.normalize(z, dim=-1).mean(1).norm(dim=-1).mean()
"""

from __future__ import annotations

from typing import Any, TypeVar

from mmcr.objectives.base import Objective

_OBJECTIVES: dict[str, type[Objective]] = {}

T = TypeVar("T", bound=type[Objective])


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_objective(cls: T) -> T:
    """Register an :class:`Objective` subclass under its ``name``; use as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"register_objective takes a subclass of Objective, got {cls!r}")
    key = _key(cls.name)
    if not key:
        raise ValueError(f"{cls.__name__} needs a class attribute name = '...' to be registered")
    if key in _OBJECTIVES and _OBJECTIVES[key] is not cls:
        raise ValueError(f"objective {key!r} is already registered ({_OBJECTIVES[key].__name__})")
    _OBJECTIVES[key] = cls
    return cls


def objective_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_OBJECTIVES)


def objective_class(name: str) -> type[Objective]:
    """The class registered as ``name``; ``ValueError`` naming the valid ones otherwise."""
    key = _key(name)
    if key not in _OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(objective_names())}")
    return _OBJECTIVES[key]


def build_objective(name: str, **kwargs: Any) -> Objective:
    """Make an objective by name (``"mmcr"``, ...) with keyword hyper-parameters."""
    cls = objective_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"objective {name!r}: {exc}") from exc
