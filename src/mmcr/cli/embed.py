"""The ``mmcr embed`` subcommand: features of your own images from a trained encoder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
Embed the images of a folder with a trained encoder: a checkpoint (OUT/last.pt) or an
export (mmcr export). DIR is an image folder DIR/<class>/*.png|jpg (label = the class
folder's index in sorted order) or a flat folder DIR/*.png|jpg (label -1). Each image is
read like the imagefolder reader reads it (RGB, or grayscale for a one-channel encoder;
centre square; resized to the side of the training images), then given the evaluation
view of the recipe (resize to the crop size, /255, normalise) and the backbone.

Outputs, by the suffix of FILE:
  FILE.npy          features (N, feature_dim) float32; beside it FILE.labels.npy (int64),
                    FILE.files.txt (paths relative to DIR, one a line, in row order),
                    FILE.projections.npy (with --projections) and FILE.json (what was embedded)
  FILE.safetensors  tensors features, labels (and projections); header metadata "files"
                    and "classes" (JSON lists) and "manifest" (the JSON above)
"""


def register(subparsers: Any) -> None:
    """Add ``embed`` to argparse subparsers; it sets ``func``, a callable(args) -> exit code."""
    p = subparsers.add_parser(
        "embed",
        help="features (and projections) of your own images: an image folder or a flat folder",
        description=_DESCRIPTION,
        epilog=(
            "examples:\n  mmcr embed runs/fmnist/last.pt --data-dir my_images --out feats.npy\n"
            "  mmcr embed encoder.safetensors --data-dir photos --out photos.safetensors"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", type=Path, help="OUT/last.pt, or an exported .safetensors")
    p.add_argument("--data-dir", required=True, type=Path, metavar="DIR", help="the folder of images")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="FILE.npy or FILE.safetensors")
    p.add_argument(
        "--projections", action="store_true", help="also the projector outputs (a checkpoint, not an export)"
    )
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per batch (default: 256)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    from mmcr.embedding import embed_images

    written = embed_images(
        args.checkpoint,
        args.data_dir,
        args.out,
        projections=args.projections,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
