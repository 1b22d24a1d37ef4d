"""An independent yardstick for the batched fitter (``sliding``): the same estimator, one window at a
time, built from statsmodels and NumPy's least squares instead of the code it checks.

- the design is statsmodels' ``DeterministicProcess`` (constant, trend, seasonal dummies, Fourier
  terms): the column space of ``core.design``, built independently;
- the regression is ``lstsq`` (on first differences when the errors are differenced), the KPSS
  statistic is statsmodels' ``kpss``, the ARMA(p, 1) errors are conditional least squares over the
  MA grid with the AR order by AICc;
- forecasts for steps 1..h and their variances come from statsmodels' state-space ``SARIMAX``
  filtered at those fixed parameters (``get_forecast``), not from ``core.arima``.

Only the model's definition (the MA grid, the KPSS critical values and the highest AR order a window
searches) is shared with ``sliding``.
Tests compare the batched fits with it; ``bench/tuning_bench.py`` times it as the from-scratch fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from statsmodels.tools.sm_exceptions import InterpolationWarning
from statsmodels.tsa.deterministic import DeterministicProcess, Fourier
from statsmodels.tsa.statespace.sarimax import SARIMAX
from statsmodels.tsa.stattools import kpss

from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.model.sliding import KPSS_CRITICAL, THETA_GRID, searched_ar_order


def deterministic_design(spec: ModelSpec, n: int, *, constant: bool) -> np.ndarray:
    """Rows t = 0..n-1 of the regression design, spanning the same columns as ``core.design``.

    Without the constant (differenced errors) one seasonal dummy is still dropped, so differences
    of the design keep full rank.
    """
    seasonal = spec.deseasonalize
    process = DeterministicProcess(
        pd.RangeIndex(n), constant=True, order=int(spec.detrend), seasonal=seasonal,
        period=spec.seasonal_period if seasonal else None,
        additional_terms=[Fourier(spec.season_length, spec.fourier_k)] if spec.fourier_k else [],
    )
    design = process.in_sample().to_numpy(dtype=float)
    return design if constant else design[:, 1:]


def regression(z: np.ndarray, design: np.ndarray, diff: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients of the window (in differences when ``diff``) and the errors u."""
    if diff:
        b = np.linalg.lstsq(np.diff(design, axis=0), np.diff(z), rcond=None)[0]
    else:
        b = np.linalg.lstsq(design, z, rcond=None)[0]
    return b, z - design @ b


def state_space_forecast(
    z: np.ndarray, design: np.ndarray, design_future: np.ndarray, b: np.ndarray, *, phi: np.ndarray,
    theta: float, sigma2: float, diff: int,
) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' forecast mean and variance for steps 1..h of z = design b + u, u ARIMA(p, diff, 1),
    at these fixed parameters."""
    model = SARIMAX(z, exog=design, order=(phi.size, diff, 1), trend="n",
                    enforce_stationarity=False, enforce_invertibility=False)
    params = np.concatenate([b, phi, [theta, sigma2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-stationary starting values are not used: params are fixed
        results = model.filter(params, cov_type="none")
        forecast = results.get_forecast(design_future.shape[0], exog=design_future)
    return np.asarray(forecast.predicted_mean), np.asarray(forecast.var_pred_mean)


def kpss_statistic(u: np.ndarray) -> float:
    """statsmodels' level-stationarity KPSS statistic with the fitter's Newey-West lag rule."""
    with warnings.catch_warnings():
        # the p-value table's range and 0.15's notice of a future return type do not concern the statistic
        warnings.simplefilter("ignore", InterpolationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return float(kpss(u, regression="c", nlags=int(np.floor(4 * (u.size / 100.0) ** 0.25)))[0])


def arma_errors(errors: np.ndarray, p_max: int) -> dict:
    """ARMA(p, 1) by conditional least squares: per MA coefficient of the grid, AR(p) of the filtered
    series on a common sample, p = 0..p_max; the lowest AICc wins."""
    best: dict = {"aicc": np.inf}
    for theta in THETA_GRID:
        x = lfilter([1.0], [1.0, theta], errors)
        target = x[p_max:]
        m = target.size
        for p in range(p_max + 1):
            lags = np.column_stack([x[p_max - i : x.size - i] for i in range(1, p + 1)]) if p else None
            phi = np.linalg.lstsq(lags, target, rcond=None)[0] if p else np.zeros(0)
            ssr = float(np.sum((target - (lags @ phi if p else 0.0)) ** 2))
            k = p + int(theta != 0) + 1
            aicc = m * np.log(ssr / m) + 2 * k + 2 * k * (k + 1) / (m - k - 1)
            if aicc < best["aicc"]:
                best = {"aicc": aicc, "phi": np.pad(phi, (0, p_max - p)), "theta": theta,
                        "sigma2": ssr / (m - p) if p else ssr / m}
    return best


def fit_forecast_one(z: np.ndarray, spec: ModelSpec, *, origin: int, window: int, horizon: int):
    """Fit on z[origin - window : origin]; return (log forecast, variance, diff) for the next steps.

    The design counts time from the window's start: a shifted origin spans the same columns (a phase
    of the harmonics and dummies, a constant of the trend), so the fits and forecasts are unchanged.
    """
    zw = z[origin - window : origin]
    full = {d: deterministic_design(spec, window + horizon, constant=d == 0) for d in (0, 1)}
    level_b, level_u = regression(zw, full[0][:window], 0)
    if spec.diff is None:
        diff = int(kpss_statistic(level_u) > KPSS_CRITICAL[spec.detrend])
    else:
        diff = spec.diff
    design = full[diff]
    b, u = (level_b, level_u) if diff == 0 else regression(zw, design[:window], 1)
    arma = arma_errors(np.diff(u) if diff else u, searched_ar_order(spec, window))
    mean, variance = state_space_forecast(
        zw, design[:window], design[window:], b,
        phi=arma["phi"], theta=arma["theta"], sigma2=arma["sigma2"], diff=diff,
    )
    return mean, variance, diff
