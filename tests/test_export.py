"""mmcr export and mmcr.load_encoder: the backbone alone in safetensors, torchvision's names for ResNets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mmcr.build import Checkpoint, augment_config, build_network, load_network
from mmcr.config import build_config
from mmcr.data import plain_view
from mmcr.export import export_encoder, load_encoder


def run_cli(argv: list[str]) -> int:
    """``mmcr ARGV`` through the command line's entry point."""
    from mmcr.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def digits_checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


# ----------------------------------------------------------------------------- torchvision's layout

RESNET_STAGES = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True)}


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def torchvision_resnet_layout(arch: str, stem_kernel: int) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of ``torchvision.models.<arch>()`` with ``fc = nn.Identity()``
    (and ``conv1`` a ``stem_kernel`` x ``stem_kernel`` convolution), written out from its layer layout."""
    blocks, bottleneck = RESNET_STAGES[arch]
    expansion = 4 if bottleneck else 1
    layout = {"conv1.weight": (64, 3, stem_kernel, stem_kernel), **_bn("bn1", 64)}
    inplanes = 64
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            block = f"layer{stage}.{index}"
            if bottleneck:
                layout[f"{block}.conv1.weight"] = (planes, inplanes, 1, 1)
                layout.update(_bn(f"{block}.bn1", planes))
                layout[f"{block}.conv2.weight"] = (planes, planes, 3, 3)
                layout.update(_bn(f"{block}.bn2", planes))
                layout[f"{block}.conv3.weight"] = (planes * 4, planes, 1, 1)
                layout.update(_bn(f"{block}.bn3", planes * 4))
            else:
                layout[f"{block}.conv1.weight"] = (planes, inplanes, 3, 3)
                layout.update(_bn(f"{block}.bn1", planes))
                layout[f"{block}.conv2.weight"] = (planes, planes, 3, 3)
                layout.update(_bn(f"{block}.bn2", planes))
            if stride != 1 or inplanes != planes * expansion:
                layout[f"{block}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                layout.update(_bn(f"{block}.downsample.1", planes * expansion))
            inplanes = planes * expansion
    return layout


def _randomise_batchnorm(network: nn.Module, seed: int) -> None:
    # non-trivial running statistics, so that a buffer put under the wrong name changes the output
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            module.weight.data.copy_(1.0 + 0.1 * torch.randn(shape, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(shape, generator=generator))


def _resnet_checkpoint(tmp_path: Path, encoder: str, **overrides: Any) -> Path:
    cfg = build_config(None, {"dataset": "cifar10", "encoder": encoder, "out": str(tmp_path), **overrides})
    network = build_network(cfg, 3)
    _randomise_batchnorm(network, seed=0)
    path = tmp_path / "last.pt"
    Checkpoint(config=cfg.to_dict(), model=network.state_dict(), step=7, in_channels=3).save(path)
    return path


@pytest.mark.parametrize(
    ("encoder", "arch", "stem_kernel", "changes"),
    [
        ("resnet18_cifar", "resnet18", 3, ["conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1", "maxpool = torch.nn"]),
        ("resnet18", "resnet18", 7, []),
        ("resnet50", "resnet50", 7, []),
    ],
)
def test_resnet_export_has_torchvision_names_and_shapes(
    tmp_path: Path, encoder: str, arch: str, stem_kernel: int, changes: list[str]
) -> None:
    weights, sidecar = export_encoder(_resnet_checkpoint(tmp_path, encoder), tmp_path / "encoder.safetensors")
    assert sidecar == tmp_path / "encoder.json"
    with safe_open(str(weights), framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    expected = torchvision_resnet_layout(arch, stem_kernel)
    assert set(shapes) == set(expected), set(shapes) ^ set(expected)
    assert shapes == expected
    info = json.loads(sidecar.read_text())
    assert info["key_names"] == "torchvision"
    assert info["torchvision"]["constructor"] == f"torchvision.models.{arch}()"
    assert info["torchvision"]["compatible"] is True
    listed = info["torchvision"]["changes"]
    assert listed[0] == "model.fc = torch.nn.Identity()"
    assert len(listed) == 1 + len(changes)
    for change in changes:
        assert any(change in line for line in listed), (change, listed)
    assert info["architecture"]["encoder"] == encoder and info["architecture"]["in_channels"] == 3
    assert info["input"]["channels"] == 3 and info["input"]["crop_size"] == 32
    assert info["input"]["mean"] is not None and len(info["input"]["mean"]) == 3
    assert info["recipe"]["encoder"] == encoder and info["step"] == 7


def test_resnet_export_loads_back_to_the_same_function(tmp_path: Path) -> None:
    # torchvision's names mapped back: the export computes what the checkpoint computes
    checkpoint = _resnet_checkpoint(tmp_path, "resnet18_cifar", encoder_width=8, maxpool=True)
    weights, sidecar = export_encoder(checkpoint, tmp_path / "encoder.safetensors")
    info = json.loads(sidecar.read_text())
    assert info["torchvision"]["compatible"] is False and "width 8" in info["torchvision"]["note"]
    assert not any("maxpool" in change for change in info["torchvision"]["changes"])
    assert any(".downsample.1.running_var" in key for key in load_file(str(weights)))
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    from_checkpoint, from_export = load_encoder(checkpoint), load_encoder(weights)
    expected = from_checkpoint(from_checkpoint.preprocess(images))
    torch.testing.assert_close(from_export(from_export.preprocess(images)), expected, rtol=0, atol=0)
    network, stored = load_network(checkpoint)
    torch.testing.assert_close(expected, network.embed(plain_view(images, augment_config(stored.recipe()))))


def test_convnet_export_keeps_its_own_names_and_loads_back(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "digits.safetensors"
    assert run_cli(["export", str(digits_checkpoint), "--out", str(out)]) == 0
    sidecar = out.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    network, checkpoint = load_network(digits_checkpoint)
    assert info["key_names"] == "mmcr" and "torchvision" not in info
    assert set(load_file(str(out))) == set(network.encoder.state_dict())
    view = augment_config(checkpoint.recipe())
    assert info["input"] == {
        **info["input"],
        "channels": 1,
        "image_size": 8,
        "crop_size": view.crop_size,
        "mean": list(view.mean or ()),
        "std": list(view.std or ()),
    }
    assert info["recipe"] == checkpoint.config and info["weights"] == "digits.safetensors"
    architecture = {"encoder": "convnet", "kwargs": {"width": 4}, "in_channels": 1, "feature_dim": 32}
    assert info["architecture"] == architecture

    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    reference = network.embed(plain_view(images, view))
    for source in (digits_checkpoint, out, sidecar):
        encoder = load_encoder(source)
        assert isinstance(encoder, nn.Module) and not encoder.training
        torch.testing.assert_close(encoder.preprocess(images), plain_view(images, view))
        torch.testing.assert_close(encoder(encoder.preprocess(images)), reference)
    # the weights file alone: the sidecar is in its header too
    sidecar.unlink()
    torch.testing.assert_close(load_encoder(out)(plain_view(images, view)), reference)


def test_projector_only_from_a_checkpoint(digits_checkpoint: Path, tmp_path: Path) -> None:
    network, _ = load_network(digits_checkpoint)
    encoder = load_encoder(digits_checkpoint)
    features = torch.randn(3, encoder.feature_dim)
    torch.testing.assert_close(encoder.project(features), network.projector(features))
    weights, _sidecar = export_encoder(digits_checkpoint, tmp_path / "encoder.safetensors")
    with pytest.raises(ValueError, match="no projector"):
        load_encoder(weights).project(features)


def test_export_errors_are_sentences(digits_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.safetensors"):
        export_encoder(digits_checkpoint, tmp_path / "encoder.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint or encoder export"):
        load_encoder(tmp_path / "missing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an mmcr encoder export"):
        load_encoder(foreign)
    with pytest.raises(ValueError, match=r"images of shape \(N, 1, H, W\)"):
        load_encoder(digits_checkpoint).preprocess(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_load_encoder_is_a_lazy_attribute_of_mmcr() -> None:
    code = (
        "import sys, mmcr\n"
        "assert 'torch' not in sys.modules, 'import mmcr imported torch'\n"
        "from mmcr import load_encoder\n"
        "import mmcr.export\n"
        "assert load_encoder is mmcr.export.load_encoder\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
