"""Seasonal naive: each step repeats the value one season earlier (the last observed season). With no
season (period 1) it is naive, the last value repeated, its variance growing as a random walk's."""

from __future__ import annotations

import numpy as np

from pipeline_code.engine.families.base import Context, Section, WindowForecasts
from pipeline_code.engine.settings import Settings

NAME = "seasonal_naive"


def seasonal_lags(horizon: int, period: int) -> np.ndarray:
    """Step h (0-based) repeats the value ``period * (h // period + 1)`` periods back."""
    steps = np.arange(horizon)
    return period * (steps // period + 1)


class SeasonalNaive:
    name = NAME
    batched = True

    def candidates(self, settings: Settings) -> list[dict]:
        return [{"family": NAME, "use_counterfactual_data": 1}]

    def fit_windows(self, y, candidate, origins, ctx: Context) -> WindowForecasts:
        z = np.log(y)
        period = ctx.period
        lag = seasonal_lags(ctx.horizon, period)
        centre = z[origins[:, None] + np.arange(ctx.horizon)[None, :] - lag[None, :]]
        # innovation variance: mean squared seasonal difference inside each window
        d2 = np.concatenate([[0.0], np.cumsum((z[period:] - z[:-period]) ** 2)])
        starts = np.maximum(origins - ctx.window, 0)
        sigma2 = (d2[origins - period] - d2[starts]) / np.maximum(origins - period - starts, 1)
        variance = sigma2[:, None] * (np.arange(ctx.horizon) // period + 1)[None, :]
        return WindowForecasts.from_rows(origins, centre, variance)

    def fit_final(self, y, candidate, ctx: Context) -> Section:
        z = np.log(y)[-ctx.window:]
        period = ctx.period
        if z.size <= period:
            raise ValueError(f"seasonal naive needs more than one season ({period}) of data")
        sigma2 = float(np.mean((z[period:] - z[:-period]) ** 2))
        return Section(NAME, {"period": period}, {"last_season": z[-period:], "sigma2": sigma2})
