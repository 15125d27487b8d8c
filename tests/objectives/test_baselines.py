"""The baseline objectives against their papers' formulas.

Each objective is compared with values computed by hand on tiny inputs and with a
naive element-by-element implementation written here from the paper's formula
(float64, explicit loops), then checked for the properties every objective shares:
invariance to the order of samples and of views, finite gradients, the logged
components, and rejection of bad input with a sentence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcr.objectives.barlow_twins import BarlowTwinsLoss
from mmcr.objectives.simclr import SimCLRLoss
from mmcr.objectives.vicreg import VICRegLoss

Baseline = SimCLRLoss | BarlowTwinsLoss | VICRegLoss
ALL_LOSSES: dict[str, type[Baseline]] = {
    "simclr": SimCLRLoss,
    "barlow_twins": BarlowTwinsLoss,
    "vicreg": VICRegLoss,
}


def random_views(b: int, k: int, d: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, d, generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------------------------------
# Naive references, written from the papers' formulas with explicit loops.
# ---------------------------------------------------------------------------------------


def naive_nt_xent(z: torch.Tensor, temperature: float) -> float:
    """Multi-positive NT-Xent: anchors i, positives = other views of i's sample."""
    b, k, _ = z.shape
    views = [(n, v, z[n, v] / z[n, v].norm()) for n in range(b) for v in range(k)]
    total = 0.0
    for n, v, anchor in views:
        logits = {(m, w): float(anchor @ u) / temperature for m, w, u in views}
        denominator = sum(math.exp(s) for key, s in logits.items() if key != (n, v))
        log_probs = [s - math.log(denominator) for (m, w), s in logits.items() if m == n and w != v]
        total += -sum(log_probs) / len(log_probs)
    return total / len(views)


