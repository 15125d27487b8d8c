"""Where a (P, D) grid of PPEs peaks, and how sharp its ridge is."""

from __future__ import annotations

import numpy as np
import pytest

from mmcr.experiments.ridge import peak_table, ridge_contrast


def test_peak_table_finds_the_ridge() -> None:
    Ps = Ds = [16, 32, 64, 128]
    ratio = np.array([[min(p, d) / max(p, d) for d in Ds] for p in Ps])
    theory = 0.15 * ratio
    rows = peak_table(Ps, Ds, theory + 0.2, theory)
    assert [r["peak_P"] for r in rows] == Ds and all(r["verdict"] == "at P = D" for r in rows)
    measured = np.full((4, 4), 0.3)
    measured[:, 0] = [0.1, 0.2, 0.3, 0.4]  # D = 16: rising in P, peak at the largest P
    measured[1, 1] = np.nan
    rows = peak_table(Ps, Ds, measured, theory)
    assert rows[0]["peak_P"] == 128 and rows[0]["verdict"] == "away from P = D" and rows[0]["at_edge"]
    assert rows[1]["n_finished"] == 3
    swapped = peak_table(Ds, Ps, measured.T, theory.T, names=("D", "P"))
    assert swapped[3]["verdict"].endswith("D = P") or "D = P" in swapped[3]["verdict"]


def test_ridge_contrast_compares_one_octave_off_the_ridge() -> None:
    Ps = Ds = [16, 32, 64]
    values = np.array([[0.15, 0.06, 0.03], [0.06, 0.15, 0.06], [0.03, 0.06, 0.15]])
    contrast = ridge_contrast(Ps, Ds, values)
    assert contrast["beyond"] == pytest.approx(0.4) and contrast["n_beyond"] == 2
    assert contrast["before"] == pytest.approx(0.4) and contrast["n_before"] == 2
    assert ridge_contrast([16], [64], np.array([[0.1]]))["beyond"] is None
