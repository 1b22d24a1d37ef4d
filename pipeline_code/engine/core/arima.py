"""Forecast recursions of ARIMA(p, d, 1) errors, d in {0, 1} (NumPy only, batched over rows).

The errors u of the regression follow ARMA(p, 1) in levels (d = 0) or in first differences
w_t = u_t - u_{t-1} (d = 1). With theta the MA coefficient, the filtered series x = w / (1 + theta B)
is AR(p); forecasts run the AR recursion on x and map back: w = x + theta x_{t-1}.
"""

from __future__ import annotations

import numpy as np


def ar_forecast(phi: np.ndarray, tail: np.ndarray, steps: int) -> np.ndarray:
    """Point forecasts of an AR process.

    phi: (n, p) coefficients; tail: (n, p) last observations, oldest first; returns (n, steps).
    """
    n, p = phi.shape
    buffer = np.zeros((n, p + steps))
    buffer[:, :p] = tail
    for h in range(steps):
        if p:
            buffer[:, p + h] = np.einsum("ij,ij->i", phi, buffer[:, h : p + h][:, ::-1])
    return buffer[:, p:]


def psi_weights(phi: np.ndarray, theta: np.ndarray, diff: np.ndarray, steps: int) -> np.ndarray:
    """MA(infinity) weights psi_0..psi_{steps-1} of the error process (differenced rows integrate)."""
    n, p = phi.shape
    psi = np.zeros((n, steps))
    psi[:, 0] = 1.0
    for j in range(1, steps):
        if j == 1:
            psi[:, j] += np.asarray(theta, dtype=float)
        for i in range(1, min(p, j) + 1):
            psi[:, j] += phi[:, i - 1] * psi[:, j - i]
    integrated = np.cumsum(psi, axis=1)
    return np.where(np.asarray(diff, dtype=bool)[:, None], integrated, psi)


def forecast_variance(
    phi: np.ndarray, theta: np.ndarray, sigma2: np.ndarray, diff: np.ndarray, steps: int
) -> np.ndarray:
    """Model-based h-step forecast error variance, (n, steps)."""
    psi = psi_weights(phi, theta, diff, steps)
    return np.cumsum(psi**2, axis=1) * np.asarray(sigma2)[:, None]


def error_forecast(
    phi: np.ndarray, theta: np.ndarray, x_tail: np.ndarray, u_last: np.ndarray, diff: np.ndarray,
    steps: int,
) -> np.ndarray:
    """Forecast the regression errors u for ``steps`` steps.

    x_tail: (n, p + 1) last values of the filtered series x, oldest first; u_last: (n,) last error
    level (used when diff = 1).
    """
    x_hat = ar_forecast(phi, x_tail[:, 1:], steps)
    previous = np.concatenate([x_tail[:, -1:], x_hat[:, :-1]], axis=1)
    w_hat = x_hat + np.asarray(theta, dtype=float)[:, None] * previous
    integrated = np.asarray(u_last, dtype=float)[:, None] + np.cumsum(w_hat, axis=1)
    return np.where(np.asarray(diff, dtype=bool)[:, None], integrated, w_hat)
