"""Panel-aware cross-validation: cutoff dates shared by every series (PanelSplit), the panel's pooled
interval calibration and its accuracy measures.

A *cutoff* is the first forecast date of a split: every series trains on its points dated before the
cutoff and is scored on the ``horizon`` periods from the cutoff on, so no split sees any series'
future. The measures, per series and over the panel:

- MASE: absolute error over the series' in-sample seasonal-naive MAE in the CV window before the
  cutoff, mean over steps and cutoffs; the panel's is the mean over series;
- WAPE: sum of absolute errors over sum of absolute actuals (the panel's sums over every series);
- coverage of the 80% and 95% intervals (the panel's over every scored point);
- the scaled interval score of the 95% interval (MSIS, as in the M4 competition: the interval score
  over the same seasonal-naive scale), mean over steps and cutoffs; the panel's is the mean over series.

Intervals pool every series' normalised log errors (error / the series' own scale at that cutoff,
per step): with a handful of cutoffs per series, no series has enough errors of its own. The errors
pooled are the rolling choice's (``panel_series``: at each cutoff, the model chosen on the earlier
ones), as the served model's errors will be: the chosen model's errors on the cutoffs that chose it
are optimistic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date
from typing import Any

import numpy as np

from pipeline_code.engine.core.calendar import Calendar, parse_freq
from pipeline_code.engine.core.calibration import bounds
from pipeline_code.engine.settings import RECORDED_LEVELS, coverage_key

LEVELS = RECORDED_LEVELS
SCORE_LEVEL = 0.95  # the interval scored by MSIS
# The pooled calibration array keeps at most this many rows (a fixed-seed sample): its order
# statistics resolve the 95% interval's tails, and every item's artifact carries it.
POOL_ROWS = 2000
# Below this many pooled rows the empirical tails are not resolved (see `pooled`).
MIN_POOL_ROWS = 20
# With no series' errors to pool, intervals come from this many normal quantiles.
NORMAL_ROWS = 199


def panel_cutoffs(panel: Any, *, horizon: int, cutoffs: int, step: int) -> list[date]:
    """The panel's last ``cutoffs`` cutoff dates, ``step`` periods apart, ascending; the last one's
    horizon ends on the panel's last timestamp."""
    if horizon < 1 or cutoffs < 1 or step < 1:
        raise ValueError(f"horizon, cutoffs and step must be positive, got {horizon}, {cutoffs}, {step}")
    calendar = parse_freq(panel.freq)
    return cutoffs_before(calendar.shift(panel.end, 1), horizon=horizon, cutoffs=cutoffs, step=step,
                          calendar=calendar)


def cutoffs_before(when: date, *, horizon: int, cutoffs: int, step: int, calendar: Calendar) -> list[date]:
    """The ``cutoffs`` cutoffs whose horizon ends before ``when`` (an evaluation cutoff, or the day
    after the data): what a choice made at ``when`` may look at."""
    return [calendar.shift(when, -(horizon + j * step)) for j in range(cutoffs - 1, -1, -1)]


