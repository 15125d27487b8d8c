"""Scaling-law fits for the compute analyses (FLOP accounting: :mod:`mmcr.analysis.flops`).

Schaeffer et al. (2024), arXiv 2406.09366, fit how the MMCR pretraining loss falls with
compute (gradient steps S, batch size B, embedding dimension D, number of views K). This
module fits the two usual forms robustly:

- one variable (:func:`fit_power_law`):  L(C) = E + A C^(-alpha);
- several variables (:func:`fit_joint`), the additive form of Hoffmann et al. (2022,
  "Chinchilla"):  L(x) = E + sum_i A_i x_i^(-alpha_i).

Fitting follows Hoffmann et al. (2022): the residuals are taken in log space,

    rho_j = log(E + sum_i A_i x_ij^(-alpha_i)) - log L_j,

and the objective is the mean Huber loss of rho (quadratic within +-huber_delta, linear
beyond, so a few outlying runs cannot drag the fit). Parameters live on unconstrained
scales, E = exp(e), A_i = exp(a_i), alpha_i = exp(s_i), so E > 0, A_i > 0, alpha_i > 0
(E -> 0 is reached as e -> -infinity, bounded at 1e-12 min L). log of the prediction is a
log-sum-exp, evaluated stably. Each x_i is divided by its geometric mean before fitting
(better conditioning); the reported A_i are in the original units.

Starting points: a grid (or, for several variables, random draws) of alpha and E; for each,
the A that best matches the data in closed form; L-BFGS-B (scipy) then runs from the
``n_starts`` starts with the lowest objective and the best optimum is kept.

Uncertainty: a nonparametric bootstrap (resample the runs with replacement, refit) gives
percentile confidence intervals for every parameter and a band for the fitted curve.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

__all__ = [
    "JointFit",
    "PowerLawFit",
    "fit_joint",
    "fit_power_law",
    "holdout_error",
]

_ALPHA_BOUNDS = (1e-4, 10.0)
_LOG_A_BOUNDS = (-60.0, 60.0)


# --------------------------------------------------------------------------------------
# The additive power law in log space: shared by the one-variable and the joint fit.
# --------------------------------------------------------------------------------------


def _huber_objective(
    theta: np.ndarray, u: np.ndarray, y: np.ndarray, weights: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Weighted mean Huber loss (divided by delta) of log-space residuals, and its gradient.

    theta = [e, a_1..a_m, s_1..s_m]; u has shape (m, N) (log of the scaled variables);
    y = log L, shape (N,); weights, shape (N,), sum to 1.
    """
    m = u.shape[0]
    e, a, s = theta[0], theta[1 : 1 + m], theta[1 + m :]
    alpha = np.exp(s)
    terms = np.vstack([np.full(u.shape[1], e), a[:, None] - alpha[:, None] * u])  # (m+1, N)
    top = terms.max(axis=0)
    expo = np.exp(terms - top)
    total = expo.sum(axis=0)
    log_pred = top + np.log(total)
    share = expo / total  # d log_pred / d term
    rho = log_pred - y
    abs_rho = np.abs(rho)
    huber = np.where(abs_rho <= delta, 0.5 * rho**2, delta * (abs_rho - 0.5 * delta)) / delta
    value = float(weights @ huber)
    dloss = weights * np.clip(rho, -delta, delta) / delta  # (N,)
    grad = np.empty_like(theta)
    grad[0] = dloss @ share[0]
    grad[1 : 1 + m] = share[1:] @ dloss
    grad[1 + m :] = -alpha * ((share[1:] * u) @ dloss)
    return value, grad


def _batch_objective(
    thetas: np.ndarray, u: np.ndarray, y: np.ndarray, weights: np.ndarray, delta: float
) -> np.ndarray:
    """Objective of many parameter vectors at once, shape (S, 1+2m) -> (S,)."""
    m = u.shape[0]
    e, a, alpha = thetas[:, :1], thetas[:, 1 : 1 + m], np.exp(thetas[:, 1 + m :])
    terms = np.concatenate(
        [
            np.broadcast_to(e[:, :, None], (len(thetas), 1, u.shape[1])),
            a[:, :, None] - alpha[:, :, None] * u[None],
        ],
        axis=1,
    )
    log_pred = np.logaddexp.reduce(terms, axis=1)
    abs_rho = np.abs(log_pred - y[None])
    huber = np.where(abs_rho <= delta, 0.5 * abs_rho**2, delta * (abs_rho - 0.5 * delta)) / delta
    return np.asarray(huber @ weights)


