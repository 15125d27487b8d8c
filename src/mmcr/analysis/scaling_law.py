"""Scaling laws that predict the pretraining percent error (PPE) of an MMCR run.

Schaeffer et al. (2024), arXiv 2406.09366, claim compute scaling laws that predict the
pretraining loss from the gradient steps S, the batch size B, the embedding dimension D and
the number of views K. This module holds the laws and their fits; a designed study that
trains them lives in :mod:`mmcr.experiments.scaling_predict`.

No training can bring the PPE below that of perfectly aligned, uniform embeddings at the
same (B, D): the "ideal floor" f(B, D) (:func:`ideal_floor`, the Monte Carlo of
:func:`~mmcr.analysis.theory.ppe_uniform_monte_carlo`). So the main forms fit the excess
over it as a product of powers,

    PPE = f(B, D) + A S^-alpha B^-beta D^-delta K^-gamma,

which is linear in log space, ``log(PPE - f) = log A - alpha log S - ...``, and is fitted by
ordinary least squares. The alternatives (:data:`FORMS`) replace S by a compute (sample-views
B K S, or FLOPs); let the prefactor and some or all exponents differ on the two sides of the
P = D ridge (where the PPE's normaliser sqrt(P min(P, D)) changes form, so the two sides
need not share one law); read B and D through their ratio max/min alone; drop the floor (a
pure power law in the PPE); or fit a constant floor E instead of the ideal one (nonlinear
least squares in log space). Which form to trust is decided by hold-out error, never by the
fit's own residuals.

Uncertainty: a cluster bootstrap resamples the fit's groups (by default one group per
(cell, seed) series, so the runs of one training curve move together) and refits. The
percentiles of a prediction over the replicates give the interval of the mean PPE; adding
the fit's residual scatter (log space) gives the interval of one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from mmcr.analysis.theory import ppe_marchenko_pastur, ppe_uniform_monte_carlo

__all__ = [
    "FORMS",
    "LawFit",
    "LawForm",
    "fit_law",
    "ideal_floor",
    "relative_errors",
    "steps_to_reach",
]

#: Variables a law reads from a run (arrays of equal length); ``floor`` is f(B, D).
RUN_VARIABLES = ("steps", "batch_size", "projector_dim", "num_views", "sample_views", "flops")

# Regressors: name -> (label of its exponent, function of the variables). A law's log excess is
# log A + sum_j c_j x_j with x_j = log(variable); the exponent reported is -c_j.
_Vars = Mapping[str, np.ndarray]


def _log(name: str) -> Callable[[_Vars], np.ndarray]:
    return lambda v: np.log(np.asarray(v[name], dtype=np.float64))


def _side(v: _Vars) -> np.ndarray:
    """1 where the batch is below the dimension (B < D), else 0."""
    return (np.asarray(v["batch_size"]) < np.asarray(v["projector_dim"])).astype(np.float64)


_REGRESSORS: dict[str, tuple[str, Callable[[_Vars], np.ndarray]]] = {
    "S": ("alpha (steps)", _log("steps")),
    "B": ("beta (batch size)", _log("batch_size")),
    "D": ("delta (dimension)", _log("projector_dim")),
    "K": ("gamma (views)", _log("num_views")),
    "C": ("alpha (sample-views B K S)", _log("sample_views")),
    "F": ("alpha (FLOPs)", _log("flops")),
    "side": ("log A shift where B < D (not an exponent)", _side),
    "side_B": ("beta shift where B < D", lambda v: _side(v) * np.log(np.asarray(v["batch_size"], float))),
    "side_D": (
        "delta shift where B < D",
        lambda v: _side(v) * np.log(np.asarray(v["projector_dim"], float)),
    ),
    "side_S": ("alpha shift where B < D", lambda v: _side(v) * np.log(np.asarray(v["steps"], float))),
    "side_K": ("gamma shift where B < D", lambda v: _side(v) * np.log(np.asarray(v["num_views"], float))),
    "S2": (
        "curvature in log S (not an exponent: log excess gains -c (log S)^2)",
        lambda v: np.log(np.asarray(v["steps"], float)) ** 2,
    ),
    "R": ("eta (ratio max(B, D) / min(B, D))", lambda v: _log_ratio(v)),
    "side_R": ("eta shift where B < D", lambda v: _side(v) * _log_ratio(v)),
}


def _log_ratio(v: _Vars) -> np.ndarray:
    b = np.asarray(v["batch_size"], dtype=np.float64)
    d = np.asarray(v["projector_dim"], dtype=np.float64)
    return np.log(np.maximum(b, d) / np.minimum(b, d))


@dataclass(frozen=True)
class LawForm:
    """One functional form of the law.

    Attributes:
        name: its key in :data:`FORMS`.
        formula: the law in words, for reports.
        floor: ``"ideal"`` (f(B, D) subtracted), ``"none"`` (a pure power law in the PPE) or
            ``"fitted"`` (a constant E fitted with the rest).
        regressors: keys of the log-space regressors, in order.
    """

    name: str
    formula: str
    floor: str
    regressors: tuple[str, ...]


FORMS: dict[str, LawForm] = {
    form.name: form
    for form in (
        LawForm(
            "excess_steps",
            "PPE = f(B,D) + A S^-alpha B^-beta D^-delta K^-gamma",
            "ideal",
            ("S", "B", "D", "K"),
        ),
        LawForm(
            "excess_steps_sided",
            "PPE = f(B,D) + A_s S^-alpha B^-beta_s D^-delta_s K^-gamma, A, beta, delta per side of B = D",
            "ideal",
            ("S", "B", "D", "K", "side", "side_B", "side_D"),
        ),
        LawForm(
            "excess_sided_steps",
            "PPE = f(B,D) + A_s S^-alpha_s B^-beta_s D^-delta_s K^-gamma: all but gamma per side of B = D",
            "ideal",
            ("S", "B", "D", "K", "side", "side_S", "side_B", "side_D"),
        ),
        LawForm(
            "excess_per_side",
            "PPE = f(B,D) + A_s S^-alpha_s B^-beta_s D^-delta_s K^-gamma_s: one law per side of B = D",
            "ideal",
            ("S", "B", "D", "K", "side", "side_S", "side_B", "side_D", "side_K"),
        ),
        LawForm(
            "excess_per_side_curved",
            "log(PPE - f(B,D)) = log A_s - alpha_s log S - c (log S)^2 - beta_s log B - delta_s log D "
            "- gamma_s log K: one law per side, bending in log S",
            "ideal",
            ("S", "B", "D", "K", "side", "side_S", "side_B", "side_D", "side_K", "S2"),
        ),
        LawForm(
            "excess_ratio_sided",
            "PPE = f(B,D) + A_s S^-alpha_s r^-eta_s K^-gamma_s, r = max(B,D)/min(B,D), per side of B = D",
            "ideal",
            ("S", "R", "K", "side", "side_S", "side_R", "side_K"),
        ),
        LawForm(
            "excess_sample_views",
            "PPE = f(B,D) + A (B K S)^-alpha D^-delta",
            "ideal",
            ("C", "D"),
        ),
        LawForm("excess_flops", "PPE = f(B,D) + A FLOPs^-alpha D^-delta", "ideal", ("F", "D")),
        LawForm(
            "power_no_floor",
            "PPE = A S^-alpha B^-beta D^-delta K^-gamma (no floor)",
            "none",
            ("S", "B", "D", "K"),
        ),
        LawForm(
            "fitted_floor",
            "PPE = E + A S^-alpha B^-beta D^-delta K^-gamma (E fitted)",
            "fitted",
            ("S", "B", "D", "K"),
        ),
    )
}


def ideal_floor(batch_size: int, projector_dim: int, trials: int = 64, seed: int = 0) -> float:
    """f(B, D): the mean PPE of B i.i.d. uniform unit centroids in D dimensions.

    Monte Carlo (``trials`` draws) up to B D = 4M entries a draw; beyond, the
    Marchenko-Pastur limit, which the Monte Carlo approaches within a few percent from B,
    D >= 64.
    """
    if batch_size < 1 or projector_dim < 1:
        raise ValueError(f"the floor needs B, D >= 1; got B = {batch_size}, D = {projector_dim}.")
    if batch_size * projector_dim > 4_000_000:
        return ppe_marchenko_pastur(batch_size, projector_dim)
    return float(ppe_uniform_monte_carlo(batch_size, projector_dim, trials=trials, seed=seed)["mean"])


def _design(form: LawForm, variables: _Vars) -> np.ndarray:
    n = len(np.asarray(variables["steps"]))
    columns = [np.ones(n)] + [_REGRESSORS[r][1](variables) for r in form.regressors]
    return np.stack(columns, axis=1)


def _check_variables(form: LawForm, variables: _Vars, floor: np.ndarray | None) -> int:
    needed = {"steps", "batch_size", "projector_dim", "num_views"}
    needed |= {"sample_views"} if "C" in form.regressors else set()
    needed |= {"flops"} if "F" in form.regressors else set()
    missing = sorted(needed - set(variables))
    if missing:
        raise ValueError(f"law {form.name} needs the variable(s) {', '.join(missing)}.")
    n = len(np.asarray(variables["steps"]))
    for name in needed:
        values = np.asarray(variables[name], dtype=np.float64)
        if values.shape != (n,):
            raise ValueError(f"variable {name} has shape {values.shape}; expected ({n},).")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"variable {name} must be finite and positive.")
    if form.floor == "ideal":
        if floor is None or np.asarray(floor).shape != (n,):
            raise ValueError(f"law {form.name} needs the ideal floor f(B, D) of every point.")
    return n


@dataclass
class LawFit:
    """A fitted law: ``predict`` gives the PPE, ``interval`` its bootstrap interval.

    Attributes:
        form: the form fitted.
        coef: log-space coefficients: ``[log A, c_1, ...]`` (exponents are ``-c_j``).
        log_floor: log E for the ``"fitted"`` floor, else None.
        residual_std: standard deviation of the fit's log residuals (of the excess, or of
            the PPE without a floor): the scatter of one run around the law.
        n_runs: runs fitted.
        boot_coef: bootstrap replicates of ``coef`` (rows); ``boot_log_floor`` of log E.
    """

    form: LawForm
    coef: np.ndarray
    log_floor: float | None
    residual_std: float
    n_runs: int
    boot_coef: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    boot_log_floor: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _excess(self, coef: np.ndarray, variables: _Vars) -> np.ndarray:
        return np.exp(_design(self.form, variables) @ coef)

    def _total(self, coef: np.ndarray, log_floor: float | None, variables: _Vars, floor: Any) -> np.ndarray:
        excess = self._excess(coef, variables)
        if self.form.floor == "ideal":
            return np.asarray(floor, dtype=np.float64) + excess
        if self.form.floor == "fitted":
            return math.exp(log_floor if log_floor is not None else -math.inf) + excess
        return excess

    def predict(self, variables: _Vars, floor: np.ndarray | None = None) -> np.ndarray:
        """The predicted PPE at each point (``floor`` = f(B, D), for the ideal-floor forms)."""
        _check_variables(self.form, variables, floor)
        return self._total(self.coef, self.log_floor, variables, floor)

    def floor_of(self, floor: np.ndarray | None, n: int) -> np.ndarray:
        """The floor the law puts under each of ``n`` points (zeros without one)."""
        if self.form.floor == "ideal":
            return np.asarray(floor, dtype=np.float64)
        if self.form.floor == "fitted" and self.log_floor is not None:
            return np.full(n, math.exp(self.log_floor))
        return np.zeros(n)

    def replicates(self, variables: _Vars, floor: np.ndarray | None = None) -> np.ndarray:
        """Predictions of every bootstrap replicate: (replicates, points)."""
        _check_variables(self.form, variables, floor)
        rows = []
        for b in range(len(self.boot_coef)):
            log_floor = float(self.boot_log_floor[b]) if self.form.floor == "fitted" else None
            rows.append(self._total(self.boot_coef[b], log_floor, variables, floor))
        n = len(np.asarray(variables["steps"]))
        return np.asarray(rows).reshape(len(rows), n)

    def interval(
        self,
        variables: _Vars,
        floor: np.ndarray | None = None,
        confidence: float = 0.95,
        one_run: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the PPE at each point: of the mean (``one_run=False``) or
        of one run (the bootstrap's spread of the law widened by the residual scatter of the
        excess in log space)."""
        reps = self.replicates(variables, floor)
        if len(reps) == 0:
            raise ValueError("the law was fitted without a bootstrap; no interval can be given.")
        n = reps.shape[1]
        base = self.floor_of(floor, n)
        excess = np.maximum(reps - base, 1e-300)
        z = float(np.sqrt(2.0) * _erfinv(confidence)) if one_run else 0.0
        lo_q, hi_q = 50 * (1 - confidence), 50 * (1 + confidence)
        log_lo = np.percentile(np.log(excess), lo_q, axis=0)
        log_hi = np.percentile(np.log(excess), hi_q, axis=0)
        spread = z * self.residual_std
        return base + np.exp(log_lo - spread), base + np.exp(log_hi + spread)

    def exponents(self, confidence: float = 0.95) -> dict[str, dict[str, Any]]:
        """Each regressor's exponent (``-c_j``; the shifts and log A as they are), with CIs."""
        out: dict[str, dict[str, Any]] = {}
        names = ["log A", *self.form.regressors]
        for j, name in enumerate(names):
            sign = 1.0 if name in ("log A", "side") else -1.0
            label = "log A" if name == "log A" else _REGRESSORS[name][0]
            entry: dict[str, Any] = {"value": sign * float(self.coef[j]), "label": label}
            if len(self.boot_coef):
                lo, hi = np.percentile(
                    sign * self.boot_coef[:, j], [50 * (1 - confidence), 50 * (1 + confidence)]
                )
                entry.update(ci_low=float(lo), ci_high=float(hi))
            out[name] = entry
        # the exponents below the ridge: the base exponent plus its shift, CIs from the replicates
        regs = list(self.form.regressors)
        for name in regs:
            if name.startswith("side_") and name[5:] in regs:
                i, j = 1 + regs.index(name[5:]), 1 + regs.index(name)
                base = out[name[5:]]
                if not str(base["label"]).endswith("where B > D"):
                    base["label"] = f"{base['label']} where B > D"
                entry = {
                    "value": -float(self.coef[i] + self.coef[j]),
                    "label": str(base["label"]).replace("where B > D", "where B < D"),
                }
                if len(self.boot_coef):
                    lo, hi = np.percentile(
                        -(self.boot_coef[:, i] + self.boot_coef[:, j]),
                        [50 * (1 - confidence), 50 * (1 + confidence)],
                    )
                    entry.update(ci_low=float(lo), ci_high=float(hi))
                out[f"{name[5:]}_below"] = entry
        if self.log_floor is not None:
            entry = {"value": math.exp(self.log_floor), "label": "E (fitted floor)"}
            if len(self.boot_log_floor):
                lo, hi = np.percentile(
                    np.exp(self.boot_log_floor), [50 * (1 - confidence), 50 * (1 + confidence)]
                )
                entry.update(ci_low=float(lo), ci_high=float(hi))
            out["E"] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form.name,
            "formula": self.form.formula,
            "floor": self.form.floor,
            "regressors": list(self.form.regressors),
            "coef": self.coef.tolist(),
            "log_floor": self.log_floor,
            "residual_std": self.residual_std,
            "n_runs": self.n_runs,
            "exponents": self.exponents(),
            "boot_coef": self.boot_coef.tolist(),
            "boot_log_floor": self.boot_log_floor.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LawFit:
        form = FORMS[str(data["form"])]
        p = len(form.regressors) + 1
        boot = np.asarray(data.get("boot_coef", []), dtype=np.float64).reshape(-1, p)
        return cls(
            form=form,
            coef=np.asarray(data["coef"], dtype=np.float64),
            log_floor=None if data.get("log_floor") is None else float(data["log_floor"]),
            residual_std=float(data["residual_std"]),
            n_runs=int(data["n_runs"]),
            boot_coef=boot,
            boot_log_floor=np.asarray(data.get("boot_log_floor", []), dtype=np.float64),
        )


