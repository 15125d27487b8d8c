"""mmcr: Maximum Manifold Capacity Representations.

The exact, fast MMCR objective (Yerxa et al., NeurIPS 2023) and the analyses of
Schaeffer et al. (2024), "Towards an Improved Understanding and Utilization of Maximum
Manifold Capacity Representations".

>>> import torch
>>> from mmcr import MMCRLoss
>>> loss_fn = MMCRLoss(lmbda=0.0)
>>> z = torch.randn(8, 2, 16)       # 8 samples, 2 views, 16-dimensional projections
>>> loss = loss_fn(z)               # -||C||_*, C the 8 x 16 matrix of view centroids
"""

from mmcr.objectives.mmcr import MMCRLoss, pretraining_percent_error

__version__ = "0.1.0"

__all__ = ["MMCRLoss", "__version__", "pretraining_percent_error"]
