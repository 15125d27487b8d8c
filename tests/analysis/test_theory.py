"""PPE of perfectly aligned and uniform embeddings: Monte Carlo, Marchenko-Pastur limit, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmcr.analysis.plots import plot_ppe_heatmap, plot_ppe_vs_P
from mmcr.analysis.theory import (
    PPEGrid,
    marchenko_pastur_ratio,
    ppe_at_equal_size,
    ppe_grid,
    ppe_marchenko_pastur,
    ppe_small_ratio,
    ppe_uniform_monte_carlo,
)
from mmcr.cli import theory as theory_cli

# The Monte-Carlo mean sits below the limit by about 0.03-0.05 / min(P, D) (finite size);
# allow 0.1 / min(P, D) on top of the confidence interval.
FINITE_SIZE = 0.1


def test_closed_form_at_equal_size() -> None:
    assert ppe_at_equal_size() == pytest.approx(1.0 - 8.0 / (3.0 * math.pi), abs=1e-15)
    assert ppe_at_equal_size() == pytest.approx(0.1512, abs=5e-5)
    assert ppe_marchenko_pastur(1, 1) == pytest.approx(ppe_at_equal_size(), abs=1e-11)
    assert ppe_marchenko_pastur(777, 777) == pytest.approx(ppe_at_equal_size(), abs=1e-11)


def test_monte_carlo_matches_closed_form_at_equal_size() -> None:
    result = ppe_uniform_monte_carlo(256, 256, trials=32, seed=0)
    gap = abs(result["mean"] - ppe_at_equal_size())
    assert gap <= result["ci_half_width"] + FINITE_SIZE / 256


@pytest.mark.parametrize(("P", "D"), [(128, 256), (256, 128), (64, 256), (256, 64)])
def test_monte_carlo_matches_limit_off_the_ridge(P: int, D: int) -> None:
    result = ppe_uniform_monte_carlo(P, D, trials=24, seed=1)
    gap = abs(result["mean"] - ppe_marchenko_pastur(P, D))
    assert gap <= result["ci_half_width"] + FINITE_SIZE / min(P, D)


def test_limit_is_symmetric_and_depends_on_the_ratio_only() -> None:
    for P, D in [(1, 2), (3, 7), (100, 400), (5, 1000)]:
        assert ppe_marchenko_pastur(P, D) == pytest.approx(ppe_marchenko_pastur(D, P), abs=1e-14)
    assert ppe_marchenko_pastur(2, 1) == pytest.approx(ppe_marchenko_pastur(512, 256), abs=1e-14)
    assert marchenko_pastur_ratio(512, 128) == 0.25


def test_limit_values_at_ratios_two_and_four() -> None:
    assert ppe_marchenko_pastur(2, 1) == pytest.approx(0.067, abs=1e-3)
    assert ppe_marchenko_pastur(1, 4) == pytest.approx(0.032, abs=1e-3)


def test_limit_peaks_on_the_ridge() -> None:
    ratios = np.geomspace(1e-3, 1.0, 30)
    values = [ppe_marchenko_pastur(r, 1.0) for r in ratios]
    assert np.all(np.diff(values) > 0)
    assert max(values) == pytest.approx(ppe_at_equal_size(), abs=1e-11)


@pytest.mark.parametrize("r", [1e-4, 1e-3, 1e-2, 5e-2])
def test_small_ratio_asymptote(r: float) -> None:
    limit = ppe_marchenko_pastur(r, 1.0)
    assert limit == pytest.approx(r / 8.0, rel=r)  # first order: relative error ~ r/8
    assert abs(limit - ppe_small_ratio(r, order=2)) <= r**3
    assert ppe_small_ratio(r) == r / 8.0


def test_monte_carlo_result_is_reproducible_and_consistent() -> None:
    first = ppe_uniform_monte_carlo(32, 64, trials=8, seed=3)
    again = ppe_uniform_monte_carlo(32, 64, trials=8, seed=3)
    other = ppe_uniform_monte_carlo(32, 64, trials=8, seed=4)
    assert first == again
    assert first["mean"] != other["mean"]
    low, high = first["ci"]
    assert low < first["mean"] < high
    assert first["stderr"] == pytest.approx(first["std"] / math.sqrt(8))
    assert first["trials"] == 8
    assert 0.0 < first["mean"] < ppe_at_equal_size()


def test_single_point_has_zero_error() -> None:
    result = ppe_uniform_monte_carlo(1, 16, trials=4)
    assert result["mean"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ppe_uniform_monte_carlo(0, 8),
        lambda: ppe_uniform_monte_carlo(8, -1),
        lambda: ppe_uniform_monte_carlo(8, 8, trials=1),
        lambda: ppe_uniform_monte_carlo(8, 8, confidence=1.5),
        lambda: ppe_uniform_monte_carlo(2.5, 8),  # type: ignore[arg-type]
        lambda: ppe_marchenko_pastur(0, 8),
        lambda: ppe_marchenko_pastur(8, float("nan")),
        lambda: ppe_small_ratio(2.0),
        lambda: ppe_small_ratio(0.5, order=3),
        lambda: ppe_grid([], [8]),
        lambda: ppe_grid([0, 8], [8]),
    ],
)
def test_bad_inputs_raise(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_grid_cells_agree_with_direct_calls_and_round_trip(tmp_path: Path) -> None:
    grid = ppe_grid([16, 8, 16], [8, 32], trials=4, seed=2, progress=False)
    assert grid.Ps.tolist() == [8, 16]
    assert grid.Ds.tolist() == [8, 32]
    assert grid.mean.shape == grid.ci_half_width.shape == grid.mp_limit.shape == (2, 2)
    direct = ppe_uniform_monte_carlo(16, 8, trials=4, seed=2)
    assert grid.mean[1, 0] == direct["mean"]
    assert grid.mp_limit[1, 0] == ppe_marchenko_pastur(16, 8)
    loaded = PPEGrid.load_json(grid.save_json(tmp_path / "grid.json"))
    np.testing.assert_array_equal(loaded.mean, grid.mean)
    np.testing.assert_array_equal(loaded.Ps, grid.Ps)
    assert loaded.trials == 4


def test_ppe_plots_are_written(tmp_path: Path) -> None:
    grid = ppe_grid([1, 4, 8, 16], [4, 16], trials=3, progress=False)
    vs_p = plot_ppe_vs_P(grid, tmp_path / "vs_p.png")
    heat = plot_ppe_heatmap(grid.to_dict(), tmp_path / "heat.png")
    measured = grid.mean * 1.5
    measured[0, 0] = np.nan
    both = plot_ppe_heatmap(grid, tmp_path / "both.png", measured=measured)
    other_grid = plot_ppe_heatmap(
        grid,
        tmp_path / "other.png",
        measured={"Ps": [4, 8], "Ds": [4], "values": [[0.3], [0.2]], "label": "trained"},
    )
    for path in (vs_p, heat, both, other_grid):
        assert path.exists() and path.stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_ppe_heatmap(grid, tmp_path / "bad.png", measured=np.zeros((3, 3)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcr")
    theory_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_single_cell_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(
        ["theory", "ppe", "--P", "32", "--D", "32", "--trials", "4", "--json"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["P"] == out["D"] == 32
    assert out["monte_carlo"]["trials"] == 4
    assert len(out["monte_carlo"]["ci"]) == 2
    assert out["marchenko_pastur_limit"] == pytest.approx(ppe_at_equal_size())
    assert out["closed_form_equal_size"] == pytest.approx(ppe_at_equal_size())


def test_cli_single_cell_text_off_ridge(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["theory", "ppe", "--P", "16", "--D", "64", "--trials", "3"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Marchenko-Pastur" in text and "1 - 8/(3 pi)" not in text


def test_cli_grid_writes_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(
        [
            "theory",
            "ppe",
            "--P",
            "4",
            "8",
            "--D",
            "8",
            "16",
            "--trials",
            "3",
            "--json",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["Ps"] == [4, 8] and printed["Ds"] == [8, 16]
    for name in ("ppe_grid.json", "ppe_vs_P.png", "ppe_heatmap.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert PPEGrid.load_json(tmp_path / "ppe_grid.json").mean.shape == (2, 2)


def test_cli_help_teaches_and_bad_sizes_raise(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["theory", "ppe", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "ridge" in help_text and "sqrt(P min(P, D))" in help_text
    args = parser.parse_args(["theory", "ppe", "--P", "0", "--D", "8"])
    with pytest.raises(ValueError):
        args.func(args)
    bare = parser.parse_args(["theory"])
    assert bare.func(bare) == 0


def test_a_trial_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    import mmcr.analysis.theory as theory

    monkeypatch.setattr(theory, "_available_bytes", lambda device: 1 << 20)  # 1 MiB
    with pytest.raises(ValueError, match=r"P = 256, D = 4096: one Monte-Carlo trial needs .* GiB"):
        theory.ppe_uniform_monte_carlo(256, 4096, trials=2)
    # A size that fits still runs under the same budget.
    assert 0.0 < theory.ppe_uniform_monte_carlo(8, 8, trials=2)["mean"] < 1.0


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--device", "bogus"], "--device 'bogus' is not a torch device"),
        (["--out", ""], "--out is empty"),
        (["--out", "FILE"], "is a file, not a folder"),
    ],
)
def test_cli_refuses_a_bad_device_or_out_before_sampling(
    flags: list[str], match: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmcr.analysis.theory as theory

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("sampling started before the arguments were checked")

    monkeypatch.setattr(theory, "ppe_grid", never)
    monkeypatch.setattr(theory, "ppe_uniform_monte_carlo", never)
    a_file = tmp_path / "grid.json"
    a_file.write_text("{}")
    flags = [str(a_file) if f == "FILE" else f for f in flags]
    args = _parser().parse_args(["theory", "ppe", "--P", "4", "--D", "4", "--trials", "2", *flags])
    with pytest.raises(ValueError, match=match):
        args.func(args)
