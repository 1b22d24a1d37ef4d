"""Published baselines (statsforecast) on the same rolling-origin backtest as our model.

At each origin ``o`` every baseline is fitted from scratch on the same training window as our model,
``y[o - window : o]``, and forecasts ``y[o : o + horizon]`` with its own prediction intervals. All
origins are fitted in one :class:`statsforecast.StatsForecast` call: each origin's window is a
separate series (``unique_id`` = the origin, ``ds`` = the absolute position in ``y``), so the
alignment is explicit (the forecast of series ``o`` has ``ds = o .. o + horizon - 1``) and
``n_jobs`` parallelises over origins. This is equivalent to
``StatsForecast.cross_validation(h=horizon, step_size=1, input_size=window)`` on ``y[:origins[-1] +
horizon]`` (cutoff ``o - 1``), which the tests check, but also allows origins that are not evenly
spaced and parallelises a single series.

Choices, measured on the bundled weekly gasoline series (see ``bench/results/accuracy.md``):

* **Season length.** statsforecast's ``AutoTheta``, ``MSTL`` and ``AutoTBATS`` only accept integer
  periods (``AutoTheta``: its seasonality test needs integer lags; ``MSTL``: "period must be a
  positive integer >= 2"; ``AutoTBATS`` takes a float in a list but crashes in its harmonic search on a
  rolling window of ``2 * period``), so they get ``round(season_length)`` = 52. ``AutoARIMA+Fourier``
  carries the exact period (365.25 / 7 = 52.18) in its sin/cos regressors.
* **AutoARIMA+Fourier.** ``AutoARIMA(season_length=1)`` (non-seasonal ARIMA, drift allowed) with
  ``K`` Fourier pairs of period ``season_length`` computed on the absolute time index, so the future
  regressors continue the training ones. ``K`` is chosen once, by AICc over 1..10, on the window of
  the first origin (data before the first origin only) unless ``fourier_k`` is given; AICc values
  with different differencing orders are not comparable, so only candidates with the most common
  ``d`` compete.
* **Scale.** ``transform="log"`` fits on ``log(y)`` and maps the forecast back with the log-normal
  mean ``exp(mu + s^2 / 2)`` (``s`` read off the model's own 95% interval), the same bias adjustment
  our model uses; interval bounds are exponentiated (quantiles map through a monotone transform).
  ``transform="none"`` fits on ``y``. The default, :data:`DEFAULT_TRANSFORM`, is per model: whichever
  gave that model the lower backtest MASE on the bundled series (the benchmark reports both).
* **MASE denominators** are ``seasonal_naive_scale(y, origins, window, round(season_length))``, the
  same as our model's and seasonal naive's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.cv import seasonal_naive_scale
from pipeline_code.engine.evaluation import Backtest

BASELINES: tuple[str, ...] = ("AutoTheta", "AutoTBATS", "MSTL", "AutoETS", "AutoARIMA+Fourier")
# Per-model fitting scale: the one with the lower backtest MASE on the bundled series (52 origins,
# horizon 26, window 417; log vs original: AutoTheta 0.895 vs 0.886, AutoTBATS 0.835 vs 0.839,
# MSTL 0.921 vs 0.922, AutoARIMA+Fourier 0.914 vs 0.942; bench/results/accuracy.md has both).
DEFAULT_TRANSFORM: dict[str, str] = {
    "AutoTheta": "none",
    "AutoTBATS": "log",
    "MSTL": "log",
    "AutoETS": "log",
    "AutoARIMA+Fourier": "log",
}
# Training history per origin: the same window as our model's, or all history before the origin
# (how a user calls statsforecast).
HISTORIES = ("window", "all")
FOURIER_K_RANGE = range(1, 11)
_Z95 = 1.959963984540054

INSTALL_HINT = "statsforecast is needed for the baselines: pip install -e '.[bench]'"


def _require_statsforecast():
    try:
        import statsforecast  # noqa: F401
        from statsforecast import StatsForecast
        from statsforecast import models
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from err
    return StatsForecast, models


def fourier_terms(t: np.ndarray, period: float, k: int) -> np.ndarray:
    """sin/cos pairs 1..k of ``period`` on the absolute time index ``t``: columns s1, c1, s2, c2, ..."""
    t = np.asarray(t, dtype=float)
    angle = 2 * np.pi * t[:, None] * np.arange(1, k + 1)[None, :] / period
    out = np.empty((t.size, 2 * k))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    return out


def select_fourier_k(
    z: np.ndarray, t: np.ndarray, period: float, ks: range | tuple[int, ...] = FOURIER_K_RANGE
) -> tuple[int, list[dict]]:
    """K with the lowest AICc of ``AutoARIMA(season_length=1)`` + K Fourier pairs, fitted on ``z``.

    Only candidates whose chosen differencing order is the most common one compete (AICc is not
    comparable across d).
    """
    _, models = _require_statsforecast()
    ks = [k for k in ks if 2 * k < period]
    table = []
    for k in ks:
        fit = models.AutoARIMA(season_length=1).fit(z, fourier_terms(t, period, k))
        arma = fit.model_["arma"]  # (p, q, P, Q, m, d, D)
        table.append({"k": k, "aicc": float(fit.model_["aicc"]), "p": int(arma[0]), "q": int(arma[1]),
                      "d": int(arma[5])})
    ds = [row["d"] for row in table]
    d_mode = max(set(ds), key=ds.count)
    best = min((row for row in table if row["d"] == d_mode), key=lambda row: row["aicc"])
    return best["k"], table


def _make_model(name: str, models, period: int):
    if name == "AutoTheta":
        return models.AutoTheta(season_length=period, alias=name)
    if name == "AutoTBATS":
        return models.AutoTBATS(season_length=period, alias=name)
    if name == "MSTL":
        return models.MSTL(season_length=[period], alias=name)
    if name == "AutoETS":
        return models.AutoETS(season_length=period, alias=name)
    if name == "AutoARIMA+Fourier":
        return models.AutoARIMA(season_length=1, alias=name)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


def backtest_baselines(
    y: np.ndarray,
    *,
    season_length: float,
    window: int,
    horizon: int,
    origins: np.ndarray,
    levels: tuple[float, ...],
    models: tuple[str, ...] = BASELINES,
    n_jobs: int = 1,
    transform: str | Mapping[str, str] | None = None,
    fourier_k: int | None = None,
    info: dict | None = None,
    history: str = "window",
) -> dict[str, Backtest]:
    """Backtest each baseline in ``models`` at every origin; see the module docstring.

    ``levels`` are fractions (0.8, 0.95) or percentages (80, 95); the returned intervals are keyed by
    fractions, as :class:`Backtest` expects. ``transform`` is "log", "none", a per-model mapping, or
    None for :data:`DEFAULT_TRANSFORM`. If ``info`` is a dict it receives per-model seconds and the
    Fourier K selection. ``history`` is "window" (fit on ``y[o - window : o]``) or "all" (``y[:o]``).
    """
    StatsForecast, sf_models = _require_statsforecast()
    import pandas as pd

    y = np.asarray(y, dtype=float)
    origins = np.asarray(origins, dtype=np.int64)
    if origins.ndim != 1 or origins.size == 0:
        raise ValueError("origins must be a non-empty 1-d array")
    if origins.min() < window or origins.max() + horizon > y.size:
        raise ValueError("every origin needs a full window before it and a full horizon after it")
    unknown = [m for m in models if m not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {BASELINES}")
    fractions = tuple(float(lv) / 100 if lv > 1 else float(lv) for lv in levels)
    percents = [int(round(f * 100)) for f in fractions]
    if 95 not in percents:
        percents_fit = sorted({*percents, 95})  # the 95% interval gives the log-normal bias adjustment
    else:
        percents_fit = sorted(set(percents))
    period = season_period(season_length)
    info = {} if info is None else info
    info.setdefault("seconds", {})
    info.setdefault("transform", {})

    steps = np.arange(horizon)
    actual = y[origins[:, None] + steps[None, :]]
    scale = seasonal_naive_scale(y, origins, window, period)
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {HISTORIES}, got {history!r}")
    starts = origins - window if history == "window" else np.zeros_like(origins)
    train_idx = np.concatenate([np.arange(s, o) for s, o in zip(starts, origins)])
    future_idx = (origins[:, None] + steps[None, :]).ravel()
    ids = np.repeat(origins, origins - starts)
    future_ids = np.repeat(origins, horizon)

    out: dict[str, Backtest] = {}
    for name in models:
        how = _transform_for(name, transform)
        if how == "log" and np.any(y <= 0):
            raise ValueError("transform='log' needs a positive series")
        z = np.log(y) if how == "log" else y
        started = time.perf_counter()
        df = pd.DataFrame({"unique_id": ids, "ds": train_idx, "y": z[train_idx]})
        X_df = None
        if name == "AutoARIMA+Fourier":
            k = fourier_k
            if k is None:
                first = origins.min()
                t0 = np.arange(first - window, first)
                k, table = select_fourier_k(z[t0], t0, season_length)
                info.setdefault("fourier_k_selection", {})[how] = table
            info.setdefault("fourier_k", {})[how] = int(k)
            cols = [f"fourier_{i}" for i in range(2 * k)]
            df[cols] = fourier_terms(train_idx, season_length, k)
            X_df = pd.DataFrame({"unique_id": future_ids, "ds": future_idx})
            X_df[cols] = fourier_terms(future_idx, season_length, k)
        sf = StatsForecast(models=[_make_model(name, sf_models, period)], freq=1, n_jobs=n_jobs)
        fc = sf.forecast(df=df, h=horizon, X_df=X_df, level=percents_fit)
        fc = fc.sort_values(["unique_id", "ds"]).reset_index(drop=True)
        got_ids = fc["unique_id"].to_numpy().reshape(origins.size, horizon)
        got_ds = fc["ds"].to_numpy().reshape(origins.size, horizon)
        order = np.argsort(origins)
        expected = origins[order][:, None] + steps[None, :]
        if not (np.array_equal(got_ids[:, 0], origins[order]) and np.array_equal(got_ds, expected)):
            raise RuntimeError(f"{name}: forecasts are not aligned with the origins")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)

        def column(col: str) -> np.ndarray:
            return fc[col].to_numpy(dtype=float).reshape(origins.size, horizon)[inverse]

        mu = column(name)
        bounds = {p: (column(f"{name}-lo-{p}"), column(f"{name}-hi-{p}")) for p in percents_fit}
        if how == "log":
            lo95, hi95 = bounds[95]
            sd = (hi95 - lo95) / (2 * _Z95)
            forecast = np.exp(mu + 0.5 * sd**2)
            intervals = {f: (np.exp(bounds[p][0]), np.exp(bounds[p][1])) for f, p in zip(fractions, percents)}
        else:
            forecast = mu
            intervals = {f: bounds[p] for f, p in zip(fractions, percents)}
        out[name] = Backtest(name, origins, actual, forecast, intervals, scale)
        info["seconds"][name] = time.perf_counter() - started
        info["transform"][name] = how
    return out


def _transform_for(name: str, transform: str | Mapping[str, str] | None) -> str:
    if transform is None:
        how = DEFAULT_TRANSFORM[name]
    elif isinstance(transform, str):
        how = transform
    else:
        how = transform.get(name, DEFAULT_TRANSFORM[name])
    if how not in ("log", "none"):
        raise ValueError(f"transform must be 'log' or 'none', got {how!r}")
    return how
