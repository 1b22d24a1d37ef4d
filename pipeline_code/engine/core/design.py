"""Deterministic regressors of the model, as functions of the absolute step index t (NumPy only)."""

from __future__ import annotations

import numpy as np

from pipeline_code.engine.core.spec import ModelSpec


def design_matrix(t: np.ndarray, spec: ModelSpec, *, intercept: bool) -> np.ndarray:
    """Columns: [1], [t / season_length], [seasonal dummies 1..P-1], [sin, cos of k 2 pi t / m]."""
    t = np.asarray(t, dtype=float)
    columns: list[np.ndarray] = []
    if intercept:
        columns.append(np.ones_like(t))
    if spec.detrend:
        columns.append(t / spec.season_length)
    if spec.deseasonalize:
        period = spec.seasonal_period
        phase = np.mod(np.round(t).astype(np.int64), period)
        columns.extend((phase == j).astype(float) for j in range(1, period))
    for k in range(1, spec.fourier_k + 1):
        angle = 2.0 * np.pi * k * t / spec.season_length
        columns.append(np.sin(angle))
        columns.append(np.cos(angle))
    if not columns:
        return np.zeros((t.size, 0))
    return np.column_stack(columns)
