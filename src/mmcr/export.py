"""The trained encoder in users' hands: exported alone in safetensors, and loaded back with its preprocessing.

:func:`export_encoder` writes the backbone of a checkpoint (``last.pt``) as
``encoder.safetensors`` and a JSON sidecar ``encoder.json`` beside it: the architecture,
the input the network expects (channels, image size, crop size, normalisation) and the
recipe that trained it. The sidecar is also stored in the safetensors header (metadata
key ``"mmcr_encoder"``), so the weights file alone is enough to load it here.

Key names. The ResNets are exported under torchvision's names, so that
``torchvision.models.resnet18()`` / ``resnet50()`` (or timm's ``resnet18`` /
``resnet50``, which use the same names) load the file with ``strict=True`` once the head
is removed (``model.fc = nn.Identity()``; for the CIFAR stem also ``model.conv1 =
nn.Conv2d(3, 64, 3, 1, 1, bias=False)``; without the stem max-pool ``model.maxpool =
nn.Identity()``; the sidecar lists the changes a file needs under
``torchvision.changes``). The mapping is one rename: this package calls a block's
projection shortcut ``shortcut`` and torchvision calls it ``downsample``::

    layerS.B.shortcut.0.weight  ->  layerS.B.downsample.0.weight      (1x1 conv)
    layerS.B.shortcut.1.*       ->  layerS.B.downsample.1.*           (its BatchNorm)

every other name (``conv1``, ``bn1``, ``layerS.B.conv1`` ... ``bn3``, BatchNorm's
``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``) is the
same in both, and so is the forward pass (stride on the 3x3 convolution of a bottleneck,
as torchvision's ResNet v1.5). Shapes are torchvision's at ``width = 64`` and 3 input
channels; other widths keep the names but not the shapes (``torchvision.compatible`` is
then false). The ConvNet has no torchvision counterpart: it is exported under its own
names (``key_names = "mmcr"`` in the sidecar).

>>> from mmcr.export import export_encoder, load_encoder
>>> export_encoder("runs/fmnist/last.pt", "encoder.safetensors")   # doctest: +SKIP
>>> encoder = load_encoder("encoder.safetensors")                  # doctest: +SKIP
>>> features = encoder(encoder.preprocess(images))                 # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmcr.build import Checkpoint, augment_config, load_network, load_weights
from mmcr.data import AugmentConfig, dataset_info, plain_view
from mmcr.data.readers.imagefolder import DEFAULT_SIZE as IMAGEFOLDER_SIZE
from mmcr.models import ResNet, build_encoder
from mmcr.records import write_atomic, write_json

FORMAT = "mmcr-encoder"
FORMAT_VERSION = 1
METADATA_KEY = "mmcr_encoder"

# this package's name of a ResNet block's projection shortcut, and torchvision's
_OURS, _TORCHVISION = ".shortcut.", ".downsample."


def to_torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ResNet state dict of this package under torchvision's key names."""
    return {key.replace(_OURS, _TORCHVISION): value for key, value in state.items()}


