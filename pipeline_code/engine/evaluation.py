"""Evaluation: the tuned model against seasonal naive and the approved model on one backtest, the
quality gate, and residual diagnostics.

The backtest is rolling-origin: at each origin every contender is re-estimated on the window before
it, and its intervals are calibrated only with cross-validation errors whose targets precede the
origin (online split-conformal), so the reported coverage is out of sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_code.engine.core.calibration import bounds, local_scales, normalised
from pipeline_code.engine.cv import accuracy, cross_validate, seasonal_naive_scale, sliding_origins
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.spec import ModelSpec


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
            out[f"coverage_{round(level * 100)}"] = float(
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
    """Re-estimate ``spec`` at each origin; calibrate each origin's intervals on earlier CV errors."""
    y = np.asarray(y, dtype=float)
    grid = sliding_origins(int(origins.max()) + horizon, window=window, horizon=horizon, step=step)
    all_origins = np.union1d(grid, origins)
    cv = cross_validate(y, spec, window=window, horizon=horizon, origins=all_origins, target=target)
    position = {int(o): i for i, o in enumerate(all_origins)}
    rows = np.array([position[int(o)] for o in origins])
    z_hat = cv.fits.z_hat[rows]
    offsets = online_offsets(cv.log_errors, all_origins, rows, horizon, levels)
    intervals = {level: (np.exp(z_hat + lo), np.exp(z_hat + hi)) for level, (lo, hi) in offsets.items()}
    return Backtest(name, origins, cv.actual[rows], cv.forecast[rows], intervals, cv.scale[rows])


def online_offsets(
    log_errors: np.ndarray, all_origins: np.ndarray, rows: np.ndarray, horizon: int,
    levels: tuple[float, ...],
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Interval offsets at each backtest row, calibrated only on errors observed before its origin."""
    scales = local_scales(log_errors[:, 0])
    out = {level: (np.empty((rows.size, horizon)), np.empty((rows.size, horizon))) for level in levels}
    for i, row in enumerate(rows):
        past = all_origins + horizon <= all_origins[row]
        calibration = np.sort(normalised(log_errors[past], scales[past]), axis=0)
        if calibration.shape[0] < 2 or not np.isfinite(scales[row]):
            raise ValueError(f"origin {all_origins[row]} has too few earlier errors to calibrate")
        for level in levels:
            lo, hi = bounds(calibration, level)
            out[level][0][i], out[level][1][i] = lo * scales[row], hi * scales[row]
    return out


def backtest_seasonal_naive(
    y: np.ndarray, period: int, *, window: int, horizon: int, origins: np.ndarray,
    levels: tuple[float, ...],
) -> Backtest:
    """y[o + h] = y[o + h - period * ceil((h + 1) / period)], intervals from its own earlier errors."""
    y = np.asarray(y, dtype=float)
    steps = np.arange(horizon)
    lag = period * ((steps // period) + 1)
    first = period * ((horizon - 1) // period + 1)
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


def gate(
    challenger: dict[str, float], champion: dict[str, float] | None, baseline: dict[str, float],
    *, min_improvement: float, same_spec: bool,
) -> dict[str, Any]:
    """Whether the challenger may replace the approved model, and why.

    It must beat seasonal naive, and beat the approved model's backtest MASE by ``min_improvement``
    unless it is a refresh (``same_spec``: the approved specification refitted on newer data), which
    may not be worse.
    """
    if not challenger["mase"] < baseline["mase"]:
        return {"passed": False, "reason": (
            f"challenger MASE {challenger['mase']:.4f} does not beat seasonal naive {baseline['mase']:.4f}")}
    if champion is None:
        return {"passed": True, "reason": "no approved model yet; challenger beats seasonal naive"}
    target = champion["mase"] * (1 - min_improvement)
    if challenger["mase"] <= target:
        return {"passed": True, "reason": (
            f"challenger MASE {challenger['mase']:.4f} beats the approved model's {champion['mase']:.4f}"
            f" by at least {min_improvement:.1%}")}
    if same_spec and challenger["mase"] <= champion["mase"]:
        return {"passed": True, "reason": (
            "same specification as the approved model, refitted on newer data (a refresh);"
            f" backtest MASE {challenger['mase']:.4f}")}
    return {"passed": False, "reason": (
        f"challenger MASE {challenger['mase']:.4f} is not {min_improvement:.1%} better than the"
        f" approved model's {champion['mase']:.4f}")}


def innovations(forecaster: Forecaster, log_window: np.ndarray) -> np.ndarray:
    """One-step innovations of the fitted model over the log-scale window it was fitted on."""
    params = forecaster.artifact.parameters
    n = log_window.size
    t = forecaster.artifact.t_last - n + 1 + np.arange(n, dtype=float)
    u = log_window - design_matrix(t, forecaster.spec, intercept=True) @ np.asarray(params["beta"])
    w = np.diff(u) if int(params["diff"]) else u
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, float(params["theta"])], w)
    phi = np.asarray(params["phi"])
    p = phi.size
    lags = np.column_stack([x[p - i : x.size - i] for i in range(1, p + 1)]) if p else np.zeros((x.size, 0))
    return x[p:] - lags @ phi


def diagnostics(residuals: np.ndarray, season_length: float, arma_params: int) -> dict[str, Any]:
    """Ljung-Box (lags 10 and one season; ``arma_params`` degrees of freedom fewer) and Shapiro-Wilk
    on the innovations."""
    from scipy import stats

    out: dict[str, Any] = {"ljung_box": []}
    for lag in sorted({10, max(2, round(season_length))}):
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
