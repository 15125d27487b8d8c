"""The ``mmcr export`` subcommand: a checkpoint's encoder alone, in safetensors, with a JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Write the backbone of a checkpoint alone (no projector, no optimiser state) as a
safetensors file, and a JSON sidecar beside it (encoder.safetensors -> encoder.json):
the architecture, the input the network expects (channels, image size, crop size,
mean/std), and the recipe that trained it. The sidecar is also stored in the file's
header, so the weights file alone loads with mmcr.load_encoder.

ResNets are written under torchvision's key names and load into torchvision's ResNet
(or timm's) with strict=True after the changes the sidecar lists under
"torchvision.changes", e.g. for a CIFAR-stem ResNet-18:

  import torch, torchvision
  from safetensors.torch import load_file
  model = torchvision.models.resnet18()
  model.fc = torch.nn.Identity()
  model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  model.maxpool = torch.nn.Identity()
  model.load_state_dict(load_file("encoder.safetensors"), strict=True)

The ConvNet has no torchvision counterpart: it keeps this package's key names
(key_names = "mmcr" in the sidecar); load it with mmcr.load_encoder.
"""


def register(subparsers: Any) -> None:
    """Add ``export`` to argparse subparsers; it sets ``func``, a callable(args) -> exit code."""
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint's encoder alone: safetensors + JSON sidecar (torchvision names for ResNets)",
        description=_DESCRIPTION,
        epilog=(
            "examples:\n  mmcr export runs/fmnist/last.pt\n"
            "  mmcr export runs/cifar/last.pt --out encoders/cifar_resnet18.safetensors"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", type=Path, help="a checkpoint written by mmcr pretrain")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="the .safetensors file to write (default: encoder.safetensors beside CKPT)",
    )
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import json

    from mmcr.export import export_encoder

    out = args.out if args.out is not None else args.checkpoint.with_name("encoder.safetensors")
    weights, sidecar = export_encoder(args.checkpoint, out)
    info = json.loads(sidecar.read_text())
    print(f"encoder: {weights}\nsidecar: {sidecar}")
    torchvision = info.get("torchvision")
    if torchvision is not None:
        if torchvision["compatible"]:
            print(f"torchvision: model = {torchvision['constructor']}; " + "; ".join(torchvision["changes"]))
        else:
            print(f"torchvision: {torchvision['note']}")
    return 0
