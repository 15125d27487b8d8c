"""Decoding files for the streaming path: modes, EXIF orientation, draft decoding, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmcr.data.stream import BadImageError, decode_crops, decode_square


def whole(height: int, width: int) -> torch.Tensor:
    return torch.tensor([[0, 0, height, width]])


def test_grey_rgba_and_palette_images_decode_to_rgb(tmp_path: Path) -> None:
    grey = Image.fromarray(np.full((20, 30), 90, dtype=np.uint8), "L")
    rgba = Image.fromarray(np.dstack([np.full((20, 30, 3), 40, np.uint8), np.full((20, 30), 255, np.uint8)]))
    palette = Image.new("P", (30, 20), 1)
    palette.putpalette([0, 0, 0, 200, 10, 50] + [0] * 762)
    palette.info["transparency"] = 0  # index 0 is transparent, the pixels use index 1
    for name, img in (("g.png", grey), ("a.png", rgba), ("p.png", palette)):
        img.save(tmp_path / name)
    for name, value in (("g.png", 90), ("a.png", 40)):
        decoded = torch.from_numpy(decode_square(tmp_path / name, 10, 3))
        assert torch.equal(decoded, torch.full((3, 10, 10), value, dtype=torch.uint8)), name
    out = torch.from_numpy(decode_square(tmp_path / "p.png", 10, 3))
    assert torch.equal(out, torch.tensor([200, 10, 50], dtype=torch.uint8)[:, None, None].expand(3, 10, 10))
    assert decode_square(tmp_path / "a.png", 10, 1).shape == (1, 10, 10)


def test_exif_orientation_is_applied_before_the_crop(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white as stored
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees clockwise: 40 high, 20 wide, white on top
    img.save(tmp_path / "r.png", exif=exif.tobytes())
    seen: list[tuple[int, int]] = []

    def boxes(height: int, width: int) -> torch.Tensor:
        seen.append((height, width))
        return torch.tensor([[0, 0, 20, 20], [20, 0, 20, 20]])  # top square, bottom square

    top, bottom = decode_crops(tmp_path / "r.png", 8, 3, boxes)
    assert seen == [(40, 20)]
    assert float(top.mean()) > 240 and float(bottom.mean()) < 15  # edges blend a little


def test_draft_decoding_matches_a_full_decode_closely(tmp_path: Path) -> None:
    y, x = np.mgrid[0:480, 0:400]
    pixels = np.stack([(x * 255 // 400), (y * 255 // 480), ((x + y) % 256)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    box = lambda h, w: torch.tensor([[40, 30, 400, 360]])  # noqa: E731
    fast = decode_crops(tmp_path / "big.jpg", 64, 3, box).astype(np.float64)
    full = decode_crops(tmp_path / "big.jpg", 64, 3, box, draft=False).astype(np.float64)
    assert np.abs(fast - full).mean() < 3.0
    assert not np.array_equal(fast, full)  # the reduced decode really ran


def test_bad_files_raise_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes()[:200])
    for name in ("zero.jpg", "junk.jpg", "cut.jpg"):
        with pytest.raises(BadImageError, match=rf"cannot decode image .*{name}.*skip_bad_images"):
            decode_crops(tmp_path / name, 8, 3, whole)


def fake_simplejpeg() -> object:
    """A stand-in for the optional simplejpeg (decode_jpeg via Pillow): the test runs without it."""
    import io
    import types

    def decode_jpeg(data: bytes, colorspace: str, min_width: int = 0, min_height: int = 0) -> np.ndarray:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB" if colorspace == "RGB" else "L", (min_width, min_height))
        pixels = np.asarray(img.convert("RGB" if colorspace == "RGB" else "L"))
        return pixels if pixels.ndim == 3 else pixels[..., None]

    return types.SimpleNamespace(decode_jpeg=decode_jpeg)


def test_the_simplejpeg_path_orients_and_scales_like_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from mmcr.data.stream.decode import jpeg_decoder

    monkeypatch.setitem(sys.modules, "simplejpeg", fake_simplejpeg())
    assert jpeg_decoder() == "simplejpeg"
    y, x = np.mgrid[0:300, 0:500]
    pixels = np.stack([x * 255 // 500, y * 255 // 300, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    for orientation in (1, 6, 3):
        exif[0x0112] = orientation
        img.save(tmp_path / "o.jpg", quality=95, exif=exif.tobytes())
        box = lambda h, w: torch.tensor([[10, 20, h - 30, w - 40], [0, 0, 60, 50]])  # noqa: E731
        fast = decode_crops(tmp_path / "o.jpg", 32, 3, box, decoder="simplejpeg").astype(np.float64)
        plain = decode_crops(tmp_path / "o.jpg", 32, 3, box, decoder="pillow").astype(np.float64)
        assert np.abs(fast - plain).max() <= 2.0, orientation
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # not installed
    assert jpeg_decoder() == "pillow"
