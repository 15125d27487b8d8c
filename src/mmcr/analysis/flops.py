"""FLOP accounting for the compute analyses: forward FLOPs of a network, training FLOPs of a step."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["count_forward_flops", "flops_per_step"]



def flops_per_step(forward_flops_per_image: float, batch_size: int, num_views: int) -> float:
    """Training FLOPs of one optimiser step: ``3 * F * B * K``.

    Convention: one multiply-add is 2 FLOPs, and the backward pass costs twice the forward
    pass (gradients with respect to activations and to weights), so forward + backward is
    3 x forward (Kaplan et al. 2020; Hoffmann et al. 2022). Each of the B images contributes
    K augmented views, each a full forward and backward pass. Not counted: the MMCR loss
    itself (an SVD of the B x D centroid matrix, negligible next to the encoder), the
    forward passes of a momentum (EMA) encoder, the optimiser update and augmentation.

    Args:
        forward_flops_per_image: forward FLOPs of one view through encoder and projector,
            e.g. from :func:`count_forward_flops`.
        batch_size: B, images per step (across all processes).
        num_views: K, views per image.
    """
    if not forward_flops_per_image >= 0:
        raise ValueError(f"forward_flops_per_image must be >= 0; got {forward_flops_per_image}.")
    if batch_size < 1 or num_views < 1:
        raise ValueError(
            f"batch_size and num_views must be positive; got {batch_size} and {num_views}."
        )
    return 3.0 * float(forward_flops_per_image) * batch_size * num_views


def count_forward_flops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """Forward FLOPs of ``model`` for one example: 2 x multiply-adds of conv and linear layers.

    Counted, per call of each layer (a layer used twice counts twice):

    - ``nn.Conv1d/2d/3d``: 2 * (output elements) * (in_channels / groups) * prod(kernel_size);
    - ``nn.Linear``: 2 * in_features * out_features * (number of output rows).

    Not counted: biases, normalisation, activations, pooling, residual additions, attention
    products outside ``nn.Linear`` and transposed convolutions; for convolutional networks
    these are a small fraction of the total.

    The model runs once in eval mode under ``torch.no_grad`` on a zero batch of one example
    (so batch-norm running statistics are not touched); its training mode is restored.

    Args:
        model: any module; it is run on its own device and floating dtype.
        input_shape: shape of one example without the batch dimension, e.g. (3, 32, 32).

    Returns:
        FLOPs for one example (a float).
    """
    if len(input_shape) == 0 or any(int(s) < 1 for s in input_shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive sizes; got {input_shape}."
        )
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    total = [0.0]

    def conv_hook(module: torch.nn.Module, _: Any, output: torch.Tensor) -> None:
        assert isinstance(module, torch.nn.modules.conv._ConvNd)
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        total[0] += 2.0 * output.numel() * per_output

    def linear_hook(module: torch.nn.Module, _: Any, output: torch.Tensor) -> None:
        assert isinstance(module, torch.nn.Linear)
        total[0] += 2.0 * module.in_features * output.numel()

    handles = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        example = torch.zeros((1, *(int(s) for s in input_shape)), device=device)
        if dtype is not None:
            example = example.to(dtype)
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total[0]
