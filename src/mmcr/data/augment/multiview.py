""":class:`MultiViewAugment`: K augmented views of every image of a batch, as a module."""

from __future__ import annotations

import torch

from mmcr.data.augment.batched import apply_params
from mmcr.data.augment.config import AugmentConfig
from mmcr.data.augment.pixels import check_images
from mmcr.data.augment.sampling import AugmentParams, sample_params
from mmcr.data.augment.workspace import Workspace

__all__ = ["MultiViewAugment"]


class MultiViewAugment(torch.nn.Module):
    """Make K augmented views of every image of a batch, on the batch's device.

    On CPU the module keeps scratch tensors between calls (about three times the size of
    one output batch; :meth:`clear_workspace` frees them), because fresh memory costs
    page faults that take about a third of the time otherwise. It has no parameters and
    no state that a checkpoint needs.

    Args:
        config: the recipe, e.g. ``preset("cifar")``.

    Example:
        >>> import torch
        >>> from mmcr.data import MultiViewAugment, preset
        >>> augment = MultiViewAugment(preset("fashion-mnist"))
        >>> images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
        >>> augment(images, num_views=2).shape    # (N, K, C, crop, crop) float32
        torch.Size([8, 2, 1, 28, 28])
    """

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        if not isinstance(config, AugmentConfig):
            raise ValueError(f"config must be an AugmentConfig, got {type(config).__name__}")
        self.config = config
        # CPU only: GPU allocators cache memory already.
        self._workspace = Workspace()

    def sample_params(
        self,
        images: torch.Tensor,
        num_views: int,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw the parameters for ``images`` ``(N, C, H, W)``, on the images' device."""
        images = check_images(images)
        return sample_params(
            self.config,
            images.shape[0],
            num_views,
            (images.shape[2], images.shape[3]),
            generator=generator,
            device=images.device,
        )

    def forward(
        self,
        images: torch.Tensor,
        num_views: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: uint8 ``(N, C, H, W)`` (0-255) or float in [0, 1], C in {1, 3}.
            num_views: K >= 1 views per image.
            generator: random source (may live on another device than the images; the
                parameters are drawn there and moved). Same seed -> same views.

        Returns:
            float32 ``(N, K, C, crop_size, crop_size)``, normalised with the config's
            mean and std.
        """
        if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an int >= 1, got {num_views!r}")
        params = self.sample_params(images, num_views, generator)
        if images.device.type != "cpu":
            return apply_params(images, params, self.config)
        with self._workspace.lock:
            return apply_params(images, params, self.config, workspace=self._workspace)

    def clear_workspace(self) -> None:
        """Free the scratch memory kept between calls on CPU (about 3x one output)."""
        self._workspace.clear()

    def extra_repr(self) -> str:
        return f"config={self.config}"
