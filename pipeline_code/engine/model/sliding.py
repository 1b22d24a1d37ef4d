"""Fit the model on many windows at once and forecast from each.

Every window is a from-scratch fit (regression, differencing by KPSS, the ARMA(p, 1) error model's
MA coefficient on a grid and AR order by AICc, AR coefficients by least squares), but the windows
share work: the regression's normal equations are differences of the design's running sums of outer
products, taken once over the series at the windows' bounds, so a window costs O(q^2) instead of
O(window q^2).

Windows may differ in length (all history before each origin, or a fixed window): the error series of
each window is right-aligned in one array and padded on the left with zeros, which every later step
(the MA filter, the lag sums, KPSS) either leaves at zero or excludes by the row's own length.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from pipeline_code.engine.core.arima import error_forecast, forecast_variance
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.spec import ModelSpec

RIDGE = 1e-8
# Bounds of windows closer than one per this many rows are summed over every row (``_running_sums``).
DENSE_BOUNDS = 8
# At most this many cells (windows x the longest window) in one batch, about 16 MB per array: more
# windows are fitted in batches (thousands of all-history windows on a long daily series).
MAX_CELLS = 2_000_000
KPSS_CRITICAL = {False: 0.463, True: 0.146}  # 5% level; level vs trend stationarity
# MA(1) coefficients tried for the errors (0 = pure AR); negative values smooth the level, like
# exponential smoothing (theta = alpha - 1 for ARIMA(0,1,1)).
THETA_GRID = (-0.95, -0.9, -0.85, -0.8, -0.7, -0.6, -0.45, -0.3, 0.0)


@dataclass
class WindowFits:
    """Per-window parameters and forecasts; row i belongs to origin ``origins[i]``."""

    origins: np.ndarray
    z_hat: np.ndarray  # (n, horizon) log-scale point forecasts
    variance: np.ndarray  # (n, horizon) model-based log-scale forecast variance
    beta: np.ndarray  # (n, q) regression coefficients of the chosen branch (padded)
    phi: np.ndarray  # (n, searched_ar_order) AR coefficients, zero past the chosen order
    theta: np.ndarray  # (n,) MA(1) coefficient
    diff: np.ndarray  # (n,) 0 or 1
    sigma2: np.ndarray  # (n,) innovation variance
    x_tail: np.ndarray  # (n, searched_ar_order + 1) last values of the MA-filtered errors, oldest first
    u_last: np.ndarray  # (n,) last error level

    def mean(self) -> np.ndarray:
        """Original-scale forecast mean (log-normal bias adjustment)."""
        return np.exp(self.z_hat + 0.5 * self.variance)


def fit_windows(
    z: np.ndarray, spec: ModelSpec, *, window: int, horizon: int, origins: np.ndarray,
    starts: np.ndarray | None = None,
) -> WindowFits:
    """Fit on z[s : o] for each origin o and forecast z[o : o + horizon]; s is ``o - window``, or
    ``starts`` when given (e.g. zeros: all history before each origin)."""
    z = np.asarray(z, dtype=float)
    origins = np.asarray(origins, dtype=np.int64)
    starts = origins - window if starts is None else np.asarray(starts, dtype=np.int64)
    if starts.min() < 0 or origins.max() > z.size:
        raise ValueError("every origin needs a full window of data before it")
    batch = max(1, MAX_CELLS // int((origins - starts).max()))
    if origins.size > batch:
        parts = [fit_windows(z, spec, window=window, horizon=horizon, origins=origins[i:i + batch],
                             starts=starts[i:i + batch]) for i in range(0, origins.size, batch)]
        return WindowFits(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(WindowFits)))
    t = np.arange(z.size + horizon, dtype=float)
    rows = _Rows(starts, origins)
    level = _Branch.fit(z, t, spec, rows=rows, diff=0)
    if spec.diff is None:
        differenced = _Branch.fit(z, t, spec, rows=rows, diff=1)
        use_diff = level.kpss() > KPSS_CRITICAL[spec.detrend]
    else:
        differenced = level if spec.diff == 0 else _Branch.fit(z, t, spec, rows=rows, diff=1)
        use_diff = np.full(origins.size, spec.diff == 1)
    pick = use_diff[:, None]
    z_hat = np.where(pick, differenced.forecast(t, horizon), level.forecast(t, horizon))
    phi = np.where(pick, differenced.phi, level.phi)
    theta = np.where(use_diff, differenced.theta, level.theta)
    sigma2 = np.where(use_diff, differenced.sigma2, level.sigma2)
    x_tail = np.where(pick, differenced.x_tail, level.x_tail)
    u_last = np.where(use_diff, differenced.u_last, level.u_last)
    beta = np.where(pick, _pad_to(differenced.beta, level.beta.shape[1]), level.beta)
    diff = use_diff.astype(int)
    variance = forecast_variance(phi, theta, sigma2, diff, horizon)
    return WindowFits(origins, z_hat, variance, beta, phi, theta, diff, sigma2, x_tail, u_last)


def searched_ar_order(spec: ModelSpec, shortest: int) -> int:
    """The highest AR order searched on windows of at least ``shortest`` values: ``spec.ar_order_max``,
    lower on a short window (yearly data) so the search's common sample (the errors after the first
    p_max, one fewer when differenced) exceeds every candidate's parameters by at least two, which
    AICc's small-sample term needs."""
    return max(0, min(spec.ar_order_max, (shortest - 5) // 2))


def _pad_to(beta: np.ndarray, width: int) -> np.ndarray:
    """Differenced fits have no intercept: put a zero first so both branches share a layout."""
    return np.hstack([np.zeros((beta.shape[0], width - beta.shape[1])), beta])


@dataclass(frozen=True)
class _Rows:
    """The windows [starts, ends), right-aligned in arrays ``width`` wide: row i's values occupy its
    last ``lengths[i]`` columns and ``offsets[i]`` zeros come first."""

    starts: np.ndarray
    ends: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    @property
    def width(self) -> int:
        return int(self.lengths.max())

    @property
    def offsets(self) -> np.ndarray:
        return self.width - self.lengths

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        columns = self.ends[:, None] - self.width + np.arange(self.width)[None, :]
        before = columns < self.starts[:, None]
        return np.where(before, 0, columns), before

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Each row's window of the series ``values``, zeros before it."""
        columns, before = self._index
        taken = values[columns]
        taken[before] = 0.0
        return taken


@dataclass
class _Branch:
    """One error model (levels or differences) fitted on every window."""

    spec: ModelSpec
    diff: int
    origins: np.ndarray
    rows: _Rows
    beta: np.ndarray
    residuals: np.ndarray  # (n, width) error levels u, right-aligned (zeros before each window)
    phi: np.ndarray
    theta: np.ndarray
    sigma2: np.ndarray
    x_tail: np.ndarray

    @classmethod
    def fit(cls, z, t, spec: ModelSpec, *, rows: _Rows, diff: int) -> "_Branch":
        n_obs = z.size
        X = design_matrix(t[:n_obs], spec, intercept=diff == 0)
        if diff:
            beta = _window_ols(np.diff(z), np.diff(X, axis=0), rows.starts, rows.ends - 1)
        else:
            beta = _window_ols(z, X, rows.starts, rows.ends)
        residuals = rows.gather(z)
        for j in range(X.shape[1]):  # u = z - X beta inside each window, never wider than the windows
            residuals -= rows.gather(X[:, j]) * beta[:, j, None]
        errors = np.diff(residuals, axis=1) if diff else residuals
        if diff:  # a padded row's first difference is against the padding, not inside its window
            errors[np.arange(errors.shape[1])[None, :] < rows.offsets[:, None]] = 0.0
        phi, theta, sigma2, x_tail = _arma_select(errors, rows.offsets,
                                                  searched_ar_order(spec, int(rows.lengths.min())))
        return cls(spec, diff, rows.ends, rows, beta, residuals, phi, theta, sigma2, x_tail)

    @property
    def u_last(self) -> np.ndarray:
        return self.residuals[:, -1]

    def forecast(self, t: np.ndarray, horizon: int) -> np.ndarray:
        steps = self.origins[:, None] + np.arange(horizon)[None, :]
        X_future = design_matrix(t, self.spec, intercept=self.diff == 0)
        deterministic = np.einsum("nhq,nq->nh", X_future[steps], self.beta)
        diff = np.full(self.origins.size, self.diff)
        errors = error_forecast(self.phi, self.theta, self.x_tail, self.u_last, diff, horizon)
        return deterministic + errors

    def kpss(self) -> np.ndarray:
        """KPSS statistic of each window's residuals (Newey-West long-run variance, lags by length)."""
        n = self.rows.lengths
        inside = np.arange(self.rows.width)[None, :] >= self.rows.offsets[:, None]
        u = np.where(inside, self.residuals - (self.residuals.sum(axis=1) / n)[:, None], 0.0)
        partial = np.cumsum(u, axis=1)
        lags = np.floor(4 * (n / 100.0) ** 0.25).astype(int)
        long_run = np.sum(u * u, axis=1) / n
        for j in range(1, int(lags.max()) + 1):
            gamma = np.sum(u[:, j:] * u[:, :-j], axis=1) / n
            long_run += np.where(j <= lags, 2 * (1 - j / (lags + 1)) * gamma, 0.0)
        return np.sum(partial**2, axis=1) / (n.astype(float) ** 2 * long_run)


def _window_ols(y: np.ndarray, X: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Least squares of y on X over rows [start, end) for each window: the normal equations are
    differences of running sums of X'X and X'y, needed at the windows' bounds only."""
    q = X.shape[1]
    if q == 0:
        return np.zeros((starts.size, 0))
    bounds = np.unique(np.concatenate([starts, ends]))
    outer, cross = _running_sums(y, X, bounds)
    at_start, at_end = np.searchsorted(bounds, starts), np.searchsorted(bounds, ends)
    gram = outer[at_end] - outer[at_start]
    rhs = cross[at_end] - cross[at_start]
    scale = np.einsum("nii->n", gram) / q
    gram = gram + (RIDGE * scale)[:, None, None] * np.eye(q)
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def _running_sums(y: np.ndarray, X: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of X'X and X'y over rows [0, b) for each bound b (sorted, distinct): by matrix products
    between consecutive bounds when they are sparse (a few windows on a long series, where the rows'
    outer products would cost O(n q^2) memory), else one cumulative sum over the rows."""
    q, last = X.shape[1], int(bounds[-1])
    if bounds.size * DENSE_BOUNDS < last:
        outer, cross = np.empty((bounds.size, q, q)), np.empty((bounds.size, q))
        previous = 0
        for i, bound in enumerate(bounds):
            block = X[previous:bound]
            outer[i], cross[i] = block.T @ block, block.T @ y[previous:bound]
            previous = bound
        return np.cumsum(outer, axis=0), np.cumsum(cross, axis=0)
    outer, cross = np.zeros((last + 1, q, q)), np.zeros((last + 1, q))
    np.cumsum(X[:last, :, None] * X[:last, None, :], axis=0, out=outer[1:])
    np.cumsum(X[:last] * y[:last, None], axis=0, out=cross[1:])
    return outer[bounds], cross[bounds]


def _arma_select(errors: np.ndarray, offsets: np.ndarray, p_max: int):
    """ARMA(p, 1) by conditional least squares: for each theta of the grid, AR(p) of the filtered
    series x = e / (1 + theta B); keep the (theta, p) with the lowest AICc per row. Row i's errors
    start at column ``offsets[i]`` (zeros before: the filter starts from x = 0 there).

    Returns phi (n, p_max), theta (n,), sigma2 (n,), x_tail (n, p_max + 1).
    """
    n = errors.shape[0]
    best_aicc = np.full(n, np.inf)
    best_phi, best_theta = np.zeros((n, p_max)), np.zeros(n)
    best_sigma2, best_tail = np.zeros(n), np.zeros((n, p_max + 1))
    for theta in THETA_GRID:
        x = inverse_ma(errors, theta) if theta else errors
        phi, sigma2, aicc = _ar_select(x, offsets, p_max, extra_params=int(theta != 0))
        better = aicc < best_aicc
        best_aicc = np.where(better, aicc, best_aicc)
        best_phi = np.where(better[:, None], phi, best_phi)
        best_theta = np.where(better, theta, best_theta)
        best_sigma2 = np.where(better, sigma2, best_sigma2)
        best_tail = np.where(better[:, None], x[:, -(p_max + 1) :], best_tail)
    return best_phi, best_theta, best_sigma2, best_tail


def inverse_ma(errors: np.ndarray, theta: float) -> np.ndarray:
    """x = e / (1 + theta B) along each row: x[t] = e[t] - theta x[t - 1], from x[-1] = 0.

    The same operations as ``scipy.signal.lfilter([1], [1, theta], errors, axis=1)`` (bit for bit),
    in NumPy: importing ``scipy.signal`` costs every job and CLI process about 1.3 s, more than a
    search's filtering takes.
    """
    columns = np.ascontiguousarray(errors.T)
    out = np.empty_like(columns)
    previous = np.zeros(columns.shape[1:])
    for t, column in enumerate(columns):
        previous = column - theta * previous
        out[t] = previous
    return out.T


def _ar_select(
    errors: np.ndarray, offsets: np.ndarray, p_max: int, extra_params: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AR(p) by least squares for p = 0..p_max on a common sample (each row's values after its first
    p_max); keep the lowest AICc per row.

    Returns phi (n, p_max), sigma2 (n,) and the AICc (n,) of the kept order.
    """
    n, width = errors.shape
    m = width - offsets - p_max
    gram, rhs, total = _lag_moments(errors, offsets, p_max)
    best_phi = np.zeros((n, p_max))
    best_sigma2 = total / m
    best_aicc = _aicc(best_sigma2, m, extra_params)
    for p in range(1, p_max + 1):
        g = gram[:, :p, :p] + 1e-12 * np.eye(p)
        phi = np.linalg.solve(g, rhs[:, :p, None])[..., 0]
        ssr = np.maximum(total - np.einsum("np,np->n", phi, rhs[:, :p]), 1e-300)
        sigma2 = ssr / m
        aicc = _aicc(sigma2, m, p + extra_params)
        better = aicc < best_aicc
        best_aicc = np.where(better, aicc, best_aicc)
        best_sigma2 = np.where(better, ssr / (m - p), best_sigma2)
        padded = np.zeros((n, p_max))
        padded[:, :p] = phi
        best_phi = np.where(better[:, None], padded, best_phi)
    return best_phi, best_sigma2, best_aicc


def _lag_moments(
    x: np.ndarray, offsets: np.ndarray, p_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal equations of the AR(p_max) regression of x_t on x_{t-1..t-p_max}, for t from each row's
    offset + p_max to its end.

    Every entry is a sum of x_s x_{s-k} over almost the whole row, so each lag's full sum, less a few
    terms at either end, gives them all: p_max + 1 passes over the data instead of p_max^2 / 2. The
    zeros before a row's offset add nothing to a full sum.
    """
    n, length = x.shape
    edge = p_max + 2
    head_width = int(offsets.max()) + edge
    row = np.arange(n)
    full, head, tail = [], [], []
    for k in range(p_max + 1):
        product = x[:, k:] * x[:, : length - k]  # column j is x_{j+k} x_j
        full.append(product.sum(axis=1))
        head.append(np.concatenate(
            [np.zeros((n, 1)), np.cumsum(product[:, :head_width], axis=1)], axis=1))
        tail.append(np.concatenate(
            [np.zeros((n, 1)), np.cumsum(product[:, ::-1][:, :edge], axis=1)], axis=1))

    def lagged_sum(k: int, start: int, stop: int) -> np.ndarray:
        """Sum of x_s x_{s-k} for s in [offset + start, stop)."""
        return full[k] - head[k][row, offsets + start - k] - tail[k][:, length - stop]

    gram = np.empty((n, p_max, p_max))
    rhs = np.empty((n, p_max))
    for i in range(p_max):
        rhs[:, i] = lagged_sum(i + 1, p_max, length)
        for j in range(i, p_max):
            gram[:, i, j] = gram[:, j, i] = lagged_sum(j - i, p_max - i - 1, length - i - 1)
    return gram, rhs, lagged_sum(0, p_max, length)


def _aicc(sigma2: np.ndarray, m: np.ndarray, p: int) -> np.ndarray:
    k = p + 1
    return m * np.log(sigma2) + 2 * k + 2 * k * (k + 1) / np.maximum(m - k - 1, 1)
