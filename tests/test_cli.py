"""The command line: errors a user can cause end in one sentence and exit code 2; --help is light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmcr.cli import main


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from mmcr.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pretrain", "--threads", "0"], "threads must be >= 1"),
        (["pretrain", "--device", "bogus"], "unknown device 'bogus'; valid: auto"),
        (["pretrain", "--objective", "nope"], "unknown objective 'nope'; valid:"),
    ],
)
def test_bad_settings_are_one_sentence(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_bad_recipe_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "broken.toml"
    recipe.write_text("epochs = [\n")
    assert main(["pretrain", "--config", str(recipe)]) == 2
    assert f"recipe {recipe} is not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "where"), [("a: [\n", "line 2, column 1"), ("lr: 1\n  x: 2\n", "line 2, column 4")]
)
def test_a_bad_yaml_recipe_is_one_line_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text(text)
    assert main(["pretrain", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"recipe {recipe} is not valid YAML" in err and where in err
    assert len(err.splitlines()) == 1
    yaml_recipe = tmp_path / "broken.yaml"
    yaml_recipe.write_text("epochs: [1\n")
    assert main(["pretrain", "--config", str(yaml_recipe)]) == 2
    assert f"recipe {yaml_recipe} is not valid YAML" in capsys.readouterr().err


def test_unreadable_checkpoints_are_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert main(["eval", str(empty)]) == 2
    assert "the file is empty (0 bytes)" in capsys.readouterr().err
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": Path("x")}, evil)
    assert main(["eval", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "could run code" in err and "weights_only" not in err
    bad_keys = tmp_path / "bad_keys.pt"
    torch.save({"model": {}, "config": {"learning_rate": 1}, "step": 1, "in_channels": 1}, bad_keys)
    assert main(["eval", str(bad_keys)]) == 2
    assert "in the checkpoint's configuration" in capsys.readouterr().err


def test_weights_that_do_not_fit_their_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmcr.build import Checkpoint
    from mmcr.config import build_config
    from mmcr.training import pretrain

    overrides = {"dataset": "digits", "encoder_width": 4, "projector_hidden": [16], "projector_dim": 8}
    cfg = build_config(
        None,
        {
            **overrides,
            "batch_size": 64,
            "max_steps": 1,
            "eval_every": 0,
            "progress": False,
            "monitor_size": 64,
            "out": str(tmp_path / "run"),
        },
    )
    checkpoint = Checkpoint.load(pretrain(cfg))
    checkpoint.config["projector_dim"] = 16
    checkpoint.save(tmp_path / "mismatch.pt")
    assert main(["eval", str(tmp_path / "mismatch.pt"), "--no-probe"]) == 2
    assert "do not fit the network its configuration builds" in capsys.readouterr().err


def test_eval_line_names_what_was_measured() -> None:
    from mmcr.cli import _eval_line

    recall = {"image_to_text": {"recall@1": 0.125}, "text_to_image": {"recall@1": 0.25}}
    # paired data without labels: retrieval only, no kNN section to read
    assert _eval_line({"mode": "trained", "retrieval": recall}) == (
        "trained: recall@1 image-to-text 12.50 %, text-to-image 25.00 %"
    )
    image = {"mode": "trained", "knn": {"test_accuracy": 0.5}, "linear_probe": {"test_accuracy": 0.75}}
    assert _eval_line(image) == "trained: kNN test accuracy 50.00 %, linear-probe test accuracy 75.00 %"
    assert _eval_line({"mode": "trained"}) == "trained: no scores (see eval.json)"