def _erfinv(confidence: float) -> float:
    from scipy.special import erfinv

    return float(erfinv(confidence))


def _fit_once(
    form: LawForm,
    X: np.ndarray,
    ppe: np.ndarray,
    floor: np.ndarray | None,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None, np.ndarray]:
    """(coef, log E or None, log residuals) of one fit (``start``: the fitted floor's start)."""
    if form.floor == "fitted":
        return _fit_fitted_floor(X, ppe, start)
    target = ppe - floor if form.floor == "ideal" and floor is not None else ppe
    y = np.log(target)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef, None, y - X @ coef


def _fit_fitted_floor(
    X: np.ndarray, ppe: np.ndarray, start: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """PPE = E + exp(X coef), least squares on log PPE, E = exp(e) > 0.

    Without ``start`` ([log E, coef...]), several starts (E a share of the smallest PPE, the
    rest by linear least squares on the remaining excess) and the best optimum; with it
    (a bootstrap replicate started at the full fit), that start alone.
    """
    y = np.log(ppe)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.logaddexp(theta[0], X @ theta[1:]) - y

    starts = [start] if start is not None else []
    if start is None:
        for frac in (0.05, 0.3, 0.7):
            e0 = math.log(frac * float(ppe.min()))
            c0, *_ = np.linalg.lstsq(X, np.log(np.maximum(ppe - math.exp(e0), 1e-12)), rcond=None)
            starts.append(np.concatenate([[e0], c0]))
    best: Any = None
    for theta0 in starts:
        result = optimize.least_squares(residuals, theta0, method="trf", max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    theta = best.x
    return theta[1:], float(theta[0]), best.fun


def fit_law(
    form: LawForm | str,
    variables: _Vars,
    ppe: Sequence[float] | np.ndarray,
    floor: Sequence[float] | np.ndarray | None = None,
    groups: Sequence[Any] | None = None,
    bootstrap: int = 500,
    seed: int = 0,
) -> LawFit:
    """Fit one law to runs.

    Args:
        form: a :class:`LawForm` or its name in :data:`FORMS`.
        variables: arrays of the runs' ``steps``, ``batch_size``, ``projector_dim``,
            ``num_views`` (and ``sample_views`` / ``flops`` for the compute forms).
        ppe: the measured PPE of each run, in (0, 1).
        floor: f(B, D) of each run (the ideal-floor forms).
        groups: the bootstrap's clusters (e.g. one per (cell, seed)); default: each run.
        bootstrap: replicates for the intervals (0: none).
        seed: the bootstrap's seed.

    Raises:
        ValueError: bad shapes or values, a PPE at or below the floor, or too few runs for
            the form's parameters.
    """
    form = FORMS[form] if isinstance(form, str) else form
    y = np.asarray(ppe, dtype=np.float64)
    floor_arr = None if floor is None else np.asarray(floor, dtype=np.float64)
    n = _check_variables(form, variables, floor_arr)
    if y.shape != (n,) or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"the PPE must be {n} finite positive values.")
    if form.floor == "ideal" and floor_arr is not None and np.any(y <= floor_arr):
        k = int(np.sum(y <= floor_arr))
        raise ValueError(
            f"{k} run(s) have a PPE at or below the ideal floor f(B, D); the excess form cannot fit them."
        )
    X = _design(form, variables)
    rank = np.linalg.matrix_rank(X)
    extra = 1 if form.floor == "fitted" else 0
    if rank < X.shape[1] or n <= X.shape[1] + extra:
        raise ValueError(
            f"law {form.name} has {X.shape[1] + extra} parameters, but the runs fix only {rank} "
            f"directions ({n} runs): vary more of its variables."
        )
    coef, log_floor, resid = _fit_once(form, X, y, floor_arr)
    dof = max(n - X.shape[1] - extra, 1)
    residual_std = float(np.sqrt(np.sum(resid**2) / dof))
    fit = LawFit(form, coef, log_floor, residual_std, n)
    if bootstrap > 0:
        labels = np.asarray(list(groups) if groups is not None else range(n), dtype=object)
        unique = list(dict.fromkeys(labels.tolist()))
        members = [np.flatnonzero(labels == u) for u in unique]
        rng = np.random.default_rng(seed)
        coefs, floors = [], []
        for _ in range(bootstrap):
            pick = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
            if np.linalg.matrix_rank(X[pick]) < X.shape[1]:
                continue  # a replicate that lost a direction of the design
            start = None if log_floor is None else np.concatenate([[log_floor], coef])
            c, lf, _ = _fit_once(
                form, X[pick], y[pick], None if floor_arr is None else floor_arr[pick], start
            )
            coefs.append(c)
            floors.append(lf if lf is not None else math.nan)
        fit.boot_coef = np.asarray(coefs).reshape(len(coefs), X.shape[1])
        fit.boot_log_floor = np.asarray(floors, dtype=np.float64)
    return fit


def relative_errors(
    predicted: np.ndarray, observed: np.ndarray, floor: np.ndarray | None = None
) -> np.ndarray:
    """|predicted - observed| / observed, or of the excess over ``floor`` when given."""
    p, o = np.asarray(predicted, float), np.asarray(observed, float)
    if floor is not None:
        f = np.asarray(floor, float)
        p, o = p - f, o - f
    return np.abs(p - o) / np.abs(o)


def steps_to_reach(
    law: LawFit, target: float, point: Mapping[str, float], floor: float | None, flops_per_step: float
) -> float | None:
    """The gradient steps S at which the law's PPE falls to ``target`` (None: never).

    ``point`` holds B, D, K (``batch_size``, ``projector_dim``, ``num_views``);
    ``flops_per_step`` = FLOPs of one step (for the FLOPs form). The law falls
    monotonically in S, so a bisection in log S finds it.
    """
    base = float(law.floor_of(None if floor is None else np.array([floor]), 1)[0])
    if target <= base:
        return None

    def ppe_at(log_s: float) -> float:
        s = math.exp(log_s)
        b, k = float(point["batch_size"]), float(point["num_views"])
        variables = {
            "steps": np.array([s]),
            "batch_size": np.array([b]),
            "projector_dim": np.array([float(point["projector_dim"])]),
            "num_views": np.array([k]),
            "sample_views": np.array([b * k * s]),
            "flops": np.array([flops_per_step * s]),
        }
        return float(law.predict(variables, None if floor is None else np.array([floor]))[0])

    lo, hi = 0.0, math.log(1e15)
    if ppe_at(lo) <= target:
        return 1.0
    if ppe_at(hi) > target:
        return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ppe_at(mid) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)
