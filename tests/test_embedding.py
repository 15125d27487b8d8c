"""mmcr embed: features of one's own images (an image folder or a flat folder) from a trained encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from mmcr.data import load_dataset
from mmcr.embedding import embed_images, find_images, read_images
from mmcr.export import export_encoder, load_encoder


def run_cli(argv: list[str]) -> int:
    """``mmcr ARGV`` through the command line's entry point."""
    from mmcr.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


def _write_image(path: Path, seed: int, size: tuple[int, int], mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """root/<class>/*: two classes of mixed sizes and modes, a nested folder, hidden files to skip."""
    root = tmp_path / "tree"
    _write_image(root / "cat" / "b.png", 1, (12, 10))
    _write_image(root / "cat" / "a.jpg", 2, (8, 8), "L")
    _write_image(root / "cat" / "more" / "c.png", 3, (9, 16), "RGBA")
    _write_image(root / "dog" / "d.png", 4, (20, 20))
    _write_image(root / "dog" / "e.bmp", 5, (7, 11))
    (root / "dog" / "._d.png").write_bytes(b"not an image")  # macOS resource fork
    _write_image(root / "dog" / ".thumbs" / "x.png", 6, (4, 4))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_find_images_reads_class_folders_like_the_imagefolder_reader(tree: Path) -> None:
    images = find_images(tree)
    rel = [p.relative_to(tree).as_posix() for p in images.files]
    assert rel == ["cat/a.jpg", "cat/b.png", "cat/more/c.png", "dog/d.png", "dog/e.bmp"]
    assert images.labels == [0, 0, 0, 1, 1] and images.classes == ["cat", "dog"]
    assert images.layout == "imagefolder"
    # the same pixels and labels as the imagefolder reader gives for the tree (RGB, at its size)
    (tree / "dog" / "._d.png").unlink()
    (tree / "dog" / ".thumbs" / "x.png").unlink()
    reader = load_dataset("imagefolder", "train", tree, image_size=16)
    assert torch.equal(read_images(images.files, 3, 16), reader.images)
    assert reader.labels.tolist() == images.labels and reader.classes == images.classes
    gray = read_images(images.files, 1, 6)
    assert gray.shape == (5, 1, 6, 6) and gray.dtype == torch.uint8


def test_find_images_flat_folder_and_refusals(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for i, name in enumerate(["z.png", "a.png", "m.jpg"]):
        _write_image(flat / name, i, (8, 8))
    images = find_images(flat)
    assert [p.name for p in images.files] == ["a.png", "m.jpg", "z.png"]
    assert images.labels == [-1, -1, -1] and images.classes == [] and images.layout == "flat"

    _write_image(flat / "sub" / "x.png", 9, (8, 8))
    with pytest.raises(ValueError, match="both directly and in sub-folders"):
        find_images(flat)
    splits = tmp_path / "splits"
    _write_image(splits / "train" / "cat" / "x.png", 1, (8, 8))
    _write_image(splits / "test" / "cat" / "y.png", 2, (8, 8))
    with pytest.raises(ValueError, match="split folders"):
        find_images(splits)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        find_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "nowhere")


def test_embed_npy_writes_features_labels_files_and_projections(
    checkpoint: Path, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "feats.npy"
    argv = ["embed", str(checkpoint), "--data-dir", str(tree), "--out", str(out)]
    assert run_cli([*argv, "--projections", "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
    features = np.load(out)
    projections = np.load(tmp_path / "out" / "feats.projections.npy")
    labels = np.load(tmp_path / "out" / "feats.labels.npy")
    files = (tmp_path / "out" / "feats.files.txt").read_text().splitlines()
    manifest = json.loads((tmp_path / "out" / "feats.json").read_text())
    assert features.shape == (5, 32) and features.dtype == np.float32
    assert projections.shape == (5, 8) and projections.dtype == np.float32
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1]
    assert files == ["cat/a.jpg", "cat/b.png", "cat/more/c.png", "dog/d.png", "dog/e.bmp"]
    assert manifest["classes"] == ["cat", "dog"] and manifest["count"] == 5
    assert manifest["layout"] == "imagefolder" and manifest["shapes"]["features"] == [5, 32]

    # what the encoder gives for the same files in one batch: grayscale at the training images' side
    encoder = load_encoder(checkpoint)
    images = read_images([tree / f for f in files], channels=1, size=8)
    with torch.no_grad():
        expected = encoder(encoder.preprocess(images))
        np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(projections, encoder.project(expected).numpy(), rtol=1e-5, atol=1e-5)


def test_embed_safetensors_holds_everything_in_one_file(checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    npy = embed_images(checkpoint, tree, tmp_path / "a.npy", progress=False, device="cpu")
    out = tmp_path / "a.safetensors"
    assert embed_images(checkpoint, tree, out, projections=True, progress=True, device="cpu") == [out]
    with safe_open(str(out), framework="np") as handle:
        assert set(handle.keys()) == {"features", "labels", "projections"}
        np.testing.assert_array_equal(handle.get_tensor("features"), np.load(npy[0]))
        assert handle.get_tensor("labels").tolist() == [0, 0, 0, 1, 1]
        metadata = handle.metadata()
    assert json.loads(metadata["files"])[0] == "cat/a.jpg"
    assert json.loads(metadata["classes"]) == ["cat", "dog"]
    assert json.loads(metadata["manifest"])["architecture"]["encoder"] == "convnet"


def test_embed_with_an_export_and_a_flat_folder(checkpoint: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for i in range(3):
        _write_image(flat / f"{i}.png", i, (10, 10))
    weights, _ = export_encoder(checkpoint, tmp_path / "encoder.safetensors")
    from_export = embed_images(weights, flat, tmp_path / "e.npy", progress=False, device="cpu")
    from_checkpoint = embed_images(checkpoint, flat, tmp_path / "c.npy", progress=False, device="cpu")
    np.testing.assert_array_equal(np.load(from_export[0]), np.load(from_checkpoint[0]))
    assert np.load(tmp_path / "e.labels.npy").tolist() == [-1, -1, -1]
    assert json.loads((tmp_path / "e.json").read_text())["classes"] == []
    with pytest.raises(ValueError, match="holds no projector"):
        embed_images(weights, flat, tmp_path / "p.npy", projections=True, progress=False)


def test_embed_refuses_before_any_work(checkpoint: Path, tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.npy or \.safetensors"):
        embed_images(checkpoint, tree, tmp_path / "feats.csv")
    with pytest.raises(ValueError, match="batch_size"):
        embed_images(checkpoint, tree, tmp_path / "feats.npy", batch_size=0)
    (tree / "cat" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="cannot read image"):
        embed_images(checkpoint, tree, tmp_path / "feats.npy", progress=False)
    assert not (tmp_path / "feats.npy").exists()
