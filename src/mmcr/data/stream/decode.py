"""Decoding image files for the streaming path: K random-resized crops, or the centre square.

Both read the file once with Pillow. A JPEG is decoded at a reduced size (Pillow's draft
mode: 1/2, 1/4 or 1/8 of each side, done inside libjpeg) whenever every crop still has at
least ``size`` pixels a side at that scale, which is most crops of an ImageNet-sized photo
for 224 px views; simplejpeg decodes JPEGs instead of Pillow where it is installed
(:func:`jpeg_decoder`). EXIF orientation is applied; grey, palette (also with transparency),
RGBA and CMYK images are converted to the requested channels. An unreadable file raises
:class:`BadImageError` naming it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["BadImageError", "Source", "decode_crops", "decode_square", "jpeg_decoder", "oriented_size"]

_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})


class BadImageError(ValueError):
    """A file that is not a readable image (corrupt, truncated, empty or of unknown format)."""


#: What is decoded: an image file's path, or the bytes of an image (a shard's member).
Source = Path | bytes


def _open(source: Source, path: Path | str) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        return PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise BadImageError(_message(path, err)) from None


def _message(path: Path | str, err: BaseException) -> str:
    return (
        f"cannot decode image {path}: {err}; replace or delete the file, or set "
        "skip_bad_images = true to skip unreadable files"
    )


def oriented_size(img: Image) -> tuple[int, int, int]:
    """``(height, width, orientation)`` of an opened image as displayed (EXIF orientation applied)."""
    width, height = img.size
    if "exif" not in img.info:  # parsing an absent block still costs a quarter of a millisecond
        return height, width, 1
    try:
        orientation = int(img.getexif().get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: show the pixels as stored
        orientation = 1
    if orientation in _SWAPS_AXES:
        return width, height, orientation
    return height, width, orientation


def _finish(img: Image, orientation: int, channels: int, path: Path | str) -> Image:
    """Load the pixels, apply the orientation and convert to RGB or L."""
    from PIL import ImageOps

    try:
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        target = "RGB" if channels == 3 else "L"
        if img.mode != target:
            img = img.convert(target)
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(_message(path, err)) from None
    return img


def _draft(img: Image, channels: int, request: tuple[int, int]) -> None:
    """Ask a JPEG to decode at the smallest scale of at least ``request`` (width, height)."""
    if getattr(img, "format", None) == "JPEG":
        img.draft("RGB" if channels == 3 else "L", request)


_TRANSPOSE = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}  # EXIF orientation -> Image.Transpose


def jpeg_decoder() -> str:
    """The JPEG decoder of the streaming path: ``simplejpeg`` where installed, else ``pillow``.

    simplejpeg (libjpeg-turbo through a thinner binding) decoded the benchmark's JPEGs
    about three times faster than Pillow here, with the same pixels on the benchmark's
    JPEGs; other builds of the two may round differently, so runs compared bit for bit
    should use the same one.
    """
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return "pillow"
    return "simplejpeg"


def _simplejpeg(
    source: Source, path: Path | str, channels: int, request: tuple[int, int], orientation: int
) -> Image:
    """Decode with simplejpeg at the smallest DCT scale of at least ``request``, oriented."""
    import simplejpeg
    from PIL import Image as PILImage

    try:
        data = source if isinstance(source, bytes) else source.read_bytes()
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB" if channels == 3 else "GRAY",
            min_width=request[0], min_height=request[1],
        )
    except (OSError, ValueError) as err:
        raise BadImageError(_message(path, err)) from None
    img = PILImage.fromarray(pixels[..., 0] if channels == 1 else pixels)
    if orientation in _TRANSPOSE:
        img = img.transpose(PILImage.Transpose(_TRANSPOSE[orientation]))
    return img


def _to_chw(img: Image) -> np.ndarray:
    pixels = np.asarray(img, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def decode_crops(
    path: Source,
    size: int,
    channels: int,
    draw_boxes: Callable[[int, int], np.ndarray | torch.Tensor],
    *,
    draft: bool = True,
    decoder: str | None = None,
    name: str | None = None,
) -> np.ndarray:
    """The crops of one image file, each resized to ``size`` (bilinear, antialiased).

    Args:
        path: the image file, or the bytes of an image (e.g. a member of a shard).
        size: output side length in pixels.
        channels: 3 (RGB) or 1 (grey).
        draw_boxes: ``draw_boxes(height, width)`` returns int64 ``(K, 4)`` boxes (top,
            left, height, width) in the pixels of the image as displayed.
        draft: decode a JPEG at reduced size where every box allows it.
        decoder: ``"pillow"`` or ``"simplejpeg"`` for RGB and grey JPEGs (default:
            :func:`jpeg_decoder`); other files always go through Pillow.
        name: how errors name the image (default: ``path``; give it for bytes).

    Returns:
        uint8 ``(K, channels, size, size)``.
    """
    from PIL.Image import Resampling

    label = name if name is not None else ("<image bytes>" if isinstance(path, bytes) else path)
    img = _open(path, label)
    with img:
        height, width, orientation = oriented_size(img)
        boxes = np.asarray(draw_boxes(height, width), dtype=np.int64)
        stored_w, stored_h = img.size
        request = (stored_w, stored_h)
        if draft:
            reduce = max(1.0, float(boxes[:, 2:].min()) / size)
            request = (math.ceil(stored_w / reduce), math.ceil(stored_h / reduce))
        fast = img.format == "JPEG" and img.mode in ("RGB", "L")
        if fast and (decoder or jpeg_decoder()) == "simplejpeg":
            shown = _simplejpeg(path, label, channels, request, orientation)
        else:
            if draft:
                _draft(img, channels, request)
            shown = _finish(img, orientation, channels, label)
        sx, sy = shown.size[0] / width, shown.size[1] / height
        out = np.empty((boxes.shape[0], channels, size, size), dtype=np.uint8)
        for k, (top, left, h, w) in enumerate(boxes.tolist()):
            box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
            crop = shown.resize((size, size), Resampling.BILINEAR, box=box)
            out[k] = _to_chw(crop)
    return out


def decode_square(
    path: Source,
    size: int,
    channels: int,
    *,
    draft: bool = True,
    decoder: str | None = None,
    name: str | None = None,
) -> np.ndarray:
    """The centre square of an image file resized to ``size``: uint8 ``(channels, size, size)``.

    The streaming counterpart of :func:`~mmcr.data.readers.imagefolder.read_image`
    (which decodes at full size; values differ by the reduced decode's rounding).
    """

    def centre(height: int, width: int) -> np.ndarray:
        side = min(height, width)
        return np.array([[(height - side) // 2, (width - side) // 2, side, side]])

    return decode_crops(path, size, channels, centre, draft=draft, decoder=decoder, name=name)[0]
