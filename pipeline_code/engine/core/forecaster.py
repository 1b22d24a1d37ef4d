"""Forecast from a model artifact with NumPy only: what the serving container runs.

Imports nothing from training (no SciPy, statsmodels or pandas) and unpickles nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.calibration import bounds
from pipeline_code.engine.core.arima import error_forecast, forecast_variance
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.spec import ModelSpec


@dataclass(frozen=True)
class Forecast:
    """A forecast path with a central prediction interval at level ``conf``."""

    timestamps: list[date]
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    conf: float

    def records(self) -> list[dict[str, Any]]:
        return [
            {"timestamp": ts.isoformat(), "mean": float(m), "lower": float(lo), "upper": float(hi)}
            for ts, m, lo, hi in zip(self.timestamps, self.mean, self.lower, self.upper, strict=True)
        ]


class Forecaster:
    """A fitted harmonic-regression model with ARIMA errors and calibrated intervals."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        self.spec = ModelSpec.from_dict(artifact.spec)
        self.calendar = parse_freq(artifact.freq)
        self.last_timestamp = date.fromisoformat(artifact.last_timestamp)
        params = artifact.parameters
        self._beta = np.asarray(params["beta"], dtype=float)
        self._phi = np.asarray(params["phi"], dtype=float)[None, :]
        self._theta = np.array([float(params["theta"])])
        self._x_tail = np.asarray(params["x_tail"], dtype=float)[None, :]
        self._u_last = np.array([float(params["u_last"])])
        self._diff = np.array([int(params["diff"])])
        self._sigma2 = np.array([float(params["sigma2"])])
        self._scale = float(params["error_scale"])
        self._errors = np.sort(np.asarray(artifact.calibration_errors, dtype=float), axis=0)

    @classmethod
    def load(cls, folder: str | Path) -> "Forecaster":
        return cls(ModelArtifact.load(folder))

    @property
    def metadata(self) -> dict[str, Any]:
        return self.artifact.metadata

    @property
    def calibrated_horizon(self) -> int:
        return self._errors.shape[1]

    def log_forecast(self, periods: int) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale point forecast and model-based variance for steps 1..periods."""
        t = self.artifact.t_last + np.arange(1, periods + 1, dtype=float)
        deterministic = design_matrix(t, self.spec, intercept=True) @ self._beta
        errors = error_forecast(self._phi, self._theta, self._x_tail, self._u_last, self._diff, periods)[0]
        variance = forecast_variance(self._phi, self._theta, self._sigma2, self._diff, periods)[0]
        return deterministic + errors, variance

    def predict(self, periods: int, conf: float) -> Forecast:
        """Forecast ``periods`` steps after the last observation with a ``conf`` interval."""
        if periods < 1:
            raise ValueError("periods must be at least 1")
        if not 0.0 < conf < 1.0:
            raise ValueError("conf must be strictly between 0 and 1")
        z_hat, variance = self.log_forecast(periods)
        low_q, high_q = self.error_quantiles(conf, variance)
        return Forecast(
            timestamps=self.calendar.future(self.last_timestamp, periods),
            mean=np.exp(z_hat + 0.5 * variance),
            lower=np.exp(z_hat + low_q),
            upper=np.exp(z_hat + high_q),
            conf=conf,
        )

    def error_quantiles(self, conf: float, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale interval offsets per step (see ``calibration``).

        Steps within the cross-validated horizon use that step's normalised CV errors times the
        current error scale; steps past it scale the last step's offsets by the model's variance
        growth.
        """
        horizon = self._errors.shape[1]
        low, high = bounds(self._errors, conf)
        low, high = low * self._scale, high * self._scale
        periods = variance.size
        steps = np.minimum(np.arange(periods), horizon - 1)
        low, high = low[steps], high[steps]
        if periods > horizon:
            growth = np.sqrt(np.maximum(variance / variance[horizon - 1], 1.0))
            low, high = low * growth, high * growth
        return low, high
