"""Preprocessing: robust STL, outliers, the structural-break episode and its counterfactual, split.

A point is an outlier when its robust-STL residual lies beyond Tukey's fences at ``iqr_multiplier``
IQRs of the series' noise. The noise's scale is not the residuals' own spread: robust STL follows a
short series closely (on 3 years of monthly white noise, a third of its residuals lie beyond 3 of their
own IQRs, and 1 in 5 clean 10-year series got a false "break"). It is estimated from the series'
year-over-year (seasonal) log differences, 1.4826 MAD / sqrt(2), the noise's standard deviation when
the series is its season plus white noise, and larger when its level wanders, so what is flagged
stands out from the series' ordinary year-to-year change. Only **one** continuous episode inside the
configured window is treated as the structural break; it is replaced by an STL-based forecast fitted
on the data before it. Isolated outliers are flagged, not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from pipeline_code.engine.dataset import Series
from pipeline_code.engine.settings import PreprocessSettings

# A normal distribution's third quartile and IQR in standard deviations, and its MAD-to-SD factor.
NORMAL_Q3, NORMAL_IQR, MAD_TO_SD = 0.6745, 1.349, 1.4826


@dataclass(frozen=True)
class Episode:
    """A structural-break episode: positions [start, stop) of the series."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class Preprocessed:
    """The observed series, its counterfactual version and the flags that explain the difference."""

    series: Series
    counterfactual: np.ndarray
    is_outlier: np.ndarray
    is_counterfactual: np.ndarray
    episode: Episode | None
    residual_bounds: tuple[float, float]
    note: str = ""

    def choose(self, use_counterfactual: bool) -> Series:
        """The training series for the hyperparameter ``use_counterfactual_data``."""
        if not use_counterfactual:
            return self.series
        return Series(self.series.timestamps, self.counterfactual, self.series.freq)

    def report(self) -> dict:
        ts = self.series.timestamps
        return {
            "observations": len(self.series),
            "start": ts[0].isoformat(),
            "end": ts[-1].isoformat(),
            "outliers": int(self.is_outlier.sum()),
            "outlier_timestamps": [ts[i].isoformat() for i in np.flatnonzero(self.is_outlier)],
            "residual_bounds": list(self.residual_bounds),
            "note": self.note,
            "episode": None
            if self.episode is None
            else {
                "start": ts[self.episode.start].isoformat(),
                "end": ts[self.episode.stop - 1].isoformat(),
                "periods": len(self.episode),
            },
        }

    def split(self, horizon: int) -> tuple["Preprocessed", "Preprocessed"]:
        """Train/test split: the last ``horizon`` observations are the test part."""
        if horizon >= len(self.series):
            raise ValueError("horizon must be shorter than the series")
        cut = len(self.series) - horizon
        return self._slice(0, cut), self._slice(cut, len(self.series))

    def _slice(self, lo: int, hi: int) -> "Preprocessed":
        s = self.series
        ep = self.episode
        if ep is not None:
            start, stop = max(ep.start, lo) - lo, min(ep.stop, hi) - lo
            ep = Episode(start, stop) if stop > start else None
        return Preprocessed(
            Series(s.timestamps[lo:hi], s.values[lo:hi], s.freq),
            self.counterfactual[lo:hi],
            self.is_outlier[lo:hi],
            self.is_counterfactual[lo:hi],
            ep,
            self.residual_bounds,
            self.note,
        )

    def columns(self) -> dict[str, np.ndarray]:
        return {
            "value_counterfactual": self.counterfactual,
            "is_counterfactual": self.is_counterfactual.astype(int),
            "is_outlier": self.is_outlier.astype(int),
        }


def preprocess(series: Series, season_length: float, settings: PreprocessSettings) -> Preprocessed:
    """Flag outliers with robust STL, find the break episode and replace it by a counterfactual."""
    period = max(2, round(season_length))
    log_y = np.log(series.values)
    residual = _stl_residual(log_y, period)
    centre = float(np.median(residual))
    reach = (NORMAL_Q3 + settings.iqr_multiplier * NORMAL_IQR) * noise_scale(log_y, period)
    low, high = centre - reach, centre + reach
    is_outlier = (residual < low) | (residual > high) if reach > 0 else np.zeros(len(series), dtype=bool)
    episode = find_episode(series.timestamps, is_outlier, residual, settings)
    counterfactual = series.values.copy()
    is_cf = np.zeros(len(series), dtype=bool)
    note = ""
    if episode is not None and episode.start < min_history(period):
        note = (
            f"an episode starts at {series.timestamps[episode.start].isoformat()}, after fewer than"
            f" {min_history(period)} observations: too early for a counterfactual, left as observed"
        )
        episode = None
    if episode is not None:
        counterfactual[episode.start : episode.stop] = counterfactual_forecast(
            log_y[: episode.start], len(episode), period
        )
        is_cf[episode.start : episode.stop] = True
    return Preprocessed(
        series, counterfactual, is_outlier, is_cf, episode, (float(low), float(high)), note
    )


def noise_scale(log_y: np.ndarray, period: int) -> float:
    """Robust standard deviation of the noise: 1.4826 MAD of the seasonal differences, over sqrt(2)."""
    change = log_y[period:] - log_y[:-period]
    return float(MAD_TO_SD * np.median(np.abs(change - np.median(change))) / np.sqrt(2))


def min_history(period: int) -> int:
    """Observations needed before an episode to fit its counterfactual (two seasons and a bit)."""
    return 2 * period + 2


def _stl_residual(log_y: np.ndarray, period: int) -> np.ndarray:
    from statsmodels.tsa.seasonal import STL

    return np.asarray(STL(log_y, period=period, robust=True).fit().resid)


def find_episode(
    timestamps: list[date], flagged: np.ndarray, residual: np.ndarray, settings: PreprocessSettings
) -> Episode | None:
    """The one episode of flagged points inside the break window with the largest total |residual|.

    Flagged points at most ``episode_gap`` periods apart are one episode; the points between them are
    part of it. Episodes with fewer than ``min_episode_points`` flagged points are not a break.
    """
    if settings.break_start is None and settings.break_end is None:
        return None
    lo = date.fromisoformat(settings.break_start) if settings.break_start else date.min
    hi = date.fromisoformat(settings.break_end) if settings.break_end else date.max
    inside = np.array([lo <= ts <= hi for ts in timestamps])
    candidates = np.flatnonzero(flagged & inside)
    if candidates.size == 0:
        return None
    groups = np.split(candidates, np.flatnonzero(np.diff(candidates) > settings.episode_gap) + 1)
    groups = [g for g in groups if g.size >= settings.min_episode_points]
    if not groups:
        return None
    best = max(groups, key=lambda g: float(np.abs(residual[g]).sum()))
    return Episode(int(best[0]), int(best[-1]) + 1)


def counterfactual_forecast(log_history: np.ndarray, steps: int, period: int) -> np.ndarray:
    """What the series would have done: robust STL on the history, seasonal-naive seasonality plus an
    ARIMA(1,1,0)-with-drift forecast of the seasonally adjusted series (statsmodels STLForecast)."""
    if log_history.size < min_history(period):
        raise ValueError(f"{log_history.size} observations are too few for a counterfactual")
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.forecasting.stl import STLForecast

    model = STLForecast(
        log_history, ARIMA, model_kwargs={"order": (1, 1, 0), "trend": "t"}, period=period, robust=True
    )
    return np.exp(np.asarray(model.fit().forecast(steps)))