def classic_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent for two views as usually written: 2B-way cross entropy.

    Rows ``[z1; z2]``; the target of row ``i`` is its other view, ``i + B (mod 2B)``, and
    each row's own similarity is excluded from the softmax.
    """
    b = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = u @ u.T / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(logits, targets)


def naive_mean_and_variance(column: list[float], unbiased: bool) -> tuple[float, float]:
    mean = sum(column) / len(column)
    squares = sum((x - mean) ** 2 for x in column)
    return mean, squares / (len(column) - 1 if unbiased else len(column))


def naive_barlow_twins(z: torch.Tensor, lambd: float, scale: float, eps: float) -> float:
    """Batch-standardise (biased variance), C_ij = (1/N) sum_n x_a[n,i] x_b[n,j]."""
    n_samples, k, d = z.shape
    standardised = [[[0.0] * d for _ in range(k)] for _ in range(n_samples)]
    for v in range(k):
        for i in range(d):
            column = [float(z[n, v, i]) for n in range(n_samples)]
            mean, variance = naive_mean_and_variance(column, unbiased=False)
            for n in range(n_samples):
                standardised[n][v][i] = (column[n] - mean) / math.sqrt(variance + eps)
    losses = []
    for a, b in itertools.combinations(range(k), 2):
        loss = 0.0
        for i in range(d):
            for j in range(d):
                c = sum(standardised[n][a][i] * standardised[n][b][j] for n in range(n_samples))
                c /= n_samples
                loss += (1 - c) ** 2 if i == j else lambd * c**2
        losses.append(loss)
    return scale * sum(losses) / len(losses)


def naive_vicreg(
    z: torch.Tensor, sim_coeff: float, std_coeff: float, cov_coeff: float, eps: float
) -> dict[str, float]:
    """Invariance over view pairs; variance and covariance (unbiased) per view, averaged."""
    n_samples, k, d = z.shape
    pair_mses = []
    for a, b in itertools.combinations(range(k), 2):
        squares = sum(
            (float(z[n, a, i]) - float(z[n, b, i])) ** 2 for n in range(n_samples) for i in range(d)
        )
        pair_mses.append(squares / (n_samples * d))
    invariance = sum(pair_mses) / len(pair_mses)

    variances, covariances = [], []
    for v in range(k):
        columns = [[float(z[n, v, i]) for n in range(n_samples)] for i in range(d)]
        stats = [naive_mean_and_variance(column, unbiased=True) for column in columns]
        variances.append(sum(max(0.0, 1 - math.sqrt(var + eps)) for _, var in stats) / d)
        off_diagonal = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum(
                        (columns[i][n] - stats[i][0]) * (columns[j][n] - stats[j][0])
                        for n in range(n_samples)
                    ) / (n_samples - 1)
                    off_diagonal += cov**2
        covariances.append(off_diagonal / d)
    variance = sum(variances) / k
    covariance = sum(covariances) / k
    return {
        "loss": sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance,
        "invariance": invariance,
        "variance": variance,
        "covariance": covariance,
    }


# ---------------------------------------------------------------------------------------
# SimCLR
# ---------------------------------------------------------------------------------------


def test_simclr_hand_computed_value() -> None:
    # Sample 0's two views lie on e1, sample 1's on e2: each anchor has cosine 1 with its
    # positive and 0 with its two negatives, so l = -log(e^{1/t} / (e^{1/t} + 2)).
    z = torch.tensor([[[3.0, 0.0], [0.5, 0.0]], [[0.0, 2.0], [0.0, 1.0]]], dtype=torch.float64)
    loss_fn = SimCLRLoss(temperature=0.5)
    loss = loss_fn(z)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-12)
    assert loss_fn.components["positive_cosine"].item() == pytest.approx(1.0)
    assert loss_fn.components["negative_cosine"].item() == pytest.approx(0.0)


@pytest.mark.parametrize(("b", "k", "d"), [(2, 2, 3), (3, 2, 2), (3, 3, 2), (4, 4, 3)])
@pytest.mark.parametrize("temperature", [0.5, 0.1, 2.0])
def test_simclr_matches_naive_formula(b: int, k: int, d: int, temperature: float) -> None:
    z = random_views(b, k, d, seed=b * 100 + k * 10 + d)
    loss = SimCLRLoss(temperature=temperature)(z)
    assert loss.item() == pytest.approx(naive_nt_xent(z, temperature), rel=1e-10)


@pytest.mark.parametrize("temperature", [0.5, 0.2])
def test_simclr_two_views_is_the_classic_nt_xent(temperature: float) -> None:
    z = random_views(6, 2, 5, seed=7)
    loss = SimCLRLoss(temperature=temperature)(z)
    expected = classic_nt_xent(z[:, 0], z[:, 1], temperature)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0.0)


def test_simclr_ignores_the_norm_of_each_view() -> None:
    z = random_views(4, 3, 5, seed=3)
    scales = torch.rand(4, 3, 1, dtype=torch.float64) * 10 + 0.1
    torch.testing.assert_close(SimCLRLoss()(z * scales), SimCLRLoss()(z))


# ---------------------------------------------------------------------------------------
# Barlow Twins
# ---------------------------------------------------------------------------------------


def test_barlow_twins_hand_computed_value() -> None:
    # Columns of z_a are [1, -1], [1, -1]; of z_b [1, -1], [-1, 1]: each has mean 0 and
    # biased variance 1, so (eps = 0) C = [[1, -1], [1, -1]]: on-diagonal (1-1)^2 +
    # (1+1)^2 = 4, off-diagonal 1 + 1 = 2, loss = 4 + 2 * lambd.
    z_a = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    z_b = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    z = torch.stack([z_a, z_b], dim=1)
    loss_fn = BarlowTwinsLoss(lambd=0.25, eps=0.0)
    assert loss_fn(z).item() == pytest.approx(4 + 2 * 0.25, rel=1e-12)
    assert loss_fn.components["on_diagonal"].item() == pytest.approx(4.0)
    assert loss_fn.components["off_diagonal"].item() == pytest.approx(2.0)
    scaled = BarlowTwinsLoss(lambd=0.25, scale=0.5, eps=0.0)(z)
    assert scaled.item() == pytest.approx(0.5 * (4 + 2 * 0.25), rel=1e-12)


def test_barlow_twins_is_zero_for_identical_decorrelated_views() -> None:
    # Orthogonal +-1 columns: standardised views are equal and C is the identity.
    columns = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    z = torch.stack([columns, columns * 3 + 1], dim=1).double()  # affine per feature
    assert BarlowTwinsLoss(eps=0.0)(z).item() == pytest.approx(0.0, abs=1e-24)


@pytest.mark.parametrize(("b", "k", "d"), [(2, 2, 2), (4, 2, 3), (3, 3, 2), (4, 4, 3)])
def test_barlow_twins_matches_naive_formula(b: int, k: int, d: int) -> None:
    z = random_views(b, k, d, seed=b * 100 + k * 10 + d)
    for lambd, scale, eps in [(0.0051, 1.0, 1e-5), (0.5, 0.25, 0.0)]:
        loss = BarlowTwinsLoss(lambd=lambd, scale=scale, eps=eps)(z)
        assert loss.item() == pytest.approx(naive_barlow_twins(z, lambd, scale, eps), rel=1e-10)


def test_barlow_twins_matches_batch_norm_without_affine() -> None:
    # The standardisation is what nn.BatchNorm1d(affine=False) does in training mode.
    z = random_views(16, 2, 6, seed=11)
    bn = nn.BatchNorm1d(6, affine=False).double()
    x_a, x_b = bn(z[:, 0]), bn(z[:, 1])
    c = x_a.T @ x_b / 16
    on = (1 - torch.diagonal(c)).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    torch.testing.assert_close(BarlowTwinsLoss()(z), on + 0.0051 * off)


# ---------------------------------------------------------------------------------------
# VICReg
# ---------------------------------------------------------------------------------------


def test_vicreg_hand_computed_value() -> None:
    # z_a = [[1, 1], [-1, -1]], z_b = [[1, -1], [-1, 1]]:
    # invariance: squared differences 0 + 4 + 0 + 4 over N*D = 4 -> 2;
    # variance: every unbiased variance is 2 > 1, so relu(1 - sqrt(2 + eps)) = 0;
    # covariance: Cov(z_a) = [[2, 2], [2, 2]], Cov(z_b) = [[2, -2], [-2, 2]]:
    # off-diagonal squares 8 / D = 4 for each view, mean 4. loss = 25 * 2 + 0 + 2 * 4
    # (weight 2 on the mean over views = the paper's weight 1 on the two-view sum).
    z_a = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    z_b = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    loss_fn = VICRegLoss()
    loss = loss_fn(torch.stack([z_a, z_b], dim=1))
    assert loss.item() == pytest.approx(58.0, rel=1e-12)
    parts = {name: value.item() for name, value in loss_fn.components.items()}
    assert parts == pytest.approx({"loss": 58.0, "invariance": 2.0, "variance": 0.0, "covariance": 4.0})


def test_vicreg_collapsed_views_pay_the_variance_hinge() -> None:
    # Every embedding equal: no invariance or covariance, std = sqrt(eps) = 0.01 in every
    # dimension, variance = 1 - 0.01, loss = 25 * 0.99.
    z = torch.ones(4, 2, 3, dtype=torch.float64)
    assert VICRegLoss()(z).item() == pytest.approx(25 * 0.99, rel=1e-12)


@pytest.mark.parametrize(("b", "k", "d"), [(2, 2, 2), (4, 2, 3), (3, 3, 2), (5, 4, 3)])
def test_vicreg_matches_naive_formula(b: int, k: int, d: int) -> None:
    z = random_views(b, k, d, seed=b * 100 + k * 10 + d) * 0.5
    loss_fn = VICRegLoss(sim_coeff=2.0, std_coeff=3.0, cov_coeff=5.0, eps=1e-4)
    loss = loss_fn(z)
    expected = naive_vicreg(z, sim_coeff=2.0, std_coeff=3.0, cov_coeff=5.0, eps=1e-4)
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-10)
    for name in ("invariance", "variance", "covariance"):
        assert loss_fn.components[name].item() == pytest.approx(expected[name], rel=1e-10)
    assert expected["variance"] > 0  # the hinge is active in these cases


def test_vicreg_two_views_match_the_papers_terms() -> None:
    # K = 2: invariance is F.mse_loss(z_a, z_b); the variance term is the mean of the
    # paper's v(Z), v(Z'); the covariance term is the paper's sum c(Z) + c(Z').
    z = random_views(10, 2, 4, seed=5) * 0.3
    z_a, z_b = z[:, 0], z[:, 1]

    def v(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(1 - torch.sqrt(x.var(dim=0) + 1e-4)).mean()

    def c(x: torch.Tensor) -> torch.Tensor:
        cov = torch.cov(x.T)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / x.shape[1]

    expected = 25 * F.mse_loss(z_a, z_b) + 25 * (v(z_a) + v(z_b)) / 2 + (c(z_a) + c(z_b))
    torch.testing.assert_close(VICRegLoss()(z), expected)


# ---------------------------------------------------------------------------------------
# Shared properties
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("k", [2, 3])
def test_invariant_to_the_order_of_samples_and_views(name: str, k: int) -> None:
    z = random_views(6, k, 4, seed=k)
    loss_fn = ALL_LOSSES[name]()
    reference = loss_fn(z)
    samples = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    views = torch.arange(k).flip(0)
    torch.testing.assert_close(loss_fn(z[samples]), reference, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(loss_fn(z[:, views]), reference, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("collapsed", [False, True])
def test_gradient_is_finite(name: str, collapsed: bool) -> None:
    z = torch.ones(4, 3, 5) if collapsed else torch.randn(4, 3, 5)
    z.requires_grad_(True)
    loss = ALL_LOSSES[name]()(z)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradient_matches_finite_differences(name: str) -> None:
    z = random_views(4, 3, 3, seed=9).requires_grad_(True)
    loss_fn = ALL_LOSSES[name]()
    assert torch.autograd.gradcheck(loss_fn, (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_components_are_logged_and_terms_have_gradient(name: str) -> None:
    loss_fn = ALL_LOSSES[name]()
    z = torch.randn(8, 2, 6, requires_grad=True)
    loss = loss_fn(z)
    assert loss_fn.components["loss"].item() == pytest.approx(loss.item())
    assert all(not value.requires_grad for value in loss_fn.components.values())
    terms = loss_fn.terms(z)
    assert set(terms) == set(loss_fn.components)
    assert terms["loss"].requires_grad


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_low_precision_input_is_computed_in_float32(name: str) -> None:
    z = torch.randn(8, 2, 6)
    loss_fn = ALL_LOSSES[name]()
    low = loss_fn(z.to(torch.bfloat16))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, loss_fn(z.to(torch.bfloat16).float()))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_distributed_flag_is_a_no_op_without_a_process_group(name: str) -> None:
    z = torch.randn(6, 2, 4)
    cls = ALL_LOSSES[name]
    torch.testing.assert_close(cls(distributed=True)(z), cls(distributed=False)(z))


BAD_INPUTS = [
    (torch.randn(4, 8), r"shape \(B, K, D\)"),
    (torch.randn(4, 1, 8), r"at least K = 2 view"),
    (torch.randn(1, 2, 8), r"at least B = 2 samples"),
    (torch.ones(4, 2, 8, dtype=torch.long), r"floating-point"),
    (torch.tensor([[[1.0, float("nan")], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]), r"non-finite"),
    ([[[1.0, 0.0]]], r"torch.Tensor"),
]


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize(("z", "message"), BAD_INPUTS)
def test_bad_input_raises_a_sentence(name: str, z: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ALL_LOSSES[name]()(z)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SimCLRLoss(temperature=0.0), "temperature"),
        (lambda: SimCLRLoss(temperature=-0.5), "temperature"),
        (lambda: SimCLRLoss(temperature=float("nan")), "temperature"),
        (lambda: BarlowTwinsLoss(lambd=-1e-3), "lambd"),
        (lambda: BarlowTwinsLoss(scale=0.0), "scale"),
        (lambda: BarlowTwinsLoss(eps=-1.0), "eps"),
        (lambda: BarlowTwinsLoss(lambd=float("inf")), "lambd"),
        (lambda: VICRegLoss(sim_coeff=-1.0), "sim_coeff"),
        (lambda: VICRegLoss(std_coeff=-25.0), "std_coeff"),
        (lambda: VICRegLoss(cov_coeff=float("nan")), "cov_coeff"),
        (lambda: VICRegLoss(eps=0.0), "eps"),
    ],
)
def test_bad_hyper_parameters_raise(make: Callable[[], nn.Module], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_defaults_are_the_papers() -> None:
    assert SimCLRLoss().temperature == 0.5
    barlow = BarlowTwinsLoss()
    assert (barlow.lambd, barlow.scale) == (0.0051, 1.0)
    vicreg = VICRegLoss()
    assert (vicreg.sim_coeff, vicreg.std_coeff, vicreg.cov_coeff, vicreg.eps) == (
        25.0,
        25.0,
        2.0,
        1e-4,
    )
