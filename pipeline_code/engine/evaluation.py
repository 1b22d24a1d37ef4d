"""Evaluation: the tuned model against seasonal naive and the approved model on one backtest, the
quality gate, and residual diagnostics.

The backtest is rolling-origin: at each origin every contender (a candidate of any family, or a
combination) is re-estimated on the data before it, and its intervals are calibrated only with
cross-validation errors whose targets precede the origin (online split-conformal), so the reported
coverage is out of sample.
"""

from __future__ import annotations

import json
import math

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_code.engine.core.calibration import (
    CALIBRATION_SPLITS, SCALE_WINDOW, bounds, calibration_rows, capped, local_peaks, local_scales,
)
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.spec import ModelSpec, season_period
from pipeline_code.engine.cv import (
    accuracy, cross_validate_candidate, is_batched, seasonal_naive_scale, sliding_origins,
)
from pipeline_code.engine.estimator import calibration_splits
from pipeline_code.engine.families.base import Context, FamilyError
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.seasonal_naive import seasonal_lags
from pipeline_code.engine.settings import coverage_key


@dataclass
class Backtest:
    """Forecasts of one contender at every backtest origin, with intervals per level."""

    name: str
    origins: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    intervals: dict[float, tuple[np.ndarray, np.ndarray]]
    scale: np.ndarray

    def metrics(self) -> dict[str, float]:
        out = accuracy(self.actual, self.forecast, self.scale)
        for level, (lo, hi) in self.intervals.items():
            out[coverage_key(level)] = float(
                np.mean((self.actual >= lo) & (self.actual <= hi))
            )
        return out


def backtest_origins(n: int, *, horizon: int, origins: int) -> np.ndarray:
    """The last ``origins`` forecast origins whose whole horizon is observed."""
    last = n - horizon
    return np.arange(last - origins + 1, last + 1)


def backtest_model(
    y: np.ndarray, spec: ModelSpec, *, window: int, horizon: int, origins: np.ndarray,
    levels: tuple[float, ...], name: str = "model", step: int = 1, target: np.ndarray | None = None,
) -> Backtest:
    """Backtest one harmonic specification trained on ``y`` (see ``backtest_candidate``)."""
    y = np.asarray(y, dtype=float)
    return backtest_candidate(
        {False: y, True: y}, y if target is None else target, {"family": HARMONIC, **spec.hyperparameters()},
        Context(spec.season_length, window, horizon, horizon), origins=origins, levels=levels, name=name,
        step=step,
    )


def backtest_candidate(
    data: dict[bool, np.ndarray], target: np.ndarray, candidate: dict[str, Any], ctx: Context, *,
    origins: np.ndarray, levels: tuple[float, ...], name: str = "model", step: int = 1,
    splits: int | None = None,
) -> Backtest:
    """Re-estimate ``candidate`` at each origin; calibrate each origin's intervals as the served model
    is (``estimator.calibration_origins``), on the latest CV errors whose targets precede it: every
    earlier step-``step`` split for a batched family, else the consecutive splits from the
    ``calibration_splits + SCALE_WINDOW`` latest before the first origin on. ``splits`` (the
    selection grid's size) no longer matters; it is accepted for callers of the earlier signature."""
    del splits
    grid = sliding_origins(int(origins.max()) + ctx.horizon, window=ctx.window, horizon=ctx.horizon,
                           step=step)
    keep = calibration_splits(candidate)
    if not is_batched(candidate):
        before = grid[grid + ctx.horizon <= origins.min()]
        grid = grid[grid >= before[-(keep + SCALE_WINDOW):][0]] if before.size else grid
    all_origins = np.union1d(grid, origins)
    cv = cross_validate_candidate(data, target, candidate, all_origins, ctx)
    rows = np.searchsorted(all_origins, origins)
    if cv.failed[rows].any():
        raise FamilyError(f"{name} ({candidate['family']}) failed to fit at a backtest origin:"
                          f" {cv.forecasts.reason}")
    fitted = ~cv.failed
    kept = all_origins[fitted]
    offsets = online_offsets(cv.log_errors[fitted], kept, np.searchsorted(kept, origins), ctx.horizon, levels,
                             keep=keep)
    log_mean = np.log(cv.forecast[rows])  # the intervals are placed around the point forecast
    intervals = {level: (np.exp(log_mean + lo), np.exp(log_mean + hi)) for level, (lo, hi) in offsets.items()}
    return Backtest(name, origins, cv.actual[rows], cv.forecast[rows], intervals, cv.scale[rows])


