"""Quantile forecasts (p10, p50, p90, ...) from the calibrated intervals (NumPy only; serving runs it).

Quantile ``q`` is the lower bound of the central ``1 - 2q`` interval when ``q < 0.5`` and the upper
bound of the central ``2q - 1`` interval otherwise (the median is the centre of the empty interval),
so ``p5`` and ``p95`` are exactly the bounds of the 90% interval. Order statistics of the calibration
errors are monotone in ``q``, but the t tail used past what the sample resolves need not meet
them in order; a running maximum over the sorted quantiles makes the paths never cross.
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
    z_hat, variance = forecaster.log_forecast(periods)
    offsets = np.empty((len(levels), periods))
    for row, q in enumerate(levels):
        low, high = forecaster.error_quantiles(abs(2.0 * q - 1.0), variance)
        offsets[row] = low if q < 0.5 else high
    np.maximum.accumulate(offsets, axis=0, out=offsets)
    return QuantileForecast(
        timestamps=forecaster.calendar.future(forecaster.last_timestamp, periods),
        mean=np.exp(z_hat + 0.5 * variance),
        quantiles=levels,
        values=np.exp(z_hat + offsets),
    )