def _closed_form_log_a(
    alpha: np.ndarray, e: np.ndarray, u: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Log amplitudes that make the start match the data: the m terms share L - E equally.

    alpha: (S, m); e: (S,). Returns a: (S, m).
    """
    m = u.shape[0]
    # Starts put E below min L (at most 0.98 min L), so every excess L - E is positive.
    log_share = np.log((np.exp(y)[None, :] - np.exp(e)[:, None]) / m)  # (S, N)
    # For term i alone: log((L - E) / m) = a_i - alpha_i u_i  ->  a_i = median over runs.
    a = np.empty_like(alpha)
    for i in range(m):
        a[:, i] = np.median(log_share + alpha[:, i : i + 1] * u[i][None, :], axis=1)
    return np.clip(a, *_LOG_A_BOUNDS)


def _candidate_starts(
    u: np.ndarray, y: np.ndarray, rng: np.random.Generator, grid: bool
) -> np.ndarray:
    """Candidate parameter vectors: alpha and E on a grid (m = 1) or random draws (m > 1).

    Returns an (S, 1 + 2m) array of [e, a_1..a_m, log alpha_1..log alpha_m].
    """
    m = u.shape[0]
    min_loss = float(np.exp(y.min()))
    fractions = np.array([1e-6, 0.1, 0.25, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98])
    if grid and m == 1:
        alphas = np.geomspace(0.02, 3.0, 16)
        aa, ff = np.meshgrid(alphas, fractions, indexing="ij")
        alpha = aa.reshape(-1, 1)
        e = np.log(ff.reshape(-1) * min_loss)
    else:
        count = 96 * m
        alpha = np.exp(rng.uniform(np.log(0.02), np.log(3.0), size=(count, m)))
        e = np.log(rng.choice(fractions, size=count) * min_loss)
    a = _closed_form_log_a(alpha, e, u, y)
    return np.column_stack([e, a, np.log(alpha)])


def _bounds(u: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    m = u.shape[0]
    e_low = math.log(1e-12 * float(np.exp(y.min())))
    e_high = float(y.max()) + 1.0
    s_bounds = (math.log(_ALPHA_BOUNDS[0]), math.log(_ALPHA_BOUNDS[1]))
    return [(e_low, e_high)] + [_LOG_A_BOUNDS] * m + [s_bounds] * m


def _minimise(
    starts: np.ndarray, u: np.ndarray, y: np.ndarray, weights: np.ndarray, delta: float
) -> tuple[np.ndarray, float]:
    """L-BFGS-B from each start; the best optimum (parameters, objective)."""
    bounds = _bounds(u, y)
    low = np.array([b[0] for b in bounds])
    high = np.array([b[1] for b in bounds])
    best_theta, best_value = starts[0], math.inf
    for start in starts:
        result = optimize.minimize(
            _huber_objective,
            np.clip(start, low, high),
            args=(u, y, weights, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
        )
        if np.isfinite(result.fun) and result.fun < best_value:
            best_theta, best_value = np.asarray(result.x), float(result.fun)
    return best_theta, best_value


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS single-threaded: L-BFGS-B on a handful of parameters calls BLAS on tiny
    vectors, and a multi-threaded BLAS on busy cores made each call ~50x slower (measured
    with scipy 1.17 on 2 shared cores). threadpoolctl comes with scikit-learn; without it
    nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fit_additive(
    u: np.ndarray,
    y: np.ndarray,
    n_starts: int,
    huber_delta: float,
    bootstrap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Fit theta on all points and on ``bootstrap`` resamples; returns (theta, value, boots)."""
    with _single_threaded_blas():
        return _fit_additive_unthreaded(u, y, n_starts, huber_delta, bootstrap, rng)


def _fit_additive_unthreaded(
    u: np.ndarray,
    y: np.ndarray,
    n_starts: int,
    huber_delta: float,
    bootstrap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, np.ndarray]:
    n = y.shape[0]
    uniform = np.full(n, 1.0 / n)
    candidates = _candidate_starts(u, y, rng, grid=u.shape[0] == 1)
    order = np.argsort(_batch_objective(candidates, u, y, uniform, huber_delta))
    theta, value = _minimise(candidates[order[:n_starts]], u, y, uniform, huber_delta)
    boots = np.empty((bootstrap, theta.shape[0]))
    for b in range(bootstrap):
        weights = rng.multinomial(n, uniform) / n
        scores = _batch_objective(candidates, u, y, weights, huber_delta)
        # Restart from the full-data optimum and from the best candidate for this resample.
        starts = np.vstack([theta, candidates[np.argmin(scores)]])
        boots[b], _ = _minimise(starts, u, y, weights, huber_delta)
    return theta, value, boots


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    if samples.size == 0:
        return (math.nan, math.nan)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return (float(low), float(high))


def _as_positive_vector(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {array.shape}.")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must hold finite, positive values.")
    return array


def _check_fit_options(
    n_starts: int, huber_delta: float, bootstrap: int, confidence: float
) -> None:
    if n_starts < 1:
        raise ValueError(f"n_starts must be at least 1; got {n_starts}.")
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be positive; got {huber_delta}.")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be a non-negative number of resamples; got {bootstrap}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")


