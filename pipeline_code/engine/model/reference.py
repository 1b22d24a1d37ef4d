"""A plain, one-window-at-a-time implementation of the estimator: the yardstick for ``sliding``.

Same model and selection rules, written the obvious way (explicit matrices, ``lstsq``, a Python loop
for the MA filter), so tests and the tuning benchmark can check that the batched fits equal a
from-scratch re-estimation per split.
"""

from __future__ import annotations

import numpy as np

from pipeline_code.engine.core.arima import error_forecast, forecast_variance
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.model.sliding import KPSS_CRITICAL, THETA_GRID
from pipeline_code.engine.core.spec import ModelSpec


def fit_forecast_one(z: np.ndarray, spec: ModelSpec, *, origin: int, window: int, horizon: int):
    """Fit on z[origin - window : origin]; return (log forecast, variance, diff) for the next steps."""
    t = np.arange(origin - window, origin, dtype=float)
    t_future = np.arange(origin, origin + horizon, dtype=float)
    zw = z[origin - window : origin]
    branches = {d: _fit_branch(zw, t, spec, d) for d in (0, 1)}
    if spec.diff is None:
        diff = int(_kpss(branches[0]["u"]) > KPSS_CRITICAL[spec.detrend])
    else:
        diff = spec.diff
    b = branches[diff]
    X_future = design_matrix(t_future, spec, intercept=diff == 0)
    one = (b["phi"][None, :], np.array([b["theta"]]))
    errors = error_forecast(*one, b["x_tail"][None, :], np.array([b["u"][-1]]), np.array([diff]), horizon)
    variance = forecast_variance(*one, np.array([b["sigma2"]]), np.array([diff]), horizon)
    return X_future @ b["beta"] + errors[0], variance[0], diff


def _fit_branch(zw: np.ndarray, t: np.ndarray, spec: ModelSpec, diff: int) -> dict:
    X = design_matrix(t, spec, intercept=diff == 0)
    if diff:
        beta = np.linalg.lstsq(np.diff(X, axis=0), np.diff(zw), rcond=None)[0]
    else:
        beta = np.linalg.lstsq(X, zw, rcond=None)[0]
    u = zw - X @ beta
    errors = np.diff(u) if diff else u
    best = None
    for theta in THETA_GRID:
        x = np.empty_like(errors)
        previous = 0.0
        for i, e in enumerate(errors):
            x[i] = previous = e - theta * previous
        aicc, phi, sigma2 = _ar_by_aicc(x, spec.ar_order_max, extra=int(theta != 0))
        if best is None or aicc < best[0]:
            best = (aicc, phi, sigma2, theta, x[-(spec.ar_order_max + 1) :])
    _, phi, sigma2, theta, x_tail = best
    return {"beta": beta, "u": u, "phi": phi, "sigma2": sigma2, "theta": theta, "x_tail": x_tail}


def _ar_by_aicc(e: np.ndarray, p_max: int, extra: int) -> tuple[float, np.ndarray, float]:
    target = e[p_max:]
    m = target.size
    best = (np.inf, np.zeros(p_max), 0.0)
    for p in range(0, p_max + 1):
        if p == 0:
            phi = np.zeros(0)
            ssr = float(target @ target)
        else:
            lags = np.column_stack([e[p_max - i : e.size - i] for i in range(1, p + 1)])
            phi, *_ = np.linalg.lstsq(lags, target, rcond=None)
            ssr = float(np.sum((target - lags @ phi) ** 2))
        k = p + extra + 1
        aicc = m * np.log(ssr / m) + 2 * k + 2 * k * (k + 1) / (m - k - 1)
        if aicc < best[0]:
            padded = np.zeros(p_max)
            padded[:p] = phi
            best = (aicc, padded, ssr / (m - p) if p else ssr / m)
    return best


def _kpss(u: np.ndarray) -> float:
    u = u - u.mean()
    n = u.size
    lags = int(np.floor(4 * (n / 100.0) ** 0.25))
    long_run = float(u @ u) / n
    for j in range(1, lags + 1):
        long_run += 2 * (1 - j / (lags + 1)) * float(u[j:] @ u[:-j]) / n
    return float(np.sum(np.cumsum(u) ** 2) / (n**2 * long_run))
