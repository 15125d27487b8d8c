"""Evaluation: kNN and linear probe against direct computations, and the eval command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmcr.cli import main
from mmcr.evaluation.knn import knn_accuracy, knn_scores, select_knn
from mmcr.evaluation.linear_probe import evaluate_linear_probe, fit_linear_probe


def test_knn_scores_against_a_loop() -> None:
    torch.manual_seed(0)
    memory, labels = torch.randn(30, 4), torch.randint(0, 3, (30,))
    queries = torch.randn(5, 4)
    scores = knn_scores(memory, labels, queries, k=4, temperature=0.5, num_classes=3, chunk=2)
    m = torch.nn.functional.normalize(memory, dim=1)
    for i, q in enumerate(torch.nn.functional.normalize(queries, dim=1)):
        sims = m @ q
        top = sims.argsort(descending=True)[:4]
        expected = torch.zeros(3)
        for j in top:
            expected[labels[j]] += torch.exp(sims[j] / 0.5)
        assert torch.allclose(scores[i], expected, rtol=1e-5)


def test_knn_separable_clusters_and_selection() -> None:
    torch.manual_seed(0)
    centers = torch.eye(3, 8) * 5
    labels = torch.arange(3).repeat(40)
    feats = centers[labels] + torch.randn(120, 8) * 0.3
    assert knn_accuracy(feats[:90], labels[:90], feats[90:], labels[90:], k=5) == 1.0
    sel = select_knn(feats[:90], labels[:90], feats[90:], labels[90:], ks=(1, 5), temperatures=(0.1,))
    assert sel.val_accuracy == 1.0 and len(sel.grid) == 2
    noisy = feats + torch.randn(120, 8) * 3
    sel = select_knn(noisy[:90], labels[:90], noisy[90:], labels[90:], ks=(1, 3, 9), temperatures=(0.05, 1.0))
    for entry in sel.grid:  # the shared neighbour search gives what a fresh search per k gives
        direct = knn_accuracy(
            noisy[:90],
            labels[:90],
            noisy[90:],
            labels[90:],
            k=int(entry["k"]),
            temperature=entry["temperature"],
        )
        assert entry["val_accuracy"] == direct
    with pytest.raises(ValueError, match="queries"):
        knn_scores(feats, labels, torch.randn(2, 3), k=1, temperature=0.1, num_classes=3)


def test_linear_probe_separates_and_selects_on_validation() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 10)
    x = torch.randn(600, 10)
    y = (x @ w.T).argmax(1)
    probe = fit_linear_probe(x[:400], y[:400], 4, weight_decay=1e-4)
    assert probe.accuracy(x[400:], y[400:]) > 0.9
    result = evaluate_linear_probe(
        (x[:300], y[:300]), (x[300:450], y[300:450]), (x[450:], y[450:]), 4, weight_decays=(1e-4, 10.0)
    )
    assert result.weight_decay == 1e-4  # heavy L2 underfits and loses on validation
    assert result.test_accuracy > 0.9
    subset = evaluate_linear_probe(
        (x[:300], y[:300]),
        (x[300:450], y[300:450]),
        (x[450:], y[450:]),
        4,
        weight_decays=(1e-4, 10.0),
        selection_size=100,
    )
    assert subset.weight_decay == 1e-4 and subset.test_accuracy > 0.9
    with pytest.raises(ValueError, match="labels must lie"):
        fit_linear_probe(x, y + 10, 4, weight_decay=0.0)


def test_eval_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [
        "pretrain",
        "--dataset",
        "digits",
        "--augment",
        "digits",
        "--encoder-width",
        "8",
        "--projector-hidden",
        "64",
        "--projector-dim",
        "32",
        "--batch-size",
        "128",
        "--epochs",
        "1",
        "--progress",
        "false",
        "--out",
        str(out),
        "--threads",
        "2",
    ]
    assert main(args) == 0
    assert main(["eval", str(out / "last.pt")]) == 0
    results = json.loads((out / "eval" / "eval.json").read_text())
    assert results["mode"] == "trained"
    assert 0.5 < results["knn"]["test_accuracy"] <= 1.0
    assert 0.5 < results["linear_probe"]["test_accuracy"] <= 1.0
    assert {"alignment", "uniformity", "effective_rank", "ppe"} <= set(results["geometry"])
    assert {"mi_lower_bound", "mi_reconstruction", "mi_entropy", "mi_kappa"} <= set(results["geometry"])
    geometry = results["geometry"]
    gain, deficit = geometry["mi_reconstruction_gain"], geometry["mi_entropy_deficit"]
    assert geometry["mi_lower_bound"] == pytest.approx(gain - deficit) and deficit >= 0.0
    flag = "reliable: false" if geometry["mi_reliable"] == 0.0 else "reliable ("
    assert geometry["mi_reliable"] in (0.0, 1.0) and results["mi_reliability"].startswith(flag)
    capacity = {f"exemplar_{k}" for k in ("capacity", "radius", "dimension", "center_correlation")}
    assert capacity <= set(results["geometry"]) and results["geometry"]["exemplar_capacity"] > 0
    report = (out / "eval" / "report.md").read_text()
    assert "kNN test accuracy" in report and (out / "eval" / "training_curves.png").stat().st_size > 0
    # the probe grid and iterations are options of the command
    grid_args = ["--out", str(tmp_path / "grid"), "--probe-l2", "0.01", "0.001", "--probe-max-iter", "50"]
    assert main(["eval", str(out / "last.pt"), *grid_args]) == 0
    gridded = json.loads((tmp_path / "grid" / "eval.json").read_text())["linear_probe"]
    assert sorted(g["weight_decay"] for g in gridded["grid"]) == [0.001, 0.01]
    assert gridded["weight_decay"] in (0.001, 0.01)
    assert main(["eval", str(out / "last.pt"), "--probe-l2", "-1"]) == 2
    assert "probe_weight_decays" in capsys.readouterr().err
    assert main(["eval", str(out / "last.pt"), "--random-init", "--no-probe"]) == 0
    assert json.loads((out / "eval-random-init" / "eval.json").read_text())["mode"] == "random-init"
    assert main(["eval", str(out / "last.pt"), "--raw-pixels", "--no-probe"]) == 0
    raw = json.loads((out / "eval-raw-pixels" / "eval.json").read_text())
    assert raw["feature_dim"] == 64 and "geometry" not in raw
    printed = capsys.readouterr().out
    assert "kNN test accuracy" in printed


def test_cli_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    text = capsys.readouterr().out
    for command in ("pretrain", "eval"):
        assert command in text
    assert main(["eval", "/nonexistent/last.pt"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["pretrain", "--epochs", "0", "--dataset", "digits"]) == 2


def test_linear_probe_warm_start_reaches_the_same_optimum() -> None:
    torch.manual_seed(1)
    x = torch.randn(300, 6) * torch.tensor([1.0, 5.0, 0.1, 2.0, 1.0, 3.0]) + 2.0
    y = (x[:, :3] @ torch.randn(3, 3)).argmax(1)
    other = fit_linear_probe(x[:150] * 2 + 1, y[:150], 3, weight_decay=1.0)  # another standardisation
    cold = fit_linear_probe(x, y, 3, weight_decay=1e-2)
    warm = fit_linear_probe(x, y, 3, weight_decay=1e-2, init=other)
    # logits are defined up to a shared constant per sample (the bias is not regularised)
    assert torch.allclose(cold.logits(x).softmax(1), warm.logits(x).softmax(1), atol=1e-3)


def test_eval_embeds_every_image_of_a_streamed_data_set(tmp_path: Path) -> None:
    from mmcr.evaluate import EvalOptions, evaluate

    try:  # tests/ is on sys.path when it has no __init__.py (pytest's rootdir-based import)
        from image_trees import make_tree
    except ImportError:  # pragma: no cover - layout with tests/__init__.py
        from tests.image_trees import make_tree  # type: ignore[no-redef]

    tree = make_tree(tmp_path / "tree", per_class=10)
    recipe = tmp_path / "folder.toml"
    recipe.write_text(
        f'dataset = "imagefolder"\ndata_dir = "{tree}"\nimage_size = 16\ncrop_size = 16\n'
        'loader = "stream"\nnum_workers = 0\nmonitor_size = 4\n'
    )
    out = str(tmp_path / "eval")
    results = evaluate(EvalOptions(config=str(recipe), raw_pixels=True, out=out, probe=False, report=False))
    # all of each split, not the monitor's samples of 4
    assert (results["num_train"], results["num_val"], results["num_test"]) == (27, 3, 15)
    assert results["knn"]["test_accuracy"] == 1.0  # the classes differ in colour
