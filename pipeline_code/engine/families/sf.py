"""Families fitted with statsforecast (training image only): every CV window is one series of a single
``StatsForecast.forecast`` call, so the library batches (and, with ``jobs`` > 1, parallelises) them.

Each fits log(y) or y itself, a tuned choice (``search.scales``); a fit on y is brought to the log
scale by matching a log-normal's mean and variance, so every family hands the engine log-scale
forecasts. The final fit stores the forecast path up to ``Context.periods`` steps as a ``path``
section: serving needs no model code, at the price of not forecasting past that many periods (the
serving app's ``max_periods`` caps requests anyway). The model variance is read off the model's own
95% interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline_code.engine.families.base import (
    PATH, WINDOW, Context, FamilyError, Section, WindowForecasts, history_starts,
)
from pipeline_code.engine.settings import SCALES, Settings, family_needs

Z95 = 1.959963984540054
LOG, RAW = SCALES  # the series' log, or the series itself (settings.SCALES)
Exog = Callable[[np.ndarray], np.ndarray]  # absolute time index -> regressor columns


def _statsforecast():
    try:
        from statsforecast import StatsForecast
        from statsforecast import models
    except ImportError as err:  # pragma: no cover - depends on the image
        raise FamilyError("statsforecast is needed for this family: pip install '.[train]'") from err
    return StatsForecast, models


def to_log_scale(mean: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The log-normal with this mean and variance, as its log-scale centre and variance (moment
    matching: v = log(1 + variance / mean^2), z = log(mean) - v / 2). A mean that is not positive
    gives NaN: the window is scored as failed."""
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = mean > 0
        v = np.where(positive, np.log1p(variance / np.where(positive, mean, 1.0) ** 2), np.nan)
        z = np.where(positive, np.log(np.where(positive, mean, 1.0)) - 0.5 * v, np.nan)
    return z, v


def _scaled(y: np.ndarray, candidate: dict[str, Any]) -> tuple[np.ndarray, str]:
    """The series on the candidate's scale, and the scale (log by default: the scale before the
    choice existed)."""
    scale = candidate.get("scale", LOG)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    y = np.asarray(y, float)
    return (np.log(y) if scale == LOG else y), scale


