"""Forecast recursions of AR(p) errors, integrated once or not (NumPy only, batched over rows)."""

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


def psi_weights(phi: np.ndarray, diff: np.ndarray, steps: int) -> np.ndarray:
    """MA(infinity) weights psi_0..psi_{steps-1} of the error process (differenced rows integrate)."""
    n, p = phi.shape
    psi = np.zeros((n, steps))
    psi[:, 0] = 1.0
    for j in range(1, steps):
        for i in range(1, min(p, j) + 1):
            psi[:, j] += phi[:, i - 1] * psi[:, j - i]
    integrated = np.cumsum(psi, axis=1)
    return np.where(np.asarray(diff, dtype=bool)[:, None], integrated, psi)


def forecast_variance(phi: np.ndarray, sigma2: np.ndarray, diff: np.ndarray, steps: int) -> np.ndarray:
    """Model-based h-step forecast error variance, (n, steps)."""
    psi = psi_weights(phi, diff, steps)
    return np.cumsum(psi**2, axis=1) * np.asarray(sigma2)[:, None]


def error_forecast(phi: np.ndarray, u_tail: np.ndarray, diff: np.ndarray, steps: int) -> np.ndarray:
    """Forecast the regression errors u from their last p + 1 levels.

    Rows with diff=1 model w = u_t - u_{t-1} as AR(p) and integrate; rows with diff=0 model u as AR(p).
    u_tail: (n, p + 1) last levels of u, oldest first.
    """
    diff = np.asarray(diff, dtype=bool)
    level_tail = u_tail[:, 1:]
    diff_tail = np.diff(u_tail, axis=1)
    tail = np.where(diff[:, None], diff_tail, level_tail)
    path = ar_forecast(phi, tail, steps)
    integrated = u_tail[:, -1:] + np.cumsum(path, axis=1)
    return np.where(diff[:, None], integrated, path)