# --------------------------------------------------------------------------------------
# One variable: L(C) = E + A C^(-alpha).
# --------------------------------------------------------------------------------------


@dataclass
class PowerLawFit:
    """Result of :func:`fit_power_law`: L(C) = E + A C^(-alpha).

    Attributes:
        E, A, alpha: the best-fit irreducible loss, amplitude (original units of C) and
            exponent.
        ci: percentile bootstrap intervals, {"E": (lo, hi), "A": ..., "alpha": ...}; NaN
            when ``bootstrap=0``.
        bootstrap_params: (n_bootstrap, 3) array of refits, columns E, A, alpha.
        objective: mean Huber loss (divided by huber_delta) of the log residuals at the fit.
        n_points, huber_delta, confidence: the fit's data size and settings.
    """

    E: float
    A: float
    alpha: float
    ci: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray
    objective: float
    n_points: int
    huber_delta: float
    confidence: float

    @property
    def params(self) -> dict[str, float]:
        """{"E": E, "A": A, "alpha": alpha}."""
        return {"E": self.E, "A": self.A, "alpha": self.alpha}

    def predict(self, compute: ArrayLike) -> np.ndarray:
        """L(C) = E + A C^(-alpha) at the given compute values (same units as the fit)."""
        c = np.asarray(compute, dtype=np.float64)
        return np.asarray(self.E + self.A * c ** (-self.alpha))

    def predict_interval(
        self, compute: ArrayLike, confidence: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at ``compute`` (low, high).

        Raises:
            ValueError: if the fit was made without bootstrap resamples.
        """
        if self.bootstrap_params.shape[0] == 0:
            raise ValueError("This fit has no bootstrap resamples; refit with bootstrap > 0.")
        level = self.confidence if confidence is None else confidence
        c = np.asarray(compute, dtype=np.float64)
        boots = self.bootstrap_params
        curves = boots[:, :1] + boots[:, 1:2] * c.reshape(1, -1) ** (-boots[:, 2:3])
        tail = 50.0 * (1.0 - level)
        low, high = np.percentile(curves, [tail, 100.0 - tail], axis=0)
        return low.reshape(c.shape), high.reshape(c.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no bootstrap samples)."""
        return {
            "form": "L = E + A * C**(-alpha)",
            **self.params,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "confidence": self.confidence,
            "objective": self.objective,
            "n_points": self.n_points,
            "huber_delta": self.huber_delta,
            "n_bootstrap": int(self.bootstrap_params.shape[0]),
        }


def fit_power_law(
    compute: ArrayLike,
    loss: ArrayLike,
    *,
    n_starts: int = 8,
    huber_delta: float = 1e-3,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> PowerLawFit:
    """Fit L(C) = E + A C^(-alpha) robustly in log space, with bootstrap intervals.

    Minimises mean_j Huber_delta(log(E + A C_j^(-alpha)) - log L_j) over E >= 0, A > 0,
    alpha > 0 (see the module docstring), from the ``n_starts`` best points of a grid over
    alpha in [0.02, 3] and E in [0, 0.98 min L].

    Args:
        compute: (N,) positive compute values (FLOPs, steps, ...), N >= 3, at least two
            distinct values.
        loss: (N,) positive losses. For MMCR, whose loss -||C||_* is negative, fit a
            positive quantity such as the pretraining percent error.
        n_starts: number of L-BFGS-B runs on the full data.
        huber_delta: Huber threshold on log residuals (1e-3 as in Hoffmann et al. 2022:
            nearly an L1 fit, robust to outlying runs).
        bootstrap: number of resample-and-refit rounds for the intervals (0 skips them).
        confidence: level of the percentile intervals.
        seed: seeds the bootstrap resampling.

    Returns:
        A :class:`PowerLawFit`.

    Example:
        >>> import numpy as np
        >>> c = np.geomspace(1e2, 1e8, 20)
        >>> fit = fit_power_law(c, 0.5 + 3.0 * c**-0.3, bootstrap=0)
        >>> round(fit.alpha, 3)
        0.3
    """
    c = _as_positive_vector("compute", compute)
    y_loss = _as_positive_vector("loss", loss)
    if c.shape != y_loss.shape:
        raise ValueError(f"compute and loss differ in length: {c.shape[0]} vs {y_loss.shape[0]}.")
    if c.shape[0] < 3:
        raise ValueError(f"Fitting E, A and alpha needs at least 3 points; got {c.shape[0]}.")
    if np.unique(c).shape[0] < 2:
        raise ValueError("compute takes a single value; a power law in it cannot be fitted.")
    _check_fit_options(n_starts, huber_delta, bootstrap, confidence)

    log_ref = float(np.mean(np.log(c)))
    u = (np.log(c) - log_ref)[None, :]
    y = np.log(y_loss)
    rng = np.random.default_rng(seed)
    theta, value, boots = _fit_additive(u, y, n_starts, huber_delta, bootstrap, rng)

    def to_params(t: np.ndarray) -> np.ndarray:
        # A C^-alpha = exp(a) (C / C_ref)^-alpha  ->  A = exp(a + alpha log C_ref).
        t2 = np.atleast_2d(t)
        alpha = np.exp(t2[:, 2])
        return np.column_stack([np.exp(t2[:, 0]), np.exp(t2[:, 1] + alpha * log_ref), alpha])

    best = to_params(theta)[0]
    boot_params = to_params(boots) if bootstrap else np.empty((0, 3))
    ci = {
        name: _percentile_ci(boot_params[:, i], confidence)
        for i, name in enumerate(("E", "A", "alpha"))
    }
    return PowerLawFit(
        E=float(best[0]),
        A=float(best[1]),
        alpha=float(best[2]),
        ci=ci,
        bootstrap_params=boot_params,
        objective=value,
        n_points=int(c.shape[0]),
        huber_delta=huber_delta,
        confidence=confidence,
    )


# --------------------------------------------------------------------------------------
# Several variables: L = E + sum_i A_i x_i^(-alpha_i).
# --------------------------------------------------------------------------------------


@dataclass
class JointFit:
    """Result of :func:`fit_joint`: L = E + sum_i A_i x_i^(-alpha_i).

    Attributes:
        names: the variable names, in fitting order.
        E: irreducible loss; A, alpha: per-variable amplitude (original units) and exponent.
        ci: percentile bootstrap intervals keyed "E", "A_<name>", "alpha_<name>".
        bootstrap_params: (n_bootstrap, 1 + 2m), columns E, A_<names...>, alpha_<names...>.
        objective, n_points, huber_delta, confidence: as in :class:`PowerLawFit`.
    """

    names: tuple[str, ...]
    E: float
    A: dict[str, float]
    alpha: dict[str, float]
    ci: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray
    objective: float
    n_points: int
    huber_delta: float
    confidence: float

    @property
    def params(self) -> dict[str, float]:
        """Flat {"E", "A_<name>", "alpha_<name>"} dict of the best fit."""
        flat = {"E": self.E}
        flat.update({f"A_{n}": self.A[n] for n in self.names})
        flat.update({f"alpha_{n}": self.alpha[n] for n in self.names})
        return flat

    def predict(self, variables: Mapping[str, ArrayLike]) -> np.ndarray:
        """L at the given values of every fitted variable (arrays broadcast together)."""
        missing = [n for n in self.names if n not in variables]
        if missing:
            raise ValueError(f"predict needs values for the fitted variables {missing}.")
        total: np.ndarray = np.asarray(self.E, dtype=np.float64)
        for n in self.names:
            x = np.asarray(variables[n], dtype=np.float64)
            total = total + self.A[n] * x ** (-self.alpha[n])
        return np.asarray(total)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no bootstrap samples)."""
        return {
            "form": "L = E + sum_i A_i * x_i**(-alpha_i)",
            "variables": list(self.names),
            **self.params,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "confidence": self.confidence,
            "objective": self.objective,
            "n_points": self.n_points,
            "huber_delta": self.huber_delta,
            "n_bootstrap": int(self.bootstrap_params.shape[0]),
        }


def fit_joint(
    variables: Mapping[str, ArrayLike],
    loss: ArrayLike,
    *,
    n_starts: int = 8,
    huber_delta: float = 1e-3,
    bootstrap: int = 100,
    confidence: float = 0.95,
    seed: int = 0,
) -> JointFit:
    """Fit the additive (Chinchilla-style) law L = E + sum_i A_i x_i^(-alpha_i).

    Same robust log-space Huber fit as :func:`fit_power_law`; starts are drawn at random
    (alpha_i log-uniform in [0.02, 3], E a fraction of min L) and the ``n_starts`` best are
    refined with L-BFGS-B.

    Args:
        variables: name -> (N,) positive values, e.g. {"steps": S, "batch": B, "dim": D,
            "views": K}. Every variable must take at least two distinct values, otherwise
            its term cannot be told apart from E.
        loss: (N,) positive losses; N >= 1 + 2m for m variables.
        n_starts, huber_delta, bootstrap, confidence, seed: as in :func:`fit_power_law`.

    Returns:
        A :class:`JointFit`.
    """
    if not variables:
        raise ValueError("variables must name at least one variable.")
    y_loss = _as_positive_vector("loss", loss)
    names = tuple(variables)
    columns = []
    for name in names:
        x = _as_positive_vector(f"variable {name!r}", variables[name])
        if x.shape != y_loss.shape:
            raise ValueError(
                f"variable {name!r} has {x.shape[0]} values but loss has {y_loss.shape[0]}."
            )
        if np.unique(x).shape[0] < 2:
            raise ValueError(
                f"variable {name!r} takes a single value; its term cannot be separated from E."
            )
        columns.append(np.log(x))
    m = len(names)
    if y_loss.shape[0] < 1 + 2 * m:
        raise ValueError(
            f"Fitting {1 + 2 * m} parameters needs at least as many points; got {y_loss.shape[0]}."
        )
    _check_fit_options(n_starts, huber_delta, bootstrap, confidence)

    log_x = np.vstack(columns)
    log_ref = log_x.mean(axis=1)
    u = log_x - log_ref[:, None]
    y = np.log(y_loss)
    rng = np.random.default_rng(seed)
    theta, value, boots = _fit_additive(u, y, n_starts, huber_delta, bootstrap, rng)

    def to_params(t: np.ndarray) -> np.ndarray:
        t2 = np.atleast_2d(t)
        alpha = np.exp(t2[:, 1 + m :])
        amplitude = np.exp(t2[:, 1 : 1 + m] + alpha * log_ref[None, :])
        return np.column_stack([np.exp(t2[:, 0]), amplitude, alpha])

    best = to_params(theta)[0]
    boot_params = to_params(boots) if bootstrap else np.empty((0, 1 + 2 * m))
    keys = ["E"] + [f"A_{n}" for n in names] + [f"alpha_{n}" for n in names]
    ci = {key: _percentile_ci(boot_params[:, i], confidence) for i, key in enumerate(keys)}
    return JointFit(
        names=names,
        E=float(best[0]),
        A={n: float(best[1 + i]) for i, n in enumerate(names)},
        alpha={n: float(best[1 + m + i]) for i, n in enumerate(names)},
        ci=ci,
        bootstrap_params=boot_params,
        objective=value,
        n_points=int(y.shape[0]),
        huber_delta=huber_delta,
        confidence=confidence,
    )


# --------------------------------------------------------------------------------------
# Extrapolation check.
# --------------------------------------------------------------------------------------


class _Predictor(Protocol):
    def predict(self, x: Any) -> np.ndarray: ...


def holdout_error(
    x: ArrayLike | Mapping[str, ArrayLike],
    y: ArrayLike,
    fit_fn: Callable[[Any, np.ndarray], _Predictor] | None = None,
    frac_largest: float = 0.2,
    order_by: ArrayLike | None = None,
) -> dict[str, Any]:
    """Fit on the smaller-compute runs and measure how well the fit extrapolates.

    The ceil(frac_largest * N) runs with the largest ``order_by`` (default: ``x`` itself)
    are held out; ``fit_fn`` is fitted on the rest and predicts the held-out losses.

    Args:
        x: (N,) compute values, or a mapping name -> (N,) for a joint fit (then
            ``order_by`` is required, e.g. the total FLOPs of each run).
        y: (N,) observed losses.
        fit_fn: callable(x_train, y_train) -> object with ``predict(x)``; by default
            :func:`fit_power_law` (or :func:`fit_joint` for a mapping) without bootstrap.
        frac_largest: fraction of runs held out, in (0, 1); at least one run is held out.
        order_by: (N,) quantity that defines "largest".

    Returns:
        {"holdout_mask": (N,) bool, "predicted", "observed", "relative_error" (signed,
        (predicted - observed) / observed, for the held-out runs),
        "mean_abs_relative_error", "max_abs_relative_error", "fit"}.
    """
    observed_all = np.asarray(y, dtype=np.float64).reshape(-1)
    n = observed_all.shape[0]
    if not 0.0 < frac_largest < 1.0:
        raise ValueError(f"frac_largest must lie in (0, 1); got {frac_largest}.")
    if isinstance(x, Mapping):
        if order_by is None:
            raise ValueError("With several variables, pass order_by (e.g. FLOPs per run).")
        columns = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in x.items()}
        if any(c.shape[0] != n for c in columns.values()):
            raise ValueError("Every variable must have one value per run, like y.")
        ranking = np.asarray(order_by, dtype=np.float64).reshape(-1)
    else:
        values = np.asarray(x, dtype=np.float64).reshape(-1)
        if values.shape[0] != n:
            raise ValueError(f"x and y differ in length: {values.shape[0]} vs {n}.")
        ranking = values if order_by is None else np.asarray(order_by, np.float64).reshape(-1)
    if ranking.shape[0] != n:
        raise ValueError(f"order_by must have one value per run ({n}); got {ranking.shape[0]}.")
    n_hold = max(1, math.ceil(frac_largest * n))
    if n - n_hold < 3:
        raise ValueError(f"Holding out {n_hold} of {n} runs leaves too few to fit.")
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(ranking, kind="stable")[n - n_hold :]] = True

    def subset(selector: np.ndarray) -> Any:
        if isinstance(x, Mapping):
            return {k: v[selector] for k, v in columns.items()}
        return values[selector]

    fit: _Predictor
    if fit_fn is None:
        if isinstance(x, Mapping):
            fit = fit_joint(subset(~mask), observed_all[~mask], bootstrap=0)
        else:
            fit = fit_power_law(subset(~mask), observed_all[~mask], bootstrap=0)
    else:
        fit = fit_fn(subset(~mask), observed_all[~mask])
    predicted = np.asarray(fit.predict(subset(mask)), dtype=np.float64)
    observed = observed_all[mask]
    relative = (predicted - observed) / observed
    return {
        "holdout_mask": mask,
        "predicted": predicted,
        "observed": observed,
        "relative_error": relative,
        "mean_abs_relative_error": float(np.mean(np.abs(relative))),
        "max_abs_relative_error": float(np.max(np.abs(relative))),
        "fit": fit,
    }
