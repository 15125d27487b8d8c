"""Encoders (backbones), text towers, projector heads and the momentum (EMA) encoder.

Every encoder maps ``(N, C, H, W)`` float images to ``(N, feature_dim)`` globally
average-pooled features and carries an ``int`` attribute ``feature_dim``.

>>> import torch
>>> from mmcr.models import MMCRNetwork, build_encoder, build_projector
>>> encoder = build_encoder("convnet", in_channels=1)
>>> network = MMCRNetwork(encoder, build_projector(encoder.feature_dim, [512], 128))
>>> features, projections = network(torch.randn(8, 1, 28, 28))
>>> features.shape, projections.shape
(torch.Size([8, 256]), torch.Size([8, 128]))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from mmcr.models.convnet import ConvNet
from mmcr.models.momentum import MomentumEncoder, cosine_tau
from mmcr.models.projector import MMCRNetwork, build_projector
from mmcr.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from mmcr.models.text import CaptionTokenizer, LockedSentenceEncoder, TextTransformer

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "convnet": ConvNet,
    "resnet18_cifar": partial(resnet18, stem="cifar"),
    "resnet50_cifar": partial(resnet50, stem="cifar"),
    "resnet18": partial(resnet18, stem="imagenet"),
    "resnet50": partial(resnet50, stem="imagenet"),
}
"""Encoder names accepted by :func:`build_encoder`, mapped to their constructors."""


def build_encoder(name: str, in_channels: int = 3, **kwargs: object) -> nn.Module:
    """Build an encoder by name.

    Args:
        name: one of :data:`ENCODERS`: ``"convnet"`` (the CPU default),
            ``"resnet18_cifar"``, ``"resnet50_cifar"`` (3x3 stride-1 stem, no max-pool
            unless ``maxpool=True``), ``"resnet18"``, ``"resnet50"`` (7x7 stride-2 stem
            and max-pool unless ``maxpool=False``).
        in_channels: channels of the input images.
        **kwargs: options of the constructor: ``width``, ``convs_per_stage``,
            ``downsample`` for the ConvNet; ``maxpool``, ``zero_init_residual``,
            ``width`` for the ResNets.

    Returns:
        A module mapping ``(N, in_channels, H, W)`` to ``(N, feature_dim)``, with an
        ``int`` attribute ``feature_dim``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in ENCODERS:
        raise ValueError(
            f"unknown encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}"
        )
    constructor = ENCODERS[key]
    accepted = [
        p.name
        for p in inspect.signature(constructor).parameters.values()
        if p.name not in ("in_channels", "stem")
    ]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Encoder {key!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(accepted)}."
        )
    encoder = constructor(in_channels=in_channels, **kwargs)
    if not isinstance(getattr(encoder, "feature_dim", None), int):
        raise TypeError(f"Encoder {key!r} has no integer attribute feature_dim.")
    return encoder


TEXT_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "transformer": TextTransformer,
    "locked_minilm": LockedSentenceEncoder,
}
"""Text tower names accepted by :func:`build_text_encoder`, mapped to their constructors."""


def build_text_encoder(name: str, **kwargs: object) -> nn.Module:
    """Build a text tower by name (:mod:`mmcr.models.text`).

    Args:
        name: one of :data:`TEXT_ENCODERS`: ``"transformer"`` (trained from scratch, with a
            byte-level BPE tokenizer to train on the captions) or ``"locked_minilm"`` (the
            frozen all-MiniLM-L6-v2 and a trainable projection, the LiT setting).
        **kwargs: options of the constructor: ``vocab_size``, ``context_length``,
            ``width``, ``layers``, ``heads``, ``mlp_ratio``, ``dropout`` for the Transformer;
            ``width``, ``device`` for the locked tower.

    Returns:
        A module with ``prepare(texts) -> inputs`` and ``forward(inputs) -> (N, feature_dim)``,
        and an ``int`` attribute ``feature_dim``.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; valid: {', '.join(sorted(TEXT_ENCODERS))}")
    constructor = TEXT_ENCODERS[key]
    accepted = [p.name for p in inspect.signature(constructor).parameters.values() if p.name != "tokenizer"]
    unknown = sorted(set(kwargs) - set(accepted) - {"encoder"})
    if unknown:
        raise ValueError(
            f"Text encoder {key!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(a for a in accepted if a != 'encoder')}."
        )
    return constructor(**kwargs)


def convert_sync_batchnorm(
    model: nn.Module, process_group: torch.distributed.ProcessGroup | None = None
) -> nn.Module:
    """Replace every BatchNorm layer with :class:`torch.nn.SyncBatchNorm`.

    Under data parallelism the batch statistics are then those of the global batch.
    Attributes such as ``feature_dim`` are kept (the same module object is returned,
    converted in place, unless ``model`` itself is a BatchNorm layer).
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the 4-D weights of ``model`` in channels-last (NHWC) memory format, in place.

    Feed it inputs made with ``x.contiguous(memory_format=torch.channels_last)``; on CPU
    (oneDNN) and on GPUs with tensor cores the convolutions are then faster.
    """
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


__all__ = [
    "ENCODERS",
    "TEXT_ENCODERS",
    "BasicBlock",
    "Bottleneck",
    "CaptionTokenizer",
    "ConvNet",
    "LockedSentenceEncoder",
    "MMCRNetwork",
    "MomentumEncoder",
    "ResNet",
    "TextTransformer",
    "build_encoder",
    "build_projector",
    "build_text_encoder",
    "convert_sync_batchnorm",
    "cosine_tau",
    "resnet18",
    "resnet50",
    "to_channels_last",
]
