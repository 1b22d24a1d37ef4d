"""Temporal hierarchies (THieF: Athanasopoulos, Hyndman, Kourentzes and Petropoulos, "Forecasting with
temporal hierarchies", EJOR 2017), with exponential smoothing as the base model.

The series is aggregated into non-overlapping blocks of every ``k`` dividing the season ``m`` (monthly:
1, 2, 3, 4, 6 and 12 months), each block ending at the origin. AutoETS forecasts every level (its
season ``m / k``), and the levels' forecasts are reconciled, one season at a time, by weighted least
squares with structural scaling: a level-``k`` forecast's error variance is taken as proportional to
``k``. The reconciled bottom level is the forecast. The annual level brings the trend of the long view
and the monthly one the detail; the reconciled forecast borrows from both.

The aggregation is linear on the candidate's scale (the series, or its log: summing logs is as
coherent a hierarchy as summing values). Each step's model variance is the bottom level's ETS variance
(reconciliation moves the centre, and the served intervals are calibrated on CV errors anyway).
Offered for integer seasons of 2 to ``THIEF_MAX_SEASON`` periods (monthly, quarterly, daily with a
week) and windows of ``THIEF_MIN_SEASONS`` whole seasons (``settings.family_needs``). Opt-in
(``search.families``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline_code.engine.families.base import Context
from pipeline_code.engine.families.sf import LOG, StatsforecastFamily, _forecast, _statsforecast, model_code, to_log_scale
from pipeline_code.engine.settings import THIEF_MIN_SEASONS


def levels(m: int) -> list[int]:
    """The aggregation orders: every divisor of the season, 1 (the series) first."""
    return [k for k in range(1, m + 1) if m % k == 0]


@lru_cache(maxsize=None)
def reconciliation(m: int) -> np.ndarray:
    """G (m, rows): one season's bottom forecasts from its stacked level forecasts (each level's
    ``m / k`` values in time order, levels as in ``levels``), by WLS with structural scaling:
    G = (S' W S)^-1 S' W, S the summing matrix and W = diag(1 / k) per row."""
    rows = [np.repeat(np.eye(m // k), k, axis=1) for k in levels(m)]
    s = np.vstack(rows)
    w = np.concatenate([np.full(m // k, 1.0 / k) for k in levels(m)])
    sw = s.T * w
    return np.linalg.solve(sw @ s, sw)


def reconcile(base: list[np.ndarray], m: int, horizon: int) -> np.ndarray:
    """Bottom-level forecasts (n, horizon) from each level's base forecasts (level k: (n, seasons * m / k),
    levels as in ``levels``), reconciled one season at a time."""
    g = reconciliation(m)
    n, seasons = base[0].shape[0], base[0].shape[1] // m
    stacked = np.concatenate([b.reshape(n, seasons, -1) for b in base], axis=2)  # (n, seasons, rows)
    return (stacked @ g.T).reshape(n, seasons * m)[:, :horizon]


class ThiefETS(StatsforecastFamily):
    """Temporal hierarchy of AutoETS forecasts (module docstring)."""

    name = "thief"

    def forecast_rows(self, x: np.ndarray, starts: np.ndarray, ends: np.ndarray, horizon: int,
                      candidate: dict[str, Any], ctx: Context, jobs: int, scale: str) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale centre and variance (n, horizon): every level's AutoETS (one StatsForecast call per
        level over all windows), reconciled."""
        m = ctx.period
        seasons = math.ceil(horizon / m)
        used = (ends - starts) // m * m  # whole seasons, ending at the origin
        if np.any(used < THIEF_MIN_SEASONS * m):
            raise ValueError(f"{self.name}: a window holds fewer than {THIEF_MIN_SEASONS} whole seasons of {m}")
        models = _statsforecast()[1]
        base, variances = [], []
        for k in levels(m):
            blocks = [x[e - u:e].reshape(-1, k).sum(axis=1) for e, u in zip(ends, used)]
            series = np.concatenate(blocks)
            lengths = np.array([b.size for b in blocks])
            level_ends = np.cumsum(lengths)
            model = models.AutoETS(season_length=max(1, m // k), model=model_code(candidate))
            mu, var = _forecast(model, series, level_ends - lengths, level_ends, seasons * (m // k), jobs, None)
            base.append(mu)
            variances.append(var)
        centre = reconcile(base, m, horizon)
        variance = variances[0][:, :horizon]  # the bottom level's (levels start at 1)
        return (centre, variance) if scale == LOG else to_log_scale(centre, variance)
