"""Geometry of representations: alignment, uniformity, effective rank, PPE, MI bound."""

from mmcr.geometry.metrics import alignment, effective_rank, geometry_summary, uniformity
from mmcr.geometry.mutual_information import mi_lower_bound
from mmcr.objectives.mmcr import pretraining_percent_error

__all__ = [
    "alignment",
    "effective_rank",
    "geometry_summary",
    "mi_lower_bound",
    "pretraining_percent_error",
    "uniformity",
]
