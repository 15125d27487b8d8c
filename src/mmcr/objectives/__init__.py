"""Self-supervised objectives on ``(B, K, D)`` multi-view projector outputs.

MMCR (:class:`MMCRLoss`) and the baselines it is compared with. Every objective is an
``nn.Module`` taking the raw projector outputs of ``B`` samples with ``K`` views each and
returning a scalar; :func:`build_objective` makes one by name, as recipes do.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mmcr.objectives.barlow_twins import BarlowTwinsLoss
from mmcr.objectives.mmcr import MMCRLoss, pretraining_percent_error
from mmcr.objectives.simclr import SimCLRLoss
from mmcr.objectives.spectral import nuclear_norm
from mmcr.objectives.vicreg import VICRegLoss


def _registry() -> dict[str, type[nn.Module]]:
    return {"mmcr": MMCRLoss, "simclr": SimCLRLoss, "barlow_twins": BarlowTwinsLoss, "vicreg": VICRegLoss}


OBJECTIVES = ("mmcr", "simclr", "barlow_twins", "vicreg")


def build_objective(name: str, **kwargs: Any) -> nn.Module:
    """Make an objective by name (``"mmcr"``, ...) with keyword hyper-parameters."""
    registry = _registry()
    key = name.lower().replace("-", "_")
    if key not in registry:
        raise ValueError(f"unknown objective {name!r}; valid names: {', '.join(sorted(registry))}")
    return registry[key](**kwargs)


__all__ = [
    "OBJECTIVES",
    "BarlowTwinsLoss",
    "MMCRLoss",
    "SimCLRLoss",
    "VICRegLoss",
    "build_objective",
    "nuclear_norm",
    "pretraining_percent_error",
]