def _fit(model: Any, x: np.ndarray, starts: np.ndarray, ends: np.ndarray, horizon: int, jobs: int,
         exog: Exog | None, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """Log-scale centre and variance from one StatsForecast call on ``x`` (the series on ``scale``)."""
    centre, variance = _forecast(model, x, starts, ends, horizon, jobs, exog)
    return (centre, variance) if scale == LOG else to_log_scale(centre, variance)


def _forecast(model: Any, z: np.ndarray, starts: np.ndarray, ends: np.ndarray, horizon: int,
              jobs: int, exog: Exog | None) -> tuple[np.ndarray, np.ndarray]:
    """One StatsForecast call: series i is z[starts[i]:ends[i]]; returns centre and variance (n, h)."""
    StatsForecast, _ = _statsforecast()
    import pandas as pd

    lengths = ends - starts
    ds = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
    ids = np.repeat(np.arange(starts.size), lengths)
    df = pd.DataFrame({"unique_id": ids, "ds": ds, "y": z[ds]})
    future = None
    if exog is not None:
        cols = [f"x{j}" for j in range(exog(np.zeros(1)).shape[1])]
        df[cols] = exog(ds.astype(float))
        fds = (ends[:, None] + np.arange(horizon)[None, :]).ravel()
        future = pd.DataFrame({"unique_id": np.repeat(np.arange(starts.size), horizon), "ds": fds})
        future[cols] = exog(fds.astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf = StatsForecast(models=[model], freq=1, n_jobs=jobs)
        out = sf.forecast(df=df, h=horizon, X_df=future, level=[95])
    out = out.reset_index() if "unique_id" not in out.columns else out
    out = out.sort_values(["unique_id", "ds"])
    name = str(model)
    mu = out[name].to_numpy(float).reshape(starts.size, horizon)
    spread = (out[f"{name}-hi-95"].to_numpy(float) - out[f"{name}-lo-95"].to_numpy(float))
    variance = (spread.reshape(starts.size, horizon) / (2 * Z95)) ** 2
    return mu, variance


class StatsforecastFamily:
    """A statsforecast model as a family; subclasses name it and build the model per candidate."""

    name = ""
    batched = False

    def model(self, candidate: dict[str, Any], ctx: Context) -> Any:
        raise NotImplementedError

    def exog(self, candidate: dict[str, Any], ctx: Context) -> Exog | None:
        return None

    def options(self, settings: Settings) -> list[dict[str, Any]]:
        """The family's own hyperparameters beyond the history (default: none); no candidate when the
        settings rule the family out (``settings.family_needs``)."""
        return [] if family_needs(self.name, settings) else [{}]

    def candidates(self, settings: Settings) -> list[dict[str, Any]]:
        return [{"family": self.name, "use_counterfactual_data": 1, "history": h, "scale": s, **o}
                for h in settings.family_histories(self.name) for s in settings.search.scales
                for o in self.options(settings)]

    def forecast_rows(self, x: np.ndarray, starts: np.ndarray, ends: np.ndarray, horizon: int,
                      candidate: dict[str, Any], ctx: Context, jobs: int, scale: str) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale centre and variance (n, horizon) of the model fitted on each ``x[starts[i]:ends[i]]``
        (``x`` on ``scale``): one StatsForecast call."""
        return _fit(self.model(candidate, ctx), x, starts, ends, horizon, jobs, self.exog(candidate, ctx), scale)

    def fit_windows(self, y, candidate, origins, ctx: Context) -> WindowForecasts:
        x, scale = _scaled(y, candidate)
        starts = history_starts(origins, ctx.window, candidate.get("history", WINDOW))
        try:
            centre, variance = self.forecast_rows(x, starts, origins, ctx.horizon, candidate, ctx, ctx.jobs, scale)
            return WindowForecasts.from_rows(origins, centre, variance)
        except FamilyError:
            raise
        except Exception:  # noqa: BLE001 - one bad window fails the batch: retry window by window
            return self._one_by_one(x, starts, origins, candidate, ctx, scale)

    def _one_by_one(self, x, starts, origins, candidate, ctx: Context, scale) -> WindowForecasts:
        centre = np.full((origins.size, ctx.horizon), np.nan)
        variance = np.full_like(centre, np.nan)
        reason = None
        for i in range(origins.size):
            try:
                c, v = self.forecast_rows(x, starts[i:i + 1], origins[i:i + 1], ctx.horizon, candidate, ctx, 1, scale)
                centre[i], variance[i] = c[0], v[0]
            except Exception as err:  # noqa: BLE001 - scored as a failed window
                reason = reason or f"{type(err).__name__}: {err}"
        return WindowForecasts.from_rows(origins, centre, variance, reason)

    def fit_final(self, y, candidate, ctx: Context) -> Section:
        x, scale = _scaled(y, candidate)
        end = np.array([x.size])
        start = history_starts(end, min(ctx.window, x.size), candidate.get("history", WINDOW))
        centre, variance = self.forecast_rows(x, start, end, ctx.periods, candidate, ctx, ctx.jobs, scale)
        if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(variance))):
            raise FamilyError(f"{self.name}: the final fit's forecast is not finite")
        return Section(PATH, dict(candidate), {"centre": centre[0], "variance": variance[0]})


class AutoETS(StatsforecastFamily):
    """Exponential smoothing, error/trend/season chosen by AICc (damped trends included; with no season,
    period 1, the non-seasonal models only). A candidate
    may restrict the model space with statsforecast's ``model`` code (default ``"ZZZ"``: all; a panel's
    is ``series.ets_model``); on the log scale an error left to the AICc is additive (``model_code``)."""

    name = "ets"

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoETS(season_length=ctx.period, model=model_code(candidate))


def model_code(candidate: dict[str, Any]) -> str:
    """The candidate's AutoETS code as fitted. On the log scale an error left to the AICc (``Z``) is
    additive: a multiplicative error on log values makes the noise proportional to the log level,
    which moves with the data's units (thousands or units), and additive errors on the log scale
    are already multiplicative on the data's. It is also two to three times cheaper (6 models
    instead of 15). On the validation panels (``bench/panel_validation_bench.py``) ETS on logs
    scored a geometric mean MASE of 0.9143 against 0.9207 on all history, 0.9670 against 0.9761 on
    the window (``bench/results/panel_accuracy.notes.md``, item 9)."""
    code = str(candidate.get("model", "ZZZ"))
    return "A" + code[1:] if candidate.get("scale", LOG) == LOG and code.startswith("Z") else code


class AutoTheta(StatsforecastFamily):
    """Theta: standard, optimised and dynamic optimised variants, chosen by in-sample MSE (with no
    season, period 1, without seasonal decomposition)."""

    name = "theta"

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoTheta(season_length=ctx.period)


class AutoCES(StatsforecastFamily):
    """Complex exponential smoothing (Svetunkov and Kourentzes): level and trend as one complex-valued
    state, the seasonal type (none, simple, partial, full) chosen by AIC. Opt-in (``search.families``)."""

    name = "ces"

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoCES(season_length=ctx.period)


class MSTL(StatsforecastFamily):
    """MSTL decomposition (seasonal components by STL, trend by AutoETS without season); offered only
    for a series with a season."""

    name = "mstl"

    def model(self, candidate, ctx):
        return _statsforecast()[1].MSTL(season_length=[ctx.period])


class AutoTBATS(StatsforecastFamily):
    """TBATS (trigonometric seasonality, Box-Cox, ARMA errors); seconds per window on weekly data,
    so it is not among the default families (``search.families`` adds it)."""

    name = "tbats"

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoTBATS(season_length=ctx.period)


def fourier(t: np.ndarray, season_length: float, k: int) -> np.ndarray:
    """sin/cos pairs 1..k of period ``season_length`` on the absolute time index ``t``."""
    angle = 2 * np.pi * np.asarray(t, float)[:, None] * np.arange(1, k + 1)[None, :] / season_length
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)


class ArimaFourier(StatsforecastFamily):
    """AutoARIMA (non-seasonal, drift allowed) with K Fourier pairs of the exact season length as
    regressors. AutoARIMA's order search costs about a second per window on weekly data, so K is not
    searched here: it is the largest usable order up to ``MAX_K`` (the harmonic family searches K)."""

    name = "arima_fourier"
    MAX_K = 10

    def options(self, settings):
        from pipeline_code.engine.core.spec import max_fourier_k

        if family_needs(self.name, settings):
            return []
        return [{"fourier_k": min(self.MAX_K, max_fourier_k(settings.data.season_length))}]

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoARIMA(season_length=1)

    def exog(self, candidate, ctx):
        k = int(candidate["fourier_k"])
        return lambda t: fourier(t, ctx.season_length, k)


class SeasonalArima(StatsforecastFamily):
    """Seasonal AutoARIMA (statsforecast's stepwise Hyndman-Khandakar search, seasonal period the
    integer season; with no season, period 1, non-seasonal ARIMA). Offered for seasons up to
    ``ARIMA_MAX_SEASON`` (monthly, quarterly, yearly): a 52-week seasonal
    ARIMA is slow and approximate, which ``arima_fourier`` and ``harmonic_arima`` cover. Fitted on the
    CV window only by default (``search.window_only``): all history costs about 9 s per fit on a long
    monthly series."""

    name = "arima"

    def model(self, candidate, ctx):
        return _statsforecast()[1].AutoARIMA(season_length=ctx.period)
