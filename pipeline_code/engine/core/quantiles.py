"""Quantile forecasts (p10, p50, p90, ...) from the calibrated intervals (NumPy only; serving runs it).

Quantile ``q`` is the lower bound of the central ``1 - 2q`` interval when ``q < 0.5`` and the upper
bound of the central ``2q - 1`` interval otherwise, so ``p5`` and ``p95`` are exactly the bounds of
the 90% interval; ``p50`` is the centre of every interval, the point forecast (the ``mean``). The
bounds nest by construction (``calibration.bounds``), so the quantiles never cross and every one
below 0.5 is at most the mean, every one above it at least the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
import numpy as np

from pipeline_code.engine.core.forecaster import Forecaster


@dataclass(frozen=True)
class QuantileForecast:
    timestamps: list[date]
    mean: np.ndarray
    quantiles: tuple[float, ...]  # ascending
    values: np.ndarray  # (len(quantiles), periods), non-decreasing down the first axis


def quantile_forecast(forecaster: Forecaster, periods: int, quantiles: tuple[float, ...]) -> QuantileForecast:
    """Forecast ``periods`` steps at each quantile strictly between 0 and 1 (any order; sorted here)."""
    if periods < 1:
        raise ValueError("periods must be at least 1")
    levels = tuple(sorted(quantiles))
    if not levels or not all(0.0 < q < 1.0 for q in levels):
        raise ValueError("quantiles must be strictly between 0 and 1")
    log_mean, variance = forecaster.log_mean(periods)
    offsets = np.zeros((len(levels), periods))
    for row, q in enumerate(levels):
        if q != 0.5:
            low, high = forecaster.error_quantiles(abs(2.0 * q - 1.0), variance)
            offsets[row] = low if q < 0.5 else high
    return QuantileForecast(
        timestamps=forecaster.calendar.future(forecaster.last_timestamp, periods),
        mean=np.exp(log_mean),
        quantiles=levels,
        values=np.exp(log_mean + offsets),
    )
