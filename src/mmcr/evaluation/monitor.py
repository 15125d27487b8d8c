"""The validation monitor run during training: kNN accuracy and the geometry of held-out views.

It looks at the validation split held out of the training set only (model selection never
sees the test split): the kNN accuracy of backbone features against a memory bank of
training images, and the geometry (alignment, uniformity, effective rank, PPE, MI bound)
of K fresh views of validation images, measured in batches of the training batch size
because the PPE depends on the number of points P.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmcr.data import ImageDataset, MultiViewAugment
from mmcr.evaluation.embed import batched_apply, view_geometry
from mmcr.evaluation.knn import knn_accuracy
from mmcr.geometry.metrics import effective_rank
from mmcr.models import MMCRNetwork

MEMORY_BANK_SIZE = 10000  # training images the kNN monitor compares against
EFFECTIVE_RANK_SAMPLES = 4096


@dataclass
class ValidationMonitor:
    """Scores a network on a fixed memory bank and validation split; call it with the network.

    Attributes:
        memory: labelled training images (a seeded sample of at most 10,000 is the memory bank).
        val: held-out labelled images.
        augment: the training augmentation (its normalisation makes the plain view).
        num_views: K, views per image for the geometry.
        points: samples per geometry batch (the training batch size).
        knn_k, knn_temperature: the kNN classifier's neighbours and temperature.
        size: validation images used for the geometry.
        seed: seeds the memory-bank sample and the views.
    """

    memory: ImageDataset
    val: ImageDataset
    augment: MultiViewAugment
    num_views: int
    points: int
    knn_k: int
    knn_temperature: float
    size: int
    seed: int
    _bank: ImageDataset = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order = torch.randperm(len(self.memory), generator=torch.Generator().manual_seed(self.seed))
        self._bank = self.memory.subset(order[:MEMORY_BANK_SIZE])

    @torch.no_grad()
    def __call__(self, network: MMCRNetwork, device: torch.device) -> dict[str, float]:
        """``knn_val_acc``, ``val_<geometry>``, ``val_mi_*`` and ``val_feature_effective_rank``."""
        was_training = network.training
        network.eval()
        encoder = network.encoder
        config = self.augment.config
        feats_mem = batched_apply(encoder, self._bank.images, config, device=device)
        feats_val = batched_apply(encoder, self.val.images, config, device=device)
        out: dict[str, float] = {}
        if len(self.val) > 0:
            out["knn_val_acc"] = knn_accuracy(
                feats_mem,
                self._bank.labels,
                feats_val,
                self.val.labels,
                k=self.knn_k,
                temperature=self.knn_temperature,
                num_classes=self.memory.num_classes,
            )
        images = self.val.images if len(self.val) >= 2 else self._bank.images
        geometry, mi = view_geometry(
            network,
            images[: self.size],
            self.augment,
            self.num_views,
            points=self.points,
            seed=self.seed + 7,
            device=device,
        )
        geometry.pop("batch_points")
        out.update({f"val_{key}": value for key, value in geometry.items()})
        if mi:
            out["val_mi_lower_bound"] = mi["bound"]
            out["val_mi_entropy"] = mi["entropy"]
            out["val_mi_reconstruction_gain"] = mi["reconstruction_gain"]
            out["val_mi_entropy_deficit"] = mi["entropy_deficit"]
        features = feats_val if len(feats_val) else feats_mem
        out["val_feature_effective_rank"] = effective_rank(features[:EFFECTIVE_RANK_SAMPLES])
        network.train(was_training)
        return out
