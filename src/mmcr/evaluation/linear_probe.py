"""Linear probe: multinomial logistic regression on frozen, standardised features.

The protocol: standardise features with the training split's mean and standard
deviation, fit an L2-regularised softmax classifier by full-batch L-BFGS (the problem
is convex, so the result does not depend on a learning rate or a batch order), choose
the L2 weight on the validation split, refit on train + validation with it, and report
the test accuracy once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LinearProbe:
    """A fitted probe: ``logits = ((x - mean) / std) @ weight.T + bias``."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std) @ self.weight.T + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.logits(x).argmax(1) == y).float().mean())


def fit_linear_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    weight_decay: float,
    max_iter: int = 200,
    init: LinearProbe | None = None,
) -> LinearProbe:
    """Fit ``softmax(W x + b)`` minimising cross-entropy + ``weight_decay/2 ||W||^2`` by L-BFGS.

    ``init`` (a probe fitted on the same features, e.g. with another L2 weight) is a warm
    start; the problem is convex, so it changes the cost, not the optimum.
    """
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need features (N, F) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    x = x.float()
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    if init is not None:
        # express the warm start in this standardisation: W' = W diag(std / std_init) ...
        scale = std / init.std
        w0 = init.weight * scale
        b0 = init.bias + init.weight @ ((mean - init.mean) / init.std)
    else:
        w0, b0 = torch.zeros(num_classes, x.shape[1]), torch.zeros(num_classes)
    weight = w0.clone().requires_grad_(True)
    bias = b0.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-5,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xs @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbe(weight.detach(), bias.detach(), mean, std)


@dataclass
class ProbeResult:
    """The selected L2 weight, its validation accuracy, the final test accuracy, the grid."""

    weight_decay: float
    val_accuracy: float
    test_accuracy: float
    grid: list[dict[str, float]]


PROBE_WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""The default L2 grid of the probe (chosen on the validation split)."""


def evaluate_linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    *,
    weight_decays: Sequence[float] = PROBE_WEIGHT_DECAYS,
    max_iter: int = 200,
    selection_size: int | None = 20000,
    seed: int = 0,
) -> ProbeResult:
    """Choose the L2 weight on ``val``, refit on train + val, report accuracy on ``test``.

    The L2 grid is fitted on at most ``selection_size`` training samples (a seeded random
    subset; ``None`` uses all), which keeps the search cheap on large training sets; the
    final probe is fitted on all of train + val, warm-started from the selected one.
    """
    if selection_size is not None and train[0].shape[0] > selection_size:
        pick = torch.randperm(train[0].shape[0], generator=torch.Generator().manual_seed(seed))[
            :selection_size
        ]
        search = (train[0][pick], train[1][pick])
    else:
        search = train
    grid = []
    best: tuple[float, float, LinearProbe] | None = None
    previous: LinearProbe | None = None
    # strongest L2 first: each fit warm-starts the next, weaker one
    for wd in sorted(weight_decays, reverse=True):
        probe = fit_linear_probe(*search, num_classes, weight_decay=wd, max_iter=max_iter, init=previous)
        previous = probe
        acc = probe.accuracy(*val)
        grid.append({"weight_decay": wd, "val_accuracy": acc})
        if best is None or acc > best[0]:
            best = (acc, wd, probe)
    assert best is not None
    grid.sort(key=lambda g: g["weight_decay"])
    final = fit_linear_probe(
        torch.cat([train[0], val[0]]),
        torch.cat([train[1], val[1]]),
        num_classes,
        weight_decay=best[1],
        max_iter=max_iter,
        init=best[2],
    )
    return ProbeResult(
        weight_decay=best[1], val_accuracy=best[0], test_accuracy=final.accuracy(*test), grid=grid
    )