def online_offsets(
    log_errors: np.ndarray, all_origins: np.ndarray, rows: np.ndarray, horizon: int,
    levels: tuple[float, ...], *, keep: int = CALIBRATION_SPLITS,
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Interval offsets at each backtest row, calibrated on the latest ``keep`` scaled errors observed
    before its origin and ``capped`` by those errors unscaled and the recent one-step peak, as a served
    model's are."""
    scales, peaks = local_scales(log_errors[:, 0]), local_peaks(log_errors[:, 0])
    out = {level: (np.empty((rows.size, horizon)), np.empty((rows.size, horizon))) for level in levels}
    for i, row in enumerate(rows):
        past = np.flatnonzero(all_origins + horizon <= all_origins[row])
        kept = past[calibration_rows(scales[past], keep)]
        calibration = np.sort(log_errors[kept] / scales[kept, None], axis=0)
        raw = np.sort(log_errors[kept], axis=0)
        if calibration.shape[0] < 2 or not np.isfinite(scales[row]):
            raise ValueError(f"origin {all_origins[row]} has too few earlier errors to calibrate")
        for level in levels:
            lo, hi = bounds(calibration, level)
            out[level][0][i], out[level][1][i] = capped(
                lo * scales[row], hi * scales[row], raw, level, peaks[row])
    return out


def backtest_seasonal_naive(
    y: np.ndarray, period: int, *, window: int, horizon: int, origins: np.ndarray,
    levels: tuple[float, ...],
) -> Backtest:
    """y[o + h] = y[o + h - period * ceil((h + 1) / period)], intervals from its own earlier errors."""
    y = np.asarray(y, dtype=float)
    steps = np.arange(horizon)
    lag = seasonal_lags(horizon, period)
    first = int(lag[-1])
    all_origins = np.arange(first, int(origins.max()) + 1)
    idx = all_origins[:, None] + steps[None, :]
    forecast = y[idx - lag[None, :]]
    actual = y[idx]
    errors = np.log(actual) - np.log(forecast)
    rows = origins - first
    offsets = online_offsets(errors, all_origins, rows, horizon, levels)
    intervals = {level: (forecast[rows] * np.exp(lo), forecast[rows] * np.exp(hi))
                 for level, (lo, hi) in offsets.items()}
    scale = seasonal_naive_scale(y, origins, window, period)
    return Backtest("seasonal_naive", origins, actual[rows], forecast[rows], intervals, scale)


def same_candidate(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two hyperparameter sets name one model: a combination's members (each with its weight)
    in any order, as the tune lists them by this run's CV rank."""
    def canonical(h: dict[str, Any] | None) -> Any:
        if not isinstance(h, dict) or not isinstance(h.get("members"), list):
            return h
        pairs = zip(h["members"], h.get("weights") or [None] * len(h["members"]))
        rest = {k: v for k, v in h.items() if k not in ("members", "weights")}
        return rest, sorted(json.dumps([m, w], sort_keys=True) for m, w in pairs)
    return a is not None and canonical(a) == canonical(b)


def gate(
    challenger: dict[str, float], champion: dict[str, float] | None, baseline: dict[str, float],
    *, min_improvement: float, same_spec: bool, other_kind_approved: bool = False,
) -> dict[str, Any]:
    """Whether the challenger may replace the approved model, and why; ``serve`` names what to approve.

    With no approved model the first run always serves: the better of the challenger and seasonal
    naive (``serve``: "challenger" or "seasonal_naive"). After that the gate guards against
    regressions: the challenger must beat seasonal naive, and beat the approved model's backtest
    MASE by ``min_improvement`` unless it is a refresh (``same_spec``: the approved candidate refitted
    on newer data), which may not be worse. When the approved model is of another kind (a panel's,
    for one series, or the reverse: ``other_kind_approved``, ``champion`` None), the challenger must
    beat seasonal naive. A contender whose backtest MASE is not finite is never approved.
    """
    # A finite MASE beats one that is not (inf: a zero scale or a blown-up forecast; nan: no score).
    beats_naive = math.isfinite(challenger["mase"]) and not challenger["mase"] >= baseline["mase"]
    if not math.isfinite(challenger["mase"]) and not math.isfinite(baseline["mase"]):
        return {"passed": False, "serve": None, "reason": (
            f"neither the challenger (MASE {challenger['mase']}) nor seasonal naive ({baseline['mase']}) has a "
            "finite backtest MASE; nothing is approved")}
    if champion is None and other_kind_approved:
        if beats_naive:
            return {"passed": True, "serve": "challenger", "reason": (
                f"the challenger (MASE {challenger['mase']:.4f}) beats seasonal naive ({baseline['mase']:.4f})")}
        return {"passed": False, "serve": None, "reason": (
            f"challenger MASE {challenger['mase']:.4f} does not beat seasonal naive {baseline['mase']:.4f}")}
    if champion is None:
        if beats_naive:
            return {"passed": True, "serve": "challenger", "reason": (
                f"no approved model yet; the challenger (MASE {challenger['mase']:.4f}) beats seasonal"
                f" naive ({baseline['mase']:.4f})")}
        return {"passed": True, "serve": "seasonal_naive", "reason": (
            f"no approved model yet; seasonal naive (MASE {baseline['mase']:.4f}) is the best contender"
            f" (challenger {challenger['mase']:.4f}), so it is approved and served")}
    if not beats_naive:
        return {"passed": False, "serve": None, "reason": (
            f"challenger MASE {challenger['mase']:.4f} does not beat seasonal naive {baseline['mase']:.4f}")}
    target = champion["mase"] * (1 - min_improvement)
    if challenger["mase"] <= target:
        return {"passed": True, "serve": "challenger", "reason": (
            f"challenger MASE {challenger['mase']:.4f} beats the approved model's {champion['mase']:.4f}"
            f" by at least {min_improvement:.1%}")}
    if same_spec and challenger["mase"] <= champion["mase"]:
        return {"passed": True, "serve": "challenger", "reason": (
            "same candidate as the approved model, refitted on newer data (a refresh);"
            f" backtest MASE {challenger['mase']:.4f}")}
    return {"passed": False, "serve": None, "reason": (
        f"challenger MASE {challenger['mase']:.4f} is not {min_improvement:.1%} better than the"
        f" approved model's {champion['mase']:.4f}")}


def hold_older_data(decision: dict[str, Any], *, data_end: str, approved_end: str | None) -> dict[str, Any]:
    """``decision``, held back when it would replace the approved model with one whose data end earlier
    (ISO dates): an older extract, or another series, is registered for a person to approve, never
    approved by the gate."""
    if not decision["passed"] or not approved_end or data_end >= approved_end:
        return decision
    return {"passed": False, "serve": None, "reason": (
        f"{decision['reason']}; but this data ends {data_end}, before the approved model's ({approved_end}):"
        " an older extract is not approved automatically (approve it by hand if it is meant)")}


def innovations(forecaster: Forecaster, log_window: np.ndarray) -> np.ndarray:
    """One-step innovations of a fitted harmonic model over the log-scale window it was fitted on."""
    params = forecaster.artifact.parameters
    n = log_window.size
    t = forecaster.artifact.t_last - n + 1 + np.arange(n, dtype=float)
    spec = ModelSpec.from_dict(forecaster.artifact.spec)
    u = log_window - design_matrix(t, spec, intercept=True) @ np.asarray(params["beta"])
    w = np.diff(u) if int(params["diff"]) else u
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, float(params["theta"])], w)
    phi = np.asarray(params["phi"])
    p = phi.size
    lags = np.column_stack([x[p - i : x.size - i] for i in range(1, p + 1)]) if p else np.zeros((x.size, 0))
    return x[p:] - lags @ phi


