"""The in-memory data set: :class:`ImageDataset`, its resize, and stratified splits.

Every reader returns a whole split as one :class:`ImageDataset`: uint8 images
``(N, C, H, W)`` with pixel values 0-255 and int64 labels ``(N,)``.

>>> from mmcr.data import load_dataset, train_val_split
>>> train = load_dataset("digits", "train")
>>> train.images.shape, train.images.dtype        # (N, C, H, W) uint8
(torch.Size([1497, 1, 8, 8]), torch.uint8)
>>> train_idx, val_idx = train_val_split(train.labels, val_fraction=0.1, seed=0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ImageDataset", "resize_uint8", "stratified_split", "train_val_split"]


class ImageTensorShape:
    """``len``, ``channels`` and ``image_size`` of a data set holding ``images`` (N, C, H, W)."""

    images: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of colour channels C (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width ``(H, W)`` in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[3])


@dataclass
class ImageDataset(ImageTensorShape):
    """A whole split held in memory.

    Attributes:
        images: uint8 tensor of shape ``(N, C, H, W)``, pixel values 0-255.
        labels: int64 tensor of shape ``(N,)``, class indices in ``[0, num_classes)``;
            ``-1`` marks an unlabeled image.
        num_classes: number of classes of the data set (not only those present here).
        name: the data set's name, e.g. ``"cifar10"``.
        classes: class names indexed by label, or ``None`` where unknown.
        sources: the files (or folder) the split was read from, for the run's log; empty
            for generated or bundled data.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    classes: list[str] | None = None
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                "ImageDataset.images must be a uint8 tensor of shape (N, C, H, W), got "
                f"dtype {self.images.dtype} and shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(
                "ImageDataset.labels must be an int64 tensor of shape (N,), got "
                f"dtype {self.labels.dtype} and shape {tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"ImageDataset has {self.images.shape[0]} images but "
                f"{self.labels.shape[0]} labels; they must match"
            )

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """Return a new data set holding the images at ``indices`` (a 1-D index tensor or list)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1:
            raise ValueError(
                f"subset expects a 1-D tensor of indices, got shape {tuple(index.shape)}"
            )
        return ImageDataset(
            images=self.images[index],
            labels=self.labels[index],
            num_classes=self.num_classes,
            name=self.name,
            classes=None if self.classes is None else list(self.classes),
            sources=self.sources,
        )


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 ``(N, C, H, W)`` images to ``(N, C, size, size)`` (bilinear, antialiased)."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        resized = F.interpolate(
            block, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(
    labels: torch.Tensor, n_holdout: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so that ``n_holdout`` are held out, each class in proportion.

    Per-class hold-out counts use largest remainders, so they sum to exactly ``n_holdout``
    and each is within one of ``n_holdout * n_class / N``. Returns sorted int64 index
    tensors ``(keep, holdout)``.
    """
    labels = labels.detach().to("cpu", torch.int64)
    n = labels.shape[0]
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = counts.double() * n_holdout / max(n, 1)
    base = quotas.floor().long()
    remainder = n_holdout - int(base.sum())
    if remainder > 0:
        # Largest fractional parts first; ties go to the earlier class (stable sort).
        order = torch.sort(quotas - base.double(), descending=True, stable=True).indices
        base[order[:remainder]] += 1
    keep, holdout = [], []
    for cls, k in zip(classes.tolist(), base.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        shuffled = members[torch.randperm(members.numel(), generator=generator)]
        holdout.append(shuffled[:k])
        keep.append(shuffled[k:])
    empty = torch.empty(0, dtype=torch.int64)
    keep_idx = torch.sort(torch.cat(keep) if keep else empty).values
    holdout_idx = torch.sort(torch.cat(holdout) if holdout else empty).values
    return keep_idx, holdout_idx


def train_val_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out a stratified validation set from a training split, for model selection.

    The test split is for final numbers only; choose checkpoints and hyper-parameters on
    the validation indices returned here.

    Args:
        labels: int tensor of shape ``(N,)`` (``-1`` = unlabeled, treated as one stratum).
        val_fraction: fraction in ``[0, 1)`` to hold out; ``round(val_fraction * N)``
            indices are held out, each class in proportion (largest remainders).
        seed: seeds the shuffle; the same labels and seed give the same split.

    Returns:
        ``(train_indices, val_indices)``: sorted int64 tensors, disjoint, together
        ``arange(N)``.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of shape (N,), got {shape}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    n_val = round(float(val_fraction) * labels.shape[0])
    generator = torch.Generator().manual_seed(int(seed))
    return stratified_split(labels, n_val, generator)
