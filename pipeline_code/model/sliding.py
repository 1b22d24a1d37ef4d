"""Fit the model on many sliding windows at once and forecast from each.

Every window is a from-scratch fit (regression, AR order by AICc, differencing by KPSS, AR
coefficients by least squares), but the windows share work: the regression's normal equations come
from prefix sums of the design's outer products, so a window costs O(q^2) instead of O(window q^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .arima import error_forecast, forecast_variance
from .design import design_matrix
from .spec import ModelSpec

RIDGE = 1e-8
KPSS_CRITICAL = {False: 0.463, True: 0.146}  # 5% level; level vs trend stationarity


@dataclass
class WindowFits:
    """Per-window parameters and forecasts; row i belongs to origin ``origins[i]``."""

    origins: np.ndarray
    z_hat: np.ndarray  # (n, horizon) log-scale point forecasts
    variance: np.ndarray  # (n, horizon) model-based log-scale forecast variance
    beta: np.ndarray  # (n, q) regression coefficients of the chosen branch (padded)
    phi: np.ndarray  # (n, ar_order_max) AR coefficients, zero past the chosen order
    diff: np.ndarray  # (n,) 0 or 1
    sigma2: np.ndarray  # (n,) innovation variance
    u_tail: np.ndarray  # (n, ar_order_max + 1) last error levels, oldest first

    def mean(self) -> np.ndarray:
        """Original-scale forecast mean (log-normal bias adjustment)."""
        return np.exp(self.z_hat + 0.5 * self.variance)


def fit_windows(
    z: np.ndarray, spec: ModelSpec, *, window: int, horizon: int, origins: np.ndarray
) -> WindowFits:
    """Fit on z[o - window : o] for each origin o and forecast z[o : o + horizon]."""
    z = np.asarray(z, dtype=float)
    origins = np.asarray(origins, dtype=np.int64)
    if origins.min() < window or origins.max() > z.size:
        raise ValueError("every origin needs a full window of data before it")
    t = np.arange(z.size + horizon, dtype=float)
    level = _Branch.fit(z, t, spec, window=window, origins=origins, diff=0)
    if spec.diff is None:
        differenced = _Branch.fit(z, t, spec, window=window, origins=origins, diff=1)
        use_diff = level.kpss(spec.detrend) > KPSS_CRITICAL[spec.detrend]
    else:
        differenced = level if spec.diff == 0 else _Branch.fit(
            z, t, spec, window=window, origins=origins, diff=1
        )
        use_diff = np.full(origins.size, spec.diff == 1)
    pick = use_diff[:, None]
    z_hat = np.where(pick, differenced.forecast(t, horizon), level.forecast(t, horizon))
    phi = np.where(pick, differenced.phi, level.phi)
    sigma2 = np.where(use_diff, differenced.sigma2, level.sigma2)
    u_tail = np.where(pick, differenced.u_tail, level.u_tail)
    beta = np.where(pick, _pad_to(differenced.beta, level.beta.shape[1]), level.beta)
    variance = forecast_variance(phi, sigma2, use_diff.astype(int), horizon)
    return WindowFits(origins, z_hat, variance, beta, phi, use_diff.astype(int), sigma2, u_tail)


def _pad_to(beta: np.ndarray, width: int) -> np.ndarray:
    """Differenced fits have no intercept: put a zero first so both branches share a layout."""
    return np.hstack([np.zeros((beta.shape[0], width - beta.shape[1])), beta])


@dataclass
class _Branch:
    """One error model (levels or differences) fitted on every window."""

    spec: ModelSpec
    diff: int
    origins: np.ndarray
    beta: np.ndarray
    residuals: np.ndarray  # (n, window) error levels u
    phi: np.ndarray
    sigma2: np.ndarray

    @classmethod
    def fit(cls, z, t, spec: ModelSpec, *, window: int, origins: np.ndarray, diff: int) -> "_Branch":
        n_obs = z.size
        X = design_matrix(t[:n_obs], spec, intercept=diff == 0)
        starts = origins - window
        if diff:
            beta = _window_ols(np.diff(z), np.diff(X, axis=0), starts, origins - 1)
        else:
            beta = _window_ols(z, X, starts, origins)
        residuals = _window_residuals(z, X, beta, starts, window)
        errors = np.diff(residuals, axis=1) if diff else residuals
        phi, sigma2 = _ar_select(errors, spec.ar_order_max)
        return cls(spec, diff, origins, beta, residuals, phi, sigma2)

    @property
    def u_tail(self) -> np.ndarray:
        return self.residuals[:, -(self.spec.ar_order_max + 1) :]

    def forecast(self, t: np.ndarray, horizon: int) -> np.ndarray:
        steps = self.origins[:, None] + np.arange(horizon)[None, :]
        X_future = design_matrix(t, self.spec, intercept=self.diff == 0)
        deterministic = np.einsum("nhq,nq->nh", X_future[steps], self.beta)
        errors = error_forecast(self.phi, self.u_tail, np.full(self.origins.size, self.diff), horizon)
        return deterministic + errors

    def kpss(self, trend: bool) -> np.ndarray:
        """KPSS statistic of each window's residuals (Newey-West long-run variance)."""
        u = self.residuals - self.residuals.mean(axis=1, keepdims=True)
        n = u.shape[1]
        partial = np.cumsum(u, axis=1)
        lags = int(np.floor(4 * (n / 100.0) ** 0.25))
        long_run = np.mean(u * u, axis=1)
        for j in range(1, lags + 1):
            gamma = np.sum(u[:, j:] * u[:, :-j], axis=1) / n
            long_run += 2 * (1 - j / (lags + 1)) * gamma
        del trend
        return np.sum(partial**2, axis=1) / (n**2 * long_run)


