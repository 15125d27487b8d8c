"""The ``mmcr embed`` job: features of a user's own images, in batches, written to disk.

The images are an image folder ``DIR/<class>/*.png|jpg`` (labels: the class folder's index
in sorted order, the same as the ``imagefolder`` reader's) or a flat folder ``DIR/*.png|jpg``
(labels -1). Each file is read as the ``imagefolder`` reader reads one (converted to RGB,
or to L for a one-channel encoder; centre square; bilinear resize to the side of the
training images), then goes through the encoder's preprocessing (:func:`~mmcr.data.plain_view`)
and the backbone, and with ``projections`` also the projector.

Outputs, by the suffix of ``out``:

- ``FILE.npy``: the features ``(N, feature_dim)`` float32 in ``FILE.npy``; beside it
  ``FILE.labels.npy`` (int64 ``(N,)``), ``FILE.files.txt`` (one path per line, relative
  to DIR, in row order), ``FILE.projections.npy`` (float32 ``(N, D)``, with
  ``projections``) and ``FILE.json`` (what was embedded: the model, the folder, the
  classes, the shapes).
- ``FILE.safetensors``: one file with the tensors ``features``, ``labels`` (and
  ``projections``); its header's metadata holds ``files`` and ``classes`` (JSON lists) and
  ``manifest`` (the JSON of ``FILE.json`` above).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcr.build import resolve_device
from mmcr.data.readers.imagefolder import IMAGE_EXTENSIONS, SPLIT_FOLDER_NAMES, read_image
from mmcr.export import PretrainedEncoder, load_encoder
from mmcr.records import write_atomic, write_json, write_text

OUTPUT_SUFFIXES = (".npy", ".safetensors")


@dataclass
class ImageFiles:
    """The images of a folder, in the order they are embedded.

    Attributes:
        root: the folder.
        files: image paths, sorted by class folder, then by path.
        labels: the class index of each file, -1 for a flat folder.
        classes: class names in label order (empty for a flat folder).
    """

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]

    @property
    def layout(self) -> str:
        return "imagefolder" if self.classes else "flat"


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_in(folder: Path, root: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and _visible(p, root) and p.is_file()
    )


def find_images(root: str | Path) -> ImageFiles:
    """The image files under ``root``: ``root/<class>/**`` or, failing class folders, ``root/*``.

    Hidden files and folders (a leading dot) are skipped. A folder with both images and
    class folders, or only split folders (``train``, ``test``, ...), is refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist; expected DIR/<class>/*.png|jpg or DIR/*.png|jpg"
        )
    direct = _images_in(root, root, recursive=False)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root))
    per_class = [_images_in(d, root, recursive=True) for d in class_dirs]
    if direct and any(per_class):
        raise ValueError(
            f"{root} holds images both directly and in sub-folders: use DIR/<class>/*.png|jpg "
            "(labelled) or DIR/*.png|jpg (unlabelled), not both"
        )
    if direct:
        return ImageFiles(root, direct, [-1] * len(direct), [])
    names = [d.name for d in class_dirs]
    if names and all(n.lower() in SPLIT_FOLDER_NAMES for n in names):
        raise ValueError(
            f"{root} holds split folders ({', '.join(names)}), not class folders: point --data-dir "
            f"at one split, e.g. {root / names[0]}"
        )
    files = [f for found in per_class for f in found]
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {root} or its class folders"
        )
    labels = [label for label, found in enumerate(per_class) for _ in found]
    return ImageFiles(root, files, labels, names)


def read_images(paths: list[Path], channels: int, size: int) -> torch.Tensor:
    """uint8 ``(len(paths), channels, size, size)``."""
    return torch.from_numpy(np.stack([read_image(p, size, channels) for p in paths]))


@torch.no_grad()
def embed_files(
    encoder: PretrainedEncoder,
    images: ImageFiles,
    *,
    projections: bool = False,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{"features": (N, feature_dim)}`` float32 (and ``"projections": (N, D)``) of the files."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images.files)
    features = np.empty((n, encoder.feature_dim), dtype=np.float32)
    projected: np.ndarray | None = None
    with tqdm(total=n, desc="embed", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, n, batch_size):
            paths = images.files[start : start + batch_size]
            batch = read_images(paths, encoder.channels, encoder.image_size)
            f = encoder(encoder.preprocess(batch))
            features[start : start + len(batch)] = f.float().cpu().numpy()
            if projections:
                z = encoder.project(f).float().cpu().numpy()
                if projected is None:
                    projected = np.empty((n, z.shape[1]), dtype=np.float32)
                projected[start : start + len(batch)] = z
            bar.update(len(batch))
    out = {"features": features}
    if projected is not None:
        out["projections"] = projected
    return out


def _beside(out: Path, suffix: str) -> Path:
    """``feats.npy`` -> ``feats<suffix>`` (e.g. ``feats.labels.npy``)."""
    return out.with_name(out.stem + suffix)


def _write_npy(path: Path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda handle: np.save(handle, array))


def write_embeddings(
    out: Path, arrays: dict[str, np.ndarray], images: ImageFiles, manifest: dict[str, Any]
) -> list[Path]:
    """Write ``arrays``, the labels and the file list as described in the module docstring."""
    labels = np.asarray(images.labels, dtype=np.int64)
    files = [p.relative_to(images.root).as_posix() for p in images.files]
    if out.suffix == ".safetensors":
        from safetensors.torch import save as save_safetensors

        tensors = {name: torch.from_numpy(a) for name, a in arrays.items()}
        tensors["labels"] = torch.from_numpy(labels)
        metadata = {
            "files": json.dumps(files),
            "classes": json.dumps(images.classes),
            "manifest": json.dumps(manifest),
        }
        payload = save_safetensors(tensors, metadata=metadata)
        return [write_atomic(out, lambda handle: handle.write(payload))]
    written = [
        _write_npy(out if name == "features" else _beside(out, f".{name}.npy"), array)
        for name, array in {**arrays, "labels": labels}.items()
    ]
    written.append(write_text(_beside(out, ".files.txt"), "".join(f + "\n" for f in files)))
    written.append(write_json(_beside(out, ".json"), manifest))
    return written


def embed_images(
    checkpoint: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    projections: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = True,
) -> list[Path]:
    """Embed the images of ``data_dir`` with the encoder of ``checkpoint`` (``last.pt`` or an export)
    and write them to ``out`` (``.npy`` or ``.safetensors``); returns the files written."""
    out = Path(out)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--out must end in {' or '.join(OUTPUT_SUFFIXES)}, got {out}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder = load_encoder(checkpoint, resolve_device(device))
    if projections and encoder.projector is None:
        raise ValueError(
            f"{checkpoint} is an encoder export, which holds no projector: embed with the checkpoint "
            "(last.pt) for --projections"
        )
    images = find_images(data_dir)
    arrays = embed_files(encoder, images, projections=projections, batch_size=batch_size, progress=progress)
    manifest = {
        "checkpoint": str(checkpoint),
        "data_dir": str(data_dir),
        "layout": images.layout,
        "count": len(images.files),
        "classes": images.classes,
        "shapes": {name: list(a.shape) for name, a in arrays.items()},
        "architecture": encoder.info["architecture"],
        "input": encoder.info["input"],
        "step": encoder.info.get("step"),
    }
    return write_embeddings(out, arrays, images, manifest)
