"""Recipe fields with one route each: an alias field and its table entry must agree."""

from __future__ import annotations

import pytest

from mmcr.config import build_config


def test_lmbda_is_an_alias_of_objective_args() -> None:
    assert build_config(None, {"lmbda": 0.5}).objective_kwargs() == {"lmbda": 0.5}
    agreeing = build_config(None, {"lmbda": 0.5, "objective_args": {"lmbda": 0.5}})
    assert agreeing.objective_kwargs() == {"lmbda": 0.5}
    assert build_config(None, {"objective_args": {"lmbda": 0.2}}).objective_kwargs() == {"lmbda": 0.2}
    with pytest.raises(ValueError, match=r"lmbda = 0.5 conflicts with objective_args.lmbda = 0.2"):
        build_config(None, {"lmbda": 0.5, "objective_args": {"lmbda": 0.2}})
    with pytest.raises(ValueError, match="lmbda is an MMCR option"):
        build_config(None, {"lmbda": 0.5, "objective": "simclr"})


def test_encoder_width_and_maxpool_are_aliases_of_encoder_args() -> None:
    cfg = build_config(None, {"encoder_width": 8, "encoder_args": {"pool_size": 2}})
    assert cfg.encoder_kwargs() == {"pool_size": 2, "width": 8}
    with pytest.raises(ValueError, match=r"width = 8 conflicts with encoder_args.width = 16"):
        build_config(None, {"encoder_width": 8, "encoder_args": {"width": 16}})
    with pytest.raises(ValueError, match=r"maxpool = True conflicts with encoder_args.maxpool = False"):
        build_config(None, {"encoder": "resnet18", "maxpool": True, "encoder_args": {"maxpool": False}})


def test_bad_hyper_parameters_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        build_config(None, {"objective": "simclr", "objective_args": {"temperature": 0}})
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'; valid: adam"):
        build_config(None, {"optimizer": "adamx"})
    with pytest.raises(ValueError, match="momentum_encoder: objective 'vicreg' takes no momentum branch"):
        build_config(None, {"objective": "vicreg", "momentum_encoder": True})


def test_a_preset_for_other_channels_is_refused() -> None:
    with pytest.raises(ValueError, match=r"preset 'cifar10' normalises 3-channel images.*'digits' has 1"):
        build_config(None, {"dataset": "digits", "augment": "cifar10"})
    with pytest.raises(ValueError, match=r"preset 'fashion-mnist' normalises 1-channel.*augment = 'cifar10'"):
        build_config(None, {"dataset": "cifar10", "augment": "fashion-mnist"})
    assert build_config(None, {"dataset": "imagefolder"}).augment is None  # its own: imagenet, RGB
