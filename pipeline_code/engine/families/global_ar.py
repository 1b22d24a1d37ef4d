"""A partially pooled autoregression of the log series: each series' AR coefficients are its own
least squares fit, shrunk toward one AR fitted on the windows of every series of a panel at once.

Each training row predicts ``z[t]`` from the ``order`` values before it, all centred on their mean
(so the model is invariant to the series' level: series of any size share it). As an AR model in
``z``, its coefficients sum to one: a random-walk-like level with learned local dynamics. Pooling
borrows strength across series (Montero-Manso and Hyndman, "Principles and algorithms for
forecasting groups of time series: locality and globality", IJF 2021): a global AR of high order is
far less noisy to fit than a local one on a short window. Partial pooling keeps a long series' own
dynamics: the panel's pooled statistics enter a series' fit as a prior worth ``PRIOR_ROWS_PER_LAG``
rows per coefficient (conjugate pseudo-observations centred on the global fit), so a short series
leans on the panel and a long one on its own rows. On one series it is a local AR of the same shape.

The sufficient statistics of a set of rows, ``S = sum(u u')`` with ``u = [x, y, 1]``, add up over
series, so a panel (``engine/panel_fit.py``) sums each series' statistics per cutoff and hands the sum
to every series' fit (``pooled``); the last diagonal entry is the rows' count. Each series enters the
sum, and its own fit, weighted by the inverse of its own one-step residual variance (``weighted``):
feasible weighted least squares, so a volatile series does not outweigh the steady ones, as the
scale-free objective (MASE) weighs every series alike. Forecasts are recursive;
the variance of step h is ``sigma2 * sum(psi[:h] ** 2)`` with the AR's psi weights and ``sigma2`` the
series' own mean squared one-step residual. The final fit stores the forecast path (``path`` core,
as the statsforecast families), so serving needs no model code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.families.base import ALL, PATH, WINDOW, Context, FamilyError, Section, WindowForecasts
from pipeline_code.engine.settings import Settings

NAME = "global_ar"
DRIFT_NAME = "global_ar_drift"
# Ridge penalty on the centred lags, relative to their mean squared size: keeps the normal equations
# well conditioned when neighbouring lags are nearly collinear (smooth series), shrinking little.
RIDGE = 1e-3
MIN_ROWS_PER_LAG = 2  # a fit needs at least this many training rows per coefficient
# An AR whose largest root would more than double a deviation within the CV horizon is refused as
# explosive (its forecasts diverge; the weights summing to one always leave one unit root). The final
# fit is held to the same horizon as its CV scores, so what was scored is what is served.
EXPLOSIVE_GROWTH = 2.0
# The smallest residual variance a series' pooling weight divides by (log scale: a 0.01% error), so
# a flat series cannot take over the pooled fit.
MIN_VARIANCE = 1e-8
# The weight of the pooled fit in a series' own fit, in rows per coefficient: its statistics per row
# (the panel's weighted average), times this many rows per lag. Chosen on the us_employment tune
# before the first cutoff (bench/results/panel_accuracy.notes.md, item 6): 1 beat 1/3, 2, 4 and 8.
PRIOR_ROWS_PER_LAG = 1.0


def order_for(period: int) -> int:
    """The order: a season and one period, so the lags reach the same period a season back and the
    period before it (what a seasonal ARIMA's differences combine); with no season (period 1), 2: the
    weights summing to one, an AR(1) of the differences."""
    return int(period) + 1


def rows(z: np.ndarray, order: int) -> np.ndarray:
    """``u = [x, y, 1]`` for every target index ``t`` in ``order..len(z)-1`` (row ``t - order``):
    the ``order`` values before ``z[t]`` and ``z[t]`` itself, centred on those values' mean."""
    lags = np.lib.stride_tricks.sliding_window_view(z[:-1], order)  # row i: z[i:i+order], target z[i+order]
    level = lags.mean(axis=1, keepdims=True)
    out = np.empty((lags.shape[0], order + 2))
    out[:, :order] = lags - level
    out[:, order] = z[order:] - level[:, 0]
    out[:, order + 1] = 1.0
    return out


def statistics(z: np.ndarray, order: int, origins: np.ndarray, window: int, history: str) -> np.ndarray:
    """The statistics of the rows each origin trains on, shape (origins, order + 2, order + 2): targets
    before the origin, within the last ``window`` values (lags included) or all history."""
    origins = np.asarray(origins, dtype=np.int64)
    dim = order + 2
    if z.size <= order:
        return np.zeros((origins.size, dim, dim))
    u = rows(z, order)
    cumulative = np.zeros((u.shape[0] + 1, dim, dim))
    np.cumsum(u[:, :, None] * u[:, None, :], axis=0, out=cumulative[1:])
    end = np.clip(origins - order, 0, u.shape[0])  # rows whose target is before the origin
    if history == ALL:
        start = np.zeros_like(end)
    elif history == WINDOW:
        start = np.clip(origins - window, 0, u.shape[0])  # lags inside the window too
    else:
        raise ValueError(f"history must be {WINDOW!r} or {ALL!r}, got {history!r}")
    return cumulative[end] - cumulative[np.minimum(start, end)]


def growth(z: np.ndarray, origins: np.ndarray, window: int, history: str) -> np.ndarray:
    """Each origin's mean growth per period over the values its rows span (the window, or all history
    before the origin); 0 where they span less than two values."""
    origins = np.asarray(origins, dtype=np.int64)
    if z.size < 2:
        return np.zeros(origins.size)
    end = np.clip(origins - 1, 0, z.size - 1)
    start = np.zeros_like(end) if history == ALL else np.clip(origins - window, 0, end)
    span = end - start
    return np.where(span > 0, (z[end] - z[start]) / np.maximum(span, 1), 0.0)


def detrended(stats: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The statistics (..., order + 2, order + 2) of the same rows with the series less ``mu`` per
    period: ``z[t] - mu * t`` shifts each centred lag by ``-mu * (k - (order - 1) / 2)`` and the centred
    target by ``-mu * (order + 1) / 2``, a linear map ``T`` of ``u``, so the statistics become ``T S T'``."""
    order = stats.shape[-1] - 2
    t = np.broadcast_to(np.eye(order + 2), (*np.shape(mu), order + 2, order + 2)).copy()
    shift = np.append(np.arange(order) - (order - 1) / 2, (order + 1) / 2)
    t[..., :order + 1, order + 1] = -np.asarray(mu)[..., None] * shift
    return t @ stats @ np.swapaxes(t, -1, -2)


def coefficients(pooled: np.ndarray) -> np.ndarray:
    """The centred-lag coefficients ``c`` of each statistics matrix (..., order + 2, order + 2) by
    ridge least squares; NaN where there are too few rows."""
    order = pooled.shape[-1] - 2
    sxx, sxy, count = pooled[..., :order, :order], pooled[..., :order, order], pooled[..., -1, -1]
    size = np.trace(sxx, axis1=-2, axis2=-1) / order
    penalty = RIDGE * np.maximum(size, np.finfo(float).tiny)
    a = sxx + penalty[..., None, None] * np.eye(order)
    ok = count >= MIN_ROWS_PER_LAG * order
    c = np.full(sxy.shape, np.nan)
    if np.any(ok):
        c[ok] = np.linalg.solve(a[ok], sxy[ok][..., None])[..., 0]
    return c


def ar_weights(c: np.ndarray) -> np.ndarray:
    """The AR coefficients on the raw lags (oldest first): ``c`` plus the level's share, summing to one."""
    order = c.shape[-1]
    return c + (1.0 - c.sum(axis=-1, keepdims=True)) / order


def residual_variance(own: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Mean squared one-step residual of a series' own rows (statistics ``own``) under ``c``."""
    order = c.shape[-1]
    sxx, sxy, syy, count = own[..., :order, :order], own[..., :order, order], own[..., order, order], own[..., -1, -1]
    rss = syy - 2 * np.sum(c * sxy, axis=-1) + np.einsum("...i,...ij,...j->...", c, sxx, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.maximum(rss, 0.0) / count, np.nan)


def weighted(own: np.ndarray) -> np.ndarray:
    """A series' statistics (..., order + 2, order + 2) scaled for pooling by the inverse of its own
    one-step residual variance (its own least squares fit, degrees-of-freedom corrected; the lag
    mean's residual where the series is too short to fit), the row count kept as it is."""
    order = own.shape[-1] - 2
    count = own[..., -1, -1]
    c = np.nan_to_num(coefficients(own))
    variance = residual_variance(own, c) * count / np.maximum(count - order, 1)
    weight = np.where(count > 0, 1.0 / np.maximum(np.nan_to_num(variance), MIN_VARIANCE), 0.0)
    out = own * weight[..., None, None]
    out[..., -1, -1] = count
    return out


def shrunk(own: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """A series' weighted statistics with the pooled statistics' average row added as a prior worth
    ``PRIOR_ROWS_PER_LAG`` rows per coefficient (the row count grows by as many)."""
    order = own.shape[-1] - 2
    per_row = pooled / np.maximum(pooled[..., -1:, -1:], 1.0)
    return weighted(own) + PRIOR_ROWS_PER_LAG * order * per_row


def psi_weights(a: np.ndarray, steps: int) -> np.ndarray:
    """The MA(infinity) weights psi_0..psi_{steps-1} of the AR with weights ``a`` (oldest lag first),
    for each row of ``a``."""
    phi = a[..., ::-1]  # phi[k - 1] multiplies z[t - k]
    order = phi.shape[-1]
    psi = np.zeros((*a.shape[:-1], steps))
    psi[..., 0] = 1.0
    for j in range(1, steps):
        k = min(j, order)
        psi[..., j] = np.sum(phi[..., :k] * psi[..., j - 1::-1][..., :k], axis=-1)
    return psi


def largest_root(a: np.ndarray) -> np.ndarray:
    """The modulus of the largest root of each AR (weights ``a``, oldest lag first): the largest
    eigenvalue of its companion matrix (1 for a unit root, above 1 if explosive)."""
    order = a.shape[-1]
    companion = np.zeros((*a.shape[:-1], order, order))
    companion[..., 0, :] = a[..., ::-1]
    companion[..., np.arange(1, order), np.arange(order - 1)] = 1.0
    return np.abs(np.linalg.eigvals(companion)).max(axis=-1)


def explosive(a: np.ndarray, steps: int) -> np.ndarray:
    """Whether each AR's largest root grows a deviation more than ``EXPLOSIVE_GROWTH`` times in ``steps``."""
    return steps * np.log(np.maximum(largest_root(a), 1.0)) > np.log(EXPLOSIVE_GROWTH)


def recursive_forecast(last: np.ndarray, a: np.ndarray, steps: int) -> np.ndarray:
    """Steps 1..steps from the last ``order`` values (rows: origins), the AR weights per row."""
    buffer = np.concatenate([last, np.zeros((last.shape[0], steps))], axis=1)
    order = a.shape[-1]
    for k in range(steps):
        buffer[:, order + k] = np.sum(buffer[:, k:k + order] * a, axis=1)
    return buffer[:, order:]


def forecast(z: np.ndarray, origins: np.ndarray, fitted: np.ndarray, own: np.ndarray, steps: int,
             horizon: int | None = None, mu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centre and variance (origins, steps) with the coefficients of the statistics ``fitted`` and
    the variance of each origin's own rows; NaN rows where either cannot be fitted, or the AR is
    explosive within ``horizon`` steps (default ``steps``). ``mu``: each origin's drift per period,
    which the statistics were detrended by (``detrended``): the AR runs on the detrended values."""
    order = fitted.shape[-1] - 2
    mu = np.zeros(origins.size) if mu is None else np.asarray(mu, float)
    c = coefficients(fitted)
    a = ar_weights(c)
    sigma2 = residual_variance(own, np.nan_to_num(c))
    index = np.clip(origins[:, None] - order + np.arange(order)[None, :], 0, max(z.size - 1, 0))
    last = np.where(origins[:, None] >= order, z[index] - mu[:, None] * (index - origins[:, None]), np.nan)
    centre = recursive_forecast(last, np.nan_to_num(a), steps) + mu[:, None] * np.arange(steps)
    variance = sigma2[:, None] * np.cumsum(psi_weights(np.nan_to_num(a), steps) ** 2, axis=-1)
    bad = (~np.isfinite(c).all(axis=-1) | ~np.isfinite(sigma2) | (origins < order)
           | explosive(np.nan_to_num(a), horizon or steps))
    centre[bad], variance[bad] = np.nan, np.nan
    return centre, variance


class GlobalAR:
    """The family: one candidate per history, order one season plus one. Alone, a series is fitted on
    its own rows; in a panel (``pooled`` given), shrunk toward the panel's pooled fit."""

    name = NAME
    batched = True
    pooled = True  # a panel fits it on every series' statistics (engine/panel_fit.py)
    drift = False  # GlobalARDrift: the AR of each series less its mean growth (``growth``)

    def candidates(self, settings: Settings) -> list[dict[str, Any]]:
        order = order_for(season_period(settings.data.season_length))
        return [{"family": self.name, "use_counterfactual_data": 1, "history": h, "order": order}
                for h in settings.family_histories(self.name)]

    def growth(self, y: np.ndarray, candidate: dict[str, Any], origins: np.ndarray, ctx: Context) -> np.ndarray:
        """Each origin's drift per period on the log scale: the mean growth over its rows, or 0."""
        if not self.drift:
            return np.zeros(np.size(origins))
        return growth(np.log(np.asarray(y, float)), origins, ctx.window, candidate.get("history", WINDOW))

    def own(self, y: np.ndarray, candidate: dict[str, Any], origins: np.ndarray, ctx: Context) -> np.ndarray:
        """Each origin's training rows' statistics, unweighted (detrended by the drift, if any)."""
        stats = statistics(np.log(np.asarray(y, float)), int(candidate["order"]), np.asarray(origins),
                           ctx.window, candidate.get("history", WINDOW))
        return detrended(stats, self.growth(y, candidate, origins, ctx)) if self.drift else stats

    def statistics(self, y: np.ndarray, candidate: dict[str, Any], origins: np.ndarray, ctx: Context
                   ) -> np.ndarray:
        """What a panel sums over its series: each origin's statistics, weighted for pooling."""
        return weighted(self.own(y, candidate, origins, ctx))

    def fit_windows(self, y, candidate, origins, ctx: Context, pooled: np.ndarray | None = None
                    ) -> WindowForecasts:
        origins = np.asarray(origins, dtype=np.int64)
        own = self.own(y, candidate, origins, ctx)
        centre, variance = forecast(np.log(np.asarray(y, float)), origins,
                                    own if pooled is None else shrunk(own, pooled), own, ctx.horizon,
                                    mu=self.growth(y, candidate, origins, ctx))
        return WindowForecasts.from_rows(origins, centre, variance,
                                         "too few rows to fit the autoregression, or an explosive fit")

    def fit_final(self, y, candidate, ctx: Context, pooled: np.ndarray | None = None) -> Section:
        y = np.asarray(y, float)
        end = np.array([y.size])
        own = self.own(y, candidate, end, ctx)
        fitted = own if pooled is None else shrunk(own, np.asarray(pooled)[None])
        mu = self.growth(y, candidate, end, ctx)
        centre, variance = forecast(np.log(y), end, fitted, own, ctx.periods, ctx.horizon, mu=mu)
        weights = ar_weights(coefficients(fitted))[0]
        if np.all(np.isfinite(weights)) and explosive(weights, ctx.horizon):
            raise FamilyError(f"{self.name}: the fitted autoregression is explosive (largest root "
                              f"{float(largest_root(weights)):.4f}): its forecasts diverge within the "
                              f"{ctx.horizon}-period horizon")
        if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(variance))):
            raise FamilyError(f"{self.name}: too few observations ({y.size}) for an autoregression of order "
                              f"{candidate['order']}")
        spec = {**candidate, "weights": [round(float(w), 10) for w in weights]}
        if self.drift:
            spec["drift"] = round(float(mu[0]), 12)
        return Section(PATH, spec, {"centre": centre[0], "variance": variance[0]})


class GlobalARDrift(GlobalAR):
    """The same with a drift: each series' log less its mean growth per period over the rows it trains
    on (the window, or all history), the AR fitted and pooled on what is left, the drift added back to
    its forecasts (a trend that an AR whose weights sum to one does not extrapolate by itself)."""

    name = DRIFT_NAME
    drift = True
