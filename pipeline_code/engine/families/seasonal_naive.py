"""Seasonal naive: each step repeats the value one season earlier (the last observed season). With no
season (period 1) it is naive, the last value repeated, its variance growing as a random walk's.

That value is the point forecast (as statsforecast's ``SeasonalNaive`` and the gate's baseline): the
log-normal with that mean, its centre the value's log less half the variance (as ``sf.to_log_scale``),
so a large variance (a level shift in the window) widens it without moving the point. Its section says
so (``core.forecaster.POINT``).
"""

from __future__ import annotations

import numpy as np

from pipeline_code.engine.core.forecaster import LAST_SEASON, POINT
from pipeline_code.engine.families.base import Context, Section, WindowForecasts
from pipeline_code.engine.settings import Settings

NAME = "seasonal_naive"


def seasonal_lags(horizon: int, period: int) -> np.ndarray:
    """Step h (0-based) repeats the value ``period * (h // period + 1)`` periods back."""
    steps = np.arange(horizon)
    return period * (steps // period + 1)


def section(z: np.ndarray, period: int) -> Section:
    """The section of the log series ``z`` (its window): its last season and the mean squared
    seasonal difference (0 without one)."""
    d = z[period:] - z[:-period]
    sigma2 = float(np.mean(d**2)) if d.size else 0.0
    return Section(NAME, {"period": period}, {"last_season": z[-period:], "sigma2": sigma2, POINT: LAST_SEASON})


class SeasonalNaive:
    name = NAME
    batched = True

    def candidates(self, settings: Settings) -> list[dict]:
        return [{"family": NAME, "use_counterfactual_data": 1}]

    def fit_windows(self, y, candidate, origins, ctx: Context) -> WindowForecasts:
        z = np.log(y)
        period = ctx.period
        lag = seasonal_lags(ctx.horizon, period)
        last = z[origins[:, None] + np.arange(ctx.horizon)[None, :] - lag[None, :]]
        # innovation variance: mean squared seasonal difference inside each window
        d2 = np.concatenate([[0.0], np.cumsum((z[period:] - z[:-period]) ** 2)])
        starts = np.maximum(origins - ctx.window, 0)
        sigma2 = (d2[origins - period] - d2[starts]) / np.maximum(origins - period - starts, 1)
        variance = sigma2[:, None] * (np.arange(ctx.horizon) // period + 1)[None, :]
        return WindowForecasts.from_rows(origins, last - 0.5 * variance, variance)

    def fit_final(self, y, candidate, ctx: Context) -> Section:
        z = np.log(y)[-ctx.window:]
        if z.size <= ctx.period:
            raise ValueError(f"seasonal naive needs more than one season ({ctx.period}) of data")
        return section(z, ctx.period)
