"""Scaling-law fits (one variable and joint), hold-out extrapolation, FLOP accounting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmcr.analysis.fit import JointFit, PowerLawFit, fit_joint, fit_power_law, holdout_error
from mmcr.analysis.flops import count_forward_flops, flops_per_step
from mmcr.analysis.plots import plot_scaling_fit

E_TRUE, A_TRUE, ALPHA_TRUE = 0.5, 3.0, 0.3


def _noisy_power_law(noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    compute = np.geomspace(1e2, 1e8, 24)
    loss = (E_TRUE + A_TRUE * compute**-ALPHA_TRUE) * np.exp(rng.normal(0.0, noise, 24))
    loss[[4, 15]] *= [1.8, 0.6]  # two outlying runs
    return compute, loss


def test_clean_power_law_is_recovered_exactly() -> None:
    compute = np.geomspace(1e2, 1e8, 12)
    fit = fit_power_law(compute, E_TRUE + A_TRUE * compute**-ALPHA_TRUE, bootstrap=0)
    assert fit.alpha == pytest.approx(ALPHA_TRUE, abs=1e-5)
    assert fit.E == pytest.approx(E_TRUE, abs=1e-5)
    assert fit.A == pytest.approx(A_TRUE, rel=1e-4)
    assert all(math.isnan(v) for bounds in fit.ci.values() for v in bounds)
    with pytest.raises(ValueError):
        fit.predict_interval(compute)


@pytest.mark.parametrize(("noise", "seed"), [(0.02, 0), (0.05, 1)])
def test_noisy_power_law_with_outliers(noise: float, seed: int) -> None:
    compute, loss = _noisy_power_law(noise, seed)
    fit = fit_power_law(compute, loss, bootstrap=60, seed=seed)
    assert isinstance(fit, PowerLawFit)
    assert abs(fit.alpha - ALPHA_TRUE) < 0.05
    assert abs(fit.E - E_TRUE) < 0.05
    low, high = fit.ci["alpha"]
    assert low <= ALPHA_TRUE <= high
    assert low <= fit.alpha <= high
    assert fit.bootstrap_params.shape == (60, 3)
    band_low, band_high = fit.predict_interval(compute)
    assert np.all(band_low <= band_high)
    truth = E_TRUE + A_TRUE * compute**-ALPHA_TRUE
    assert np.max(np.abs(fit.predict(compute) / truth - 1.0)) < 0.03
    summary = json.loads(json.dumps(fit.to_dict()))
    assert summary["alpha"] == fit.alpha and summary["n_bootstrap"] == 60


def test_zero_irreducible_loss() -> None:
    compute = np.geomspace(1e1, 1e6, 15)
    fit = fit_power_law(compute, 2.0 * compute**-0.5, bootstrap=0)
    assert fit.E < 1e-4
    assert fit.alpha == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize(
    ("compute", "loss"),
    [
        ([1.0, 2.0], [1.0, 0.5]),  # too few points
        ([1.0, 2.0, 3.0], [1.0, -0.5, 0.2]),  # non-positive loss
        ([1.0, 2.0, 3.0], [1.0, 0.5]),  # lengths differ
        ([5.0, 5.0, 5.0], [1.0, 0.9, 0.8]),  # a single compute value
        ([1.0, 2.0, float("nan")], [1.0, 0.9, 0.8]),
    ],
)
def test_power_law_rejects_bad_data(compute: list[float], loss: list[float]) -> None:
    with pytest.raises(ValueError):
        fit_power_law(compute, loss, bootstrap=0)


def _two_variable_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.repeat(np.geomspace(1e2, 1e5, 8), 6)
    batch = np.tile(np.geomspace(16, 512, 6), 8)
    loss = 0.3 + 5.0 * steps**-0.4 + 2.0 * batch**-0.7
    return steps, batch, loss


def test_joint_fit_recovers_two_exponents() -> None:
    steps, batch, loss = _two_variable_data()
    clean = fit_joint({"steps": steps, "batch": batch}, loss, bootstrap=0)
    assert isinstance(clean, JointFit)
    assert clean.alpha["steps"] == pytest.approx(0.4, abs=1e-4)
    assert clean.alpha["batch"] == pytest.approx(0.7, abs=1e-4)
    assert clean.E == pytest.approx(0.3, abs=1e-4)
    assert clean.A["steps"] == pytest.approx(5.0, rel=1e-3)

    noisy_loss = loss * np.exp(np.random.default_rng(3).normal(0.0, 0.02, loss.shape))
    noisy = fit_joint({"steps": steps, "batch": batch}, noisy_loss, bootstrap=30, seed=3)
    assert abs(noisy.alpha["steps"] - 0.4) < 0.05
    assert abs(noisy.alpha["batch"] - 0.7) < 0.15
    low, high = noisy.ci["alpha_steps"]
    assert low <= noisy.alpha["steps"] <= high
    assert set(noisy.params) == {"E", "A_steps", "A_batch", "alpha_steps", "alpha_batch"}
    prediction = noisy.predict({"steps": steps, "batch": batch})
    assert np.max(np.abs(prediction / loss - 1.0)) < 0.03


def test_joint_fit_rejects_unidentifiable_inputs() -> None:
    steps, batch, loss = _two_variable_data()
    with pytest.raises(ValueError, match="single value"):
        fit_joint({"steps": steps, "dim": np.full_like(steps, 128.0)}, loss, bootstrap=0)
    with pytest.raises(ValueError):
        fit_joint({"steps": steps[:5]}, loss, bootstrap=0)
    with pytest.raises(ValueError):
        fit_joint({}, loss, bootstrap=0)
    fit = fit_joint({"steps": steps, "batch": batch}, loss, bootstrap=0)
    with pytest.raises(ValueError):
        fit.predict({"steps": steps})


def test_holdout_error_on_clean_data_is_tiny() -> None:
    compute = np.geomspace(1e2, 1e8, 20)
    loss = E_TRUE + A_TRUE * compute**-ALPHA_TRUE
    result = holdout_error(compute, loss)
    assert result["holdout_mask"].sum() == 4
    assert np.all(compute[result["holdout_mask"]] > compute[~result["holdout_mask"]].max())
    assert result["mean_abs_relative_error"] < 1e-5
    assert result["max_abs_relative_error"] < 1e-5

    steps, batch, joint_loss = _two_variable_data()
    joint = holdout_error({"steps": steps, "batch": batch}, joint_loss, order_by=steps * batch)
    assert joint["mean_abs_relative_error"] < 1e-4
    with pytest.raises(ValueError, match="order_by"):
        holdout_error({"steps": steps, "batch": batch}, joint_loss)


def test_holdout_error_with_a_custom_fit_function() -> None:
    compute, loss = _noisy_power_law(0.02, 0)
    result = holdout_error(
        compute, loss, lambda x, y: fit_power_law(x, y, bootstrap=0), frac_largest=0.25
    )
    assert result["holdout_mask"].sum() == 6
    assert result["mean_abs_relative_error"] < 0.05
    with pytest.raises(ValueError):
        holdout_error(compute, loss, frac_largest=1.0)


def test_flops_per_step_convention() -> None:
    assert flops_per_step(1e6, 256, 2) == 3.0 * 1e6 * 256 * 2
    with pytest.raises(ValueError):
        flops_per_step(1e6, 0, 2)
    with pytest.raises(ValueError):
        flops_per_step(-1.0, 8, 2)


def test_count_forward_flops_by_hand() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8x8 outputs, 3*3*3 MACs each: 13824 MACs
        nn.BatchNorm2d(8),  # not counted
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2),  # 4x4x4 outputs, 4*3*3 MACs: 2304
        nn.Flatten(),
        nn.Linear(64, 10),  # 640 MACs
    )
    running_mean = net[1].running_mean.clone()
    assert net.training
    flops = count_forward_flops(net, (3, 8, 8))
    assert flops == 2.0 * (13824 + 2304 + 640)
    assert net.training  # mode restored
    assert torch.equal(net[1].running_mean, running_mean)  # statistics untouched
    assert not net[0]._forward_hooks  # hooks removed


def test_count_forward_flops_linear_on_tokens_and_reuse() -> None:
    layer = nn.Linear(5, 7)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(torch.cat([x, x], dim=1))

    assert count_forward_flops(layer, (4, 5)) == 2.0 * 5 * 7 * 4
    assert count_forward_flops(Twice(), (4, 5)) == 2.0 * 5 * 7 * 8
    with pytest.raises(ValueError):
        count_forward_flops(layer, ())


def test_plot_scaling_fit_is_written(tmp_path: Path) -> None:
    compute, loss = _noisy_power_law(0.02, 0)
    result = holdout_error(compute, loss, lambda x, y: fit_power_law(x, y, bootstrap=20))
    path = plot_scaling_fit(
        compute, loss, result["fit"], tmp_path / "fit.png", holdout_mask=result["holdout_mask"]
    )
    assert path.stat().st_size > 1000
    plain = fit_power_law(compute, loss, bootstrap=0)
    assert plot_scaling_fit(compute, loss, plain, tmp_path / "plain.png").stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_scaling_fit(compute, loss[:-1], plain, tmp_path / "bad.png")
