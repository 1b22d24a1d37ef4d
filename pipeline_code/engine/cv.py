"""Sliding-window time-series cross-validation of any model family (or combination) and the
forecast-accuracy measures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.families.base import Context, WindowForecasts, pooled_argument
from pipeline_code.engine.families.combination import COMBINATION, combine
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.registry import family


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


def selection_origins(grid: np.ndarray, splits: int) -> np.ndarray:
    """At most ``splits`` origins of ``grid``, evenly spaced and ending with its last one: the splits
    every candidate of every family is scored on."""
    if splits < 1:
        raise ValueError("selection_splits must be positive")
    stride = -(-grid.size // splits)
    return grid[::-1][::stride][::-1]


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

    forecasts: WindowForecasts
    actual: np.ndarray  # (splits, horizon) original scale
    scale: np.ndarray  # (splits,) MASE denominators

    @property
    def origins(self) -> np.ndarray:
        return self.forecasts.origins

    @property
    def centre(self) -> np.ndarray:
        """Log-scale point forecasts (the interval centre)."""
        return self.forecasts.centre

    @property
    def forecast(self) -> np.ndarray:
        return self.forecasts.mean()

    @property
    def failed(self) -> np.ndarray:
        return self.forecasts.failed

    @property
    def log_errors(self) -> np.ndarray:
        """log(actual) - log-scale point forecast: what calibrates the intervals."""
        return np.log(self.actual) - self.centre

    def succeeded(self) -> "CVResult":
        """The splits whose fit succeeded."""
        ok = ~self.failed
        f = self.forecasts
        return CVResult(WindowForecasts(f.origins[ok], f.centre[ok], f.variance[ok], f.failed[ok], f.reason),
                        self.actual[ok], self.scale[ok])

    def metrics(self) -> dict[str, float]:
        """Accuracy over the splits; infinite when any split failed (the candidate is scored failed)."""
        if self.failed.any():
            return {"mse": np.inf, "rmse": np.inf, "mae": np.inf, "mase": np.inf}
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
    """Cross-validate one harmonic specification on ``y`` (see ``cross_validate_candidate``)."""
    y = np.asarray(y, dtype=float)
    if origins is None:
        origins = sliding_origins(y.size, window=window, horizon=horizon, step=step)
    candidate = {"family": HARMONIC, **spec.hyperparameters()}
    ctx = Context(spec.season_length, window, horizon, horizon)
    return cross_validate_candidate({False: y, True: y}, y if target is None else target, candidate,
                                    origins, ctx, period=spec.seasonal_period)


def cross_validate_candidate(
    data: dict[bool, np.ndarray], target: np.ndarray, candidate: dict, origins: np.ndarray,
    ctx: Context, *, period: int | None = None,
) -> CVResult:
    """Fit ``candidate`` on each window before ``origins`` and forecast steps 1..horizon after it.

    ``data`` maps ``use_counterfactual_data`` to the training series (observed or counterfactual);
    forecasts are scored against ``target``, e.g. the counterfactual-cleaned series.
    """
    target = np.asarray(target, dtype=float)
    origins = np.asarray(origins, dtype=np.int64)
    forecasts = window_forecasts(data, candidate, origins, ctx)
    actual = target[origins[:, None] + np.arange(ctx.horizon)[None, :]]
    scale = seasonal_naive_scale(target, origins, ctx.window, period or ctx.period)
    return CVResult(forecasts, actual, scale)


def window_forecasts(data: dict[bool, np.ndarray], candidate: dict, origins: np.ndarray,
                     ctx: Context, pooled: dict[str, np.ndarray] | None = None) -> WindowForecasts:
    """Forecasts of a candidate (or a combination's members, combined) from every window. ``pooled``:
    a panel's summed statistics per origin for its pooled families (family name -> array), which
    they fit on instead of the series' own."""
    if candidate["family"] == COMBINATION:
        members = [window_forecasts(data, m, origins, ctx, pooled) for m in candidate["members"]]
        return combine(members, candidate["weights"])
    y = np.asarray(data[bool(int(candidate.get("use_counterfactual_data", 1)))], dtype=float)
    return family(candidate["family"]).fit_windows(y, candidate, origins, ctx,
                                                   **pooled_argument(pooled, candidate["family"]))


def is_batched(candidate: dict) -> bool:
    """Whether every member is cheap enough for every step-1 split."""
    if candidate["family"] == COMBINATION:
        return all(is_batched(m) for m in candidate["members"])
    return family(candidate["family"]).batched
