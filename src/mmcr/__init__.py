"""mmcr: Maximum Manifold Capacity Representations.

The exact, fast MMCR objective (Yerxa et al., NeurIPS 2023) and the analyses of
Schaeffer et al. (2024), "Towards an Improved Understanding and Utilization of Maximum
Manifold Capacity Representations".

>>> import torch
>>> from mmcr import MMCRLoss
>>> loss_fn = MMCRLoss(lmbda=0.0)
>>> z = torch.randn(8, 2, 16)       # 8 samples, 2 views, 16-dimensional projections
>>> loss = loss_fn(z)               # -||C||_*, C the 8 x 16 matrix of view centroids

A trained encoder, from a checkpoint or an export (``mmcr export``), with its preprocessing:

>>> from mmcr import load_encoder
>>> encoder = load_encoder("runs/fmnist/last.pt")          # doctest: +SKIP
>>> features = encoder(encoder.preprocess(images))         # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmcr.export import load_encoder
    from mmcr.objectives.mmcr import MMCRLoss, pretraining_percent_error

__version__ = "0.1.0"

__all__ = ["MMCRLoss", "__version__", "load_encoder", "pretraining_percent_error"]


def __getattr__(name: str) -> Any:
    # torch is imported on first use of the objective, so `mmcr --help` and
    # `mmcr --version` do not pay for it
    if name in ("MMCRLoss", "pretraining_percent_error"):
        from mmcr.objectives import mmcr as objective

        return getattr(objective, name)
    if name == "load_encoder":
        from mmcr.export import load_encoder

        return load_encoder
    raise AttributeError(f"module 'mmcr' has no attribute {name!r}")