def interval(log_mean: np.ndarray, scale: np.ndarray, pool: np.ndarray, conf: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``conf`` intervals around the log point forecasts ``log_mean`` (rows,
    horizon), each row scaled by its own ``scale``, from the sorted pooled normalised errors (as
    serving does)."""
    low, high = bounds(pool, conf)
    h = log_mean.shape[1]
    return (np.exp(log_mean + low[None, :h] * scale[:, None]),
            np.exp(log_mean + high[None, :h] * scale[:, None]))


def pooled(rows: list[np.ndarray], horizon: int, seed: int = 0) -> np.ndarray:
    """The panel's calibration array, sorted per step: every series' normalised errors (at most
    ``POOL_ROWS`` rows, a fixed-seed sample). Fewer than ``MIN_POOL_ROWS`` rows (a small panel or shard)
    resolve no tail: normal quantiles then, with the rows' per-step RMS as spread, or random-walk growth
    when fewer than two rows are known."""
    stacked = np.concatenate([r for r in rows if r.size]) if any(r.size for r in rows) else np.empty((0, horizon))
    stacked = stacked[np.all(np.isfinite(stacked), axis=1)]
    if stacked.shape[0] < MIN_POOL_ROWS:
        from statistics import NormalDist

        z = np.array([NormalDist().inv_cdf((i + 0.5) / NORMAL_ROWS) for i in range(NORMAL_ROWS)])
        spread = (np.sqrt(np.mean(stacked**2, axis=0)) if stacked.shape[0] >= 2
                  else np.sqrt(np.arange(1, horizon + 1)))
        return z[:, None] * np.maximum(spread, 1e-12)[None, :]
    if stacked.shape[0] > POOL_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(stacked.shape[0], POOL_ROWS, replace=False))
        stacked = stacked[keep]
    return np.sort(stacked, axis=0)


@dataclass
class ItemBacktest:
    """One series' scored splits: row i is the split at ``cutoffs[i]``."""

    cutoffs: list[date]
    families: list[str]  # the candidate that forecast each split
    actual: np.ndarray  # (splits, horizon)
    forecast: np.ndarray  # (splits, horizon) the mean
    lower: dict[float, np.ndarray]  # level -> (splits, horizon)
    upper: dict[float, np.ndarray]
    scale: np.ndarray  # (splits,) MASE denominators

    def metrics(self) -> dict[str, float]:
        return split_metrics(self.actual, self.forecast, self.lower, self.upper, self.scale)


def split_metrics(actual, forecast, lower, upper, scale) -> dict[str, float]:
    """MASE, WAPE, coverage per level and MSIS over the rows given."""
    error = np.abs(actual - forecast)
    out = {"mase": float(np.mean(error / scale[:, None])),
           "wape": float(error.sum() / np.abs(actual).sum())}
    for level in lower:
        inside = (actual >= lower[level]) & (actual <= upper[level])
        out[coverage_key(level)] = float(inside.mean())
    out["interval_score"] = float(np.mean(
        interval_score(actual, lower[SCORE_LEVEL], upper[SCORE_LEVEL], SCORE_LEVEL) / scale[:, None]))
    return out


def interval_score(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> np.ndarray:
    """Gneiting and Raftery's interval score of central ``level`` intervals, per point."""
    alpha = 1.0 - level
    return ((upper - lower) + (2 / alpha) * np.maximum(lower - actual, 0)
            + (2 / alpha) * np.maximum(actual - upper, 0))


@dataclass
class PanelCV:
    """Per-item and panel accuracy on shared cutoffs (``rows`` for the per-item backtest export)."""

    items: dict[str, ItemBacktest]
    horizon: int
    freq: str
    levels: tuple[float, ...] = LEVELS
    calendar: Calendar | None = field(default=None, repr=False)

    @cached_property
    def per_item(self) -> dict[str, dict[str, float]]:
        """Each scored item's measures (items without a scored split are left out)."""
        return {item: bt.metrics() for item, bt in sorted(self.items.items()) if bt.actual.size}

    @cached_property
    def panel(self) -> dict[str, float]:
        """Mean MASE and MSIS over items; WAPE and coverage over every scored point."""
        scored = [bt for _, bt in sorted(self.items.items()) if bt.actual.size]
        if not scored:
            return {}
        per_item = list(self.per_item.values())
        actual = np.concatenate([bt.actual.ravel() for bt in scored])
        forecast = np.concatenate([bt.forecast.ravel() for bt in scored])
        out = {"mase": float(np.mean([m["mase"] for m in per_item])),
               "wape": float(np.abs(actual - forecast).sum() / np.abs(actual).sum())}
        for level in self.levels:
            inside = np.concatenate([((bt.actual >= bt.lower[level]) & (bt.actual <= bt.upper[level])).ravel()
                                     for bt in scored])
            out[coverage_key(level)] = float(inside.mean())
        out["interval_score"] = float(np.mean([m["interval_score"] for m in per_item]))
        out["items"] = len(scored)
        out["points"] = int(actual.size)
        return out

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each item's, cutoff's and step's forecast against the actual (the backtest export)."""
        calendar = self.calendar or parse_freq(self.freq)
        for item, bt in sorted(self.items.items()):
            for i, cutoff in enumerate(bt.cutoffs):
                for step in range(self.horizon):
                    row = {"item_id": item, "cutoff": cutoff.isoformat(),
                           "timestamp": calendar.shift(cutoff, step).isoformat(), "step": step + 1,
                           "family": bt.families[i], "actual": float(bt.actual[i, step]),
                           "forecast": float(bt.forecast[i, step])}
                    for level in self.levels:
                        pct = round(level * 100)
                        row[f"lower_{pct}"] = float(bt.lower[level][i, step])
                        row[f"upper_{pct}"] = float(bt.upper[level][i, step])
                    yield row
