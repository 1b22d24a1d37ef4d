"""Sliding-window time-series cross-validation and the forecast-accuracy measures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_code.engine.model.sliding import WindowFits, fit_windows
from pipeline_code.engine.core.spec import ModelSpec


def sliding_origins(n: int, *, window: int, horizon: int, step: int = 1) -> np.ndarray:
    """Forecast origins of the splits: floor((n - window - horizon) / step) + 1 of them.

    Split i trains on [i * step, i * step + window) and forecasts the next ``horizon`` points.
    """
    if window < 1 or horizon < 1 or step < 1:
        raise ValueError("window, horizon and step must be positive")
    splits = (n - window - horizon) // step + 1
    if splits < 1:
        raise ValueError(f"{n} observations are too few for window {window} + horizon {horizon}")
    return window + step * np.arange(splits)


def seasonal_naive_scale(y: np.ndarray, origins: np.ndarray, window: int, period: int) -> np.ndarray:
    """MASE denominators: in-window mean absolute seasonal difference, one per origin."""
    diffs = np.abs(y[period:] - y[:-period])
    prefix = np.concatenate([[0.0], np.cumsum(diffs)])
    # differences y[t] - y[t - period] with both points inside [o - window, o)
    ends = origins - period
    starts = origins - window
    return (prefix[ends] - prefix[starts]) / (window - period)


@dataclass
class CVResult:
    """Out-of-sample forecasts of every split against what happened."""

    fits: WindowFits
    actual: np.ndarray  # (splits, horizon) original scale
    scale: np.ndarray  # (splits,) MASE denominators

    @property
    def origins(self) -> np.ndarray:
        return self.fits.origins

    @property
    def forecast(self) -> np.ndarray:
        return self.fits.mean()

    @property
    def log_errors(self) -> np.ndarray:
        """log(actual) - log-scale point forecast: what calibrates the intervals."""
        return np.log(self.actual) - self.fits.z_hat

    def metrics(self) -> dict[str, float]:
        return accuracy(self.actual, self.forecast, self.scale)


def accuracy(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """MSE, MAE, RMSE and MASE (each split scaled by its own seasonal-naive MAE) over all steps."""
    error = actual - forecast
    return {
        "mse": float(np.mean(error**2)),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "mase": float(np.mean(np.abs(error) / scale[:, None])),
    }


def cross_validate(
    y: np.ndarray, spec: ModelSpec, *, window: int, horizon: int, step: int = 1,
    origins: np.ndarray | None = None, target: np.ndarray | None = None,
) -> CVResult:
    """Fit each split on its window of ``y`` only and forecast steps 1..horizon after it.

    Forecasts are scored against ``target`` (default ``y``), e.g. the counterfactual-cleaned series
    when ``y`` is the observed one.
    """
    y = np.asarray(y, dtype=float)
    target = y if target is None else np.asarray(target, dtype=float)
    if origins is None:
        origins = sliding_origins(y.size, window=window, horizon=horizon, step=step)
    fits = fit_windows(np.log(y), spec, window=window, horizon=horizon, origins=origins)
    actual = target[origins[:, None] + np.arange(horizon)[None, :]]
    scale = seasonal_naive_scale(target, origins, window, spec.seasonal_period)
    return CVResult(fits, actual, scale)
