"""Geometry of representations: alignment, uniformity, effective rank, PPE, MI bound, manifold capacity."""

from mmcr.geometry.capacity import (
    ManifoldCapacity,
    SimulatedCapacity,
    ball_capacity,
    capacity_vs_samples,
    gardner_capacity,
    manifold_capacity,
    simulated_capacity,
)
from mmcr.geometry.dimension import explained_variance_dimension, participation_ratio, total_dimension
from mmcr.geometry.metrics import (
    alignment,
    effective_rank,
    geometry_summary,
    uniformity,
    wasserstein_uniformity,
)
from mmcr.geometry.mutual_information import mi_lower_bound
from mmcr.objectives.mmcr import pretraining_percent_error

__all__ = [
    "ManifoldCapacity",
    "SimulatedCapacity",
    "alignment",
    "ball_capacity",
    "capacity_vs_samples",
    "effective_rank",
    "explained_variance_dimension",
    "gardner_capacity",
    "geometry_summary",
    "manifold_capacity",
    "mi_lower_bound",
    "participation_ratio",
    "pretraining_percent_error",
    "simulated_capacity",
    "total_dimension",
    "uniformity",
    "wasserstein_uniformity",
]
