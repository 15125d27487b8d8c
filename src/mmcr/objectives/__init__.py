"""Self-supervised objectives on ``(B, K, D)`` multi-view projector outputs.

MMCR (:class:`MMCRLoss`) and the baselines it is compared with (X-CLR, :class:`XCLRLoss`,
also takes the graph of the samples' classes or captions; CLIP, :class:`CLIPLoss`, and
SigLIP, :class:`SigLIPLoss`, compare the image views with the caption views of paired
data). Every objective is an :class:`Objective` (an ``nn.Module``) taking the raw
projector outputs of ``B`` samples with ``K`` views each and returning a scalar;
:func:`build_objective` makes one by its registered name, as recipes do, and
:func:`register_objective` adds one.
"""

from mmcr.objectives.barlow_twins import BarlowTwinsLoss
from mmcr.objectives.base import Objective
from mmcr.objectives.clip import CLIPLoss
from mmcr.objectives.mmcr import MMCRLoss, pretraining_percent_error
from mmcr.objectives.registry import build_objective, objective_class, objective_names, register_objective
from mmcr.objectives.siglip import SigLIPLoss
from mmcr.objectives.simclr import SimCLRLoss
from mmcr.objectives.spectral import nuclear_norm
from mmcr.objectives.vicreg import VICRegLoss
from mmcr.objectives.xclr import XCLRLoss

__all__ = [
    "BarlowTwinsLoss",
    "CLIPLoss",
    "MMCRLoss",
    "Objective",
    "SigLIPLoss",
    "SimCLRLoss",
    "VICRegLoss",
    "XCLRLoss",
    "build_objective",
    "nuclear_norm",
    "objective_class",
    "objective_names",
    "pretraining_percent_error",
    "register_objective",
]