def from_torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_torchvision_names`."""
    return {key.replace(_TORCHVISION, _OURS): value for key, value in state.items()}


def encoder_state(encoder: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """The encoder's weights and buffers as contiguous CPU tensors, and their naming
    (``"torchvision"`` for a ResNet, ``"mmcr"`` otherwise)."""
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if isinstance(encoder, ResNet):
        return to_torchvision_names(state), "torchvision"
    return state, "mmcr"


def _torchvision_section(name: str, kwargs: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """How torchvision's ResNet takes the exported weights: its constructor and the changes."""
    cifar = name.endswith("_cifar")
    maxpool = kwargs.get("maxpool")
    maxpool = (not cifar) if maxpool is None else bool(maxpool)
    width = int(kwargs.get("width", 64))
    changes = ["model.fc = torch.nn.Identity()"]
    if cifar:
        changes.append(f"model.conv1 = torch.nn.Conv2d({in_channels}, 64, 3, 1, 1, bias=False)")
    elif in_channels != 3:
        changes.append(f"model.conv1 = torch.nn.Conv2d({in_channels}, 64, 7, 2, 3, bias=False)")
    if not maxpool:
        changes.append("model.maxpool = torch.nn.Identity()")
    section: dict[str, Any] = {
        "constructor": f"torchvision.models.{name.removesuffix('_cifar')}()",
        "changes": changes,
        "compatible": width == 64,
    }
    if width != 64:
        section["note"] = (
            f"width {width}: the key names are torchvision's but the shapes are not (torchvision's "
            "ResNets have width 64); load with mmcr.load_encoder"
        )
    return section


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmcr")
    except PackageNotFoundError:
        return None


def encoder_info(encoder: nn.Module, checkpoint: Checkpoint, source: str | Path) -> dict[str, Any]:
    """The sidecar of an export: architecture, input, key names, the recipe that trained it."""
    cfg = checkpoint.recipe()
    view = augment_config(cfg)
    kwargs = cfg.encoder_kwargs()
    # the side of the training images as stored (an image folder without image_size: its reader's default)
    stored_size = cfg.image_size or dataset_info(cfg.dataset).image_size or IMAGEFOLDER_SIZE
    _, key_names = encoder_state(encoder)
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmcr_version": _version(),
        "architecture": {
            "encoder": cfg.encoder,
            "kwargs": kwargs,
            "in_channels": int(checkpoint.in_channels),
            "feature_dim": int(encoder.feature_dim),  # type: ignore[arg-type]
        },
        "key_names": key_names,
        "input": {
            "channels": int(checkpoint.in_channels),
            "image_size": int(stored_size),
            "crop_size": int(view.crop_size),
            "mean": list(view.mean) if view.mean is not None else None,
            "std": list(view.std) if view.std is not None else None,
            "preprocess": (
                "uint8 (N, C, H, W) / 255; the whole image resized to crop_size x crop_size "
                "(bilinear, antialiased); then (x - mean) / std per channel"
            ),
            "image_files": (
                "converted to RGB (3 channels) or L (1), centre square cropped, resized to "
                "image_size (bilinear), then preprocessed"
            ),
        },
        "recipe": cfg.to_dict(),
        "step": int(checkpoint.step),
        "source": str(source),
    }
    if key_names == "torchvision":
        info["torchvision"] = _torchvision_section(cfg.encoder, kwargs, int(checkpoint.in_channels))
    return info


def sidecar_path(weights: str | Path) -> Path:
    """``encoder.safetensors`` -> ``encoder.json``."""
    return Path(weights).with_suffix(".json")


def export_encoder(checkpoint: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Write the backbone of ``checkpoint`` to ``out`` (safetensors) and its sidecar; returns both paths."""
    from safetensors.torch import save as save_safetensors

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the export is a .safetensors file, got --out {out}")
    network, ckpt = load_network(checkpoint)
    state, _ = encoder_state(network.encoder)
    info = encoder_info(network.encoder, ckpt, checkpoint)
    info["weights"] = out.name
    payload = save_safetensors(state, metadata={"format": "pt", METADATA_KEY: json.dumps(info)})
    write_atomic(out, lambda handle: handle.write(payload))
    sidecar = write_json(sidecar_path(out), info)
    return out, sidecar


class PretrainedEncoder(nn.Module):
    """A trained backbone with the preprocessing it was trained with (from :func:`load_encoder`).

    ``forward(x)`` maps preprocessed float images ``(N, C, crop, crop)`` to features
    ``(N, feature_dim)``; :meth:`preprocess` turns uint8 ``(N, C, H, W)`` images (any H, W)
    into that input with :func:`~mmcr.data.plain_view`, the view ``mmcr eval`` scores.
    :meth:`project` applies the projector, which only a checkpoint holds (``None`` for an
    export). ``info`` is the sidecar (architecture, input, recipe).
    """

    def __init__(
        self, backbone: nn.Module, view: AugmentConfig, info: dict[str, Any], projector: nn.Module | None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.view = view
        self.info = info
        self.channels = int(info["input"]["channels"])
        self.image_size = int(info["input"]["image_size"])
        self.crop_size = int(view.crop_size)
        self.feature_dim = int(info["architecture"]["feature_dim"])

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` (or float in [0, 1]) -> float32 ``(N, C, crop, crop)``, normalised."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"the encoder takes images of shape (N, {self.channels}, H, W), got {tuple(images.shape)}"
            )
        device = next(self.backbone.parameters()).device
        return plain_view(images.to(device), self.view)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(N, feature_dim)`` of preprocessed images ``(N, C, crop, crop)``."""
        return self.backbone(x)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Projector outputs ``(N, D)`` of features ``(N, feature_dim)``."""
        if self.projector is None:
            raise ValueError(
                "this encoder has no projector: an export holds the backbone alone; load the "
                "checkpoint (last.pt) for projector outputs"
            )
        return self.projector(features)


def _view_of(info: dict[str, Any]) -> AugmentConfig:
    spec = info["input"]
    mean, std = spec.get("mean"), spec.get("std")
    return AugmentConfig(
        crop_size=int(spec["crop_size"]),
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
    )


def _read_info(weights: Path) -> dict[str, Any]:
    """The sidecar beside ``weights``, else the copy in its safetensors header."""
    sidecar = sidecar_path(weights)
    if sidecar.is_file():
        info: dict[str, Any] = json.loads(sidecar.read_text())
    else:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if METADATA_KEY not in metadata:
            raise ValueError(
                f"{weights} is not an mmcr encoder export: no sidecar {sidecar.name} beside it and "
                f"no {METADATA_KEY!r} entry in its header"
            )
        info = json.loads(metadata[METADATA_KEY])
    if info.get("format") != FORMAT:
        raise ValueError(f"{sidecar} is not an mmcr encoder sidecar (format {info.get('format')!r})")
    return info


def _load_export(weights: Path) -> PretrainedEncoder:
    from safetensors.torch import load_file

    info = _read_info(weights)
    arch = info["architecture"]
    backbone = build_encoder(arch["encoder"], in_channels=int(arch["in_channels"]), **arch["kwargs"])
    state = load_file(str(weights))
    if info.get("key_names") == "torchvision":
        state = from_torchvision_names(state)
    load_weights(backbone, state, weights, target="the encoder its sidecar describes")
    return PretrainedEncoder(backbone, _view_of(info), info, projector=None)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> PretrainedEncoder:
    """The trained encoder of a checkpoint (``last.pt``) or an export (``.safetensors`` or its ``.json``),
    in eval mode, with its preprocessing.

    >>> encoder = load_encoder("runs/fmnist/last.pt")          # doctest: +SKIP
    >>> features = encoder(encoder.preprocess(images))          # uint8 (N, C, H, W) -> (N, feature_dim)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or encoder export at {path}")
    if path.suffix == ".json":
        weights = json.loads(path.read_text()).get("weights") or path.with_suffix(".safetensors").name
        path = path.with_name(weights)
    if path.suffix == ".safetensors":
        encoder = _load_export(path)
    else:
        network, checkpoint = load_network(path)
        info = encoder_info(network.encoder, checkpoint, path)
        view = augment_config(checkpoint.recipe())
        encoder = PretrainedEncoder(network.encoder, view, info, network.projector)
    return encoder.to(device).eval()