def diagnostics(residuals: np.ndarray, season_length: float, arma_params: int) -> dict[str, Any]:
    """Ljung-Box (lags 10 and one season, when there is one; ``arma_params`` degrees of freedom fewer)
    and Shapiro-Wilk on the innovations."""
    from scipy import stats

    out: dict[str, Any] = {"ljung_box": []}
    # lags the sample can carry (one-step CV errors of a thinned grid may be few)
    for lag in sorted(lag for lag in {10, season_period(season_length)} - {1} if lag < residuals.size - 1):
        stat, pvalue = ljung_box(residuals, lag, dof=arma_params)
        out["ljung_box"].append({"lag": lag, "statistic": stat, "p_value": pvalue})
    sample = residuals[-5000:]
    w, p = stats.shapiro(sample)
    out["shapiro_wilk"] = {"statistic": float(w), "p_value": float(p), "n": int(sample.size)}
    out["residual_std"] = float(np.std(residuals, ddof=1))
    return out


def ljung_box(x: np.ndarray, lags: int, *, dof: int = 0) -> tuple[float, float]:
    """Ljung-Box Q statistic and its chi-square p-value with ``lags - dof`` degrees of freedom."""
    from scipy import stats

    x = np.asarray(x, float) - np.mean(x)
    n = x.size
    denom = float(x @ x)
    acf = np.array([float(x[k:] @ x[:-k]) / denom for k in range(1, lags + 1)])
    q = n * (n + 2) * float(np.sum(acf**2 / (n - np.arange(1, lags + 1))))
    df = max(lags - dof, 1)
    return q, float(stats.chi2.sf(q, df))