def _window_ols(y: np.ndarray, X: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Least squares of y on X over rows [start, end) for each window, via prefix sums."""
    q = X.shape[1]
    if q == 0:
        return np.zeros((starts.size, 0))
    outer = np.zeros((X.shape[0] + 1, q, q))
    np.cumsum(X[:, :, None] * X[:, None, :], axis=0, out=outer[1:])
    cross = np.zeros((X.shape[0] + 1, q))
    np.cumsum(X * y[:, None], axis=0, out=cross[1:])
    gram = outer[ends] - outer[starts]
    rhs = cross[ends] - cross[starts]
    scale = np.einsum("nii->n", gram) / q
    gram = gram + (RIDGE * scale)[:, None, None] * np.eye(q)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def _window_residuals(
    z: np.ndarray, X: np.ndarray, beta: np.ndarray, starts: np.ndarray, window: int
) -> np.ndarray:
    """u = z - X beta on each window (column by column, never materialising window x q x n)."""
    fitted = np.zeros((starts.size, window))
    for j in range(X.shape[1]):
        fitted += sliding_window_view(X[:, j], window)[starts] * beta[:, j, None]
    return sliding_window_view(z, window)[starts] - fitted


def _ar_select(errors: np.ndarray, p_max: int) -> tuple[np.ndarray, np.ndarray]:
    """AR(p) by least squares for p = 0..p_max on a common sample; keep the lowest AICc per row."""
    n, length = errors.shape
    target = errors[:, p_max:]
    m = target.shape[1]
    lagged = [errors[:, p_max - i : length - i] for i in range(1, p_max + 1)]
    gram = np.empty((n, p_max, p_max))
    rhs = np.empty((n, p_max))
    for i in range(p_max):
        rhs[:, i] = np.einsum("nt,nt->n", lagged[i], target)
        for j in range(i, p_max):
            gram[:, i, j] = gram[:, j, i] = np.einsum("nt,nt->n", lagged[i], lagged[j])
    total = np.einsum("nt,nt->n", target, target)
    best_phi = np.zeros((n, p_max))
    best_sigma2 = total / m
    best_aicc = _aicc(best_sigma2, m, 0)
    for p in range(1, p_max + 1):
        g = gram[:, :p, :p] + 1e-12 * np.eye(p)
        phi = np.linalg.solve(g, rhs[:, :p, None])[..., 0]
        ssr = np.maximum(total - np.einsum("np,np->n", phi, rhs[:, :p]), 1e-300)
        sigma2 = ssr / m
        aicc = _aicc(sigma2, m, p)
        better = aicc < best_aicc
        best_aicc = np.where(better, aicc, best_aicc)
        best_sigma2 = np.where(better, ssr / (m - p), best_sigma2)
        padded = np.zeros((n, p_max))
        padded[:, :p] = phi
        best_phi = np.where(better[:, None], padded, best_phi)
    return best_phi, best_sigma2


def _aicc(sigma2: np.ndarray, m: int, p: int) -> np.ndarray:
    k = p + 1
    return m * np.log(sigma2) + 2 * k + 2 * k * (k + 1) / max(m - k - 1, 1)
