"""Forecast from a model artifact with NumPy only: what the serving container runs.

Imports nothing from training (no SciPy, statsmodels or pandas) and unpickles nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.calibration import bounds, capped
from pipeline_code.engine.core.paths import log_path, stored_periods
from pipeline_code.engine.settings import COMBINATION

# A section's parameters may name its point forecast; without it (every core but seasonal naive's, and a
# seasonal naive section written before the key) the point is the log-normal mean exp(z + v / 2) of the
# centre z and variance v its core gives.
POINT = "point"
LAST_SEASON = "last_season"  # seasonal naive's point: the value one season earlier, exp(z)


def point_path(core: str, spec: dict[str, Any], parameters: dict[str, Any], t_last: int, periods: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """``log_path``, with the centre of a section whose point is ``LAST_SEASON`` moved to z - v / 2 (the
    log-normal with mean exp(z), as ``families.seasonal_naive`` fits it), in a combination's members too:
    exp(centre + variance / 2) is then every section's point forecast."""
    if core == COMBINATION:
        parameters = {**parameters, "members": [_stored(m, t_last, periods) for m in parameters["members"]]}
    z, v = log_path(core, spec, parameters, t_last, periods)
    return (z - 0.5 * v if parameters.get(POINT) == LAST_SEASON else z), v


def _stored(member: dict[str, Any], t_last: int, periods: int) -> dict[str, Any]:
    """A combination's member as the stored path (core ``path``) of its ``point_path``."""
    centre, variance = point_path(member["core"], member["spec"], member["parameters"], t_last, periods)
    return {**member, "core": "path", "spec": {}, "parameters": {"centre": centre, "variance": variance}}


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
    """A fitted model of any family (its artifact section, see ``paths``) with calibrated intervals."""

    def __init__(self, artifact: ModelArtifact, *, sorted_errors: np.ndarray | None = None) -> None:
        """``sorted_errors``: the calibration errors already sorted per column (the items of a panel
        share one pooled array, sorted once)."""
        self.artifact = artifact
        self.calendar = parse_freq(artifact.freq)
        self.last_timestamp = date.fromisoformat(artifact.last_timestamp)
        self._scale = float(artifact.parameters["error_scale"])
        self._peak = float(artifact.parameters.get("error_peak", 0.0))  # absent before it was kept
        self._errors = (sorted_errors if sorted_errors is not None
                        else np.sort(np.asarray(artifact.calibration_errors, dtype=float), axis=0))
        scales = artifact.calibration_scales
        if scales is not None and np.shape(scales) != (np.shape(artifact.calibration_errors)[0],):
            raise ValueError(f"calibration_scales has shape {np.shape(scales)}; expected one scale per row"
                             f" of calibration_errors {np.shape(artifact.calibration_errors)}")
        # the errors unscaled, which cap the intervals (``calibration.capped``; None: not kept)
        self._raw = (None if sorted_errors is not None or scales is None
                     else np.sort(np.asarray(artifact.calibration_errors, float) * scales[:, None], axis=0))

    @classmethod
    def load(cls, folder: str | Path) -> "Forecaster":
        return cls(ModelArtifact.load(folder))

    @property
    def metadata(self) -> dict[str, Any]:
        return self.artifact.metadata

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The candidate this model was fitted from (family included; format-1 models are harmonic)."""
        found = dict(self.metadata.get("hyperparameters") or {})
        found.setdefault("family", self.artifact.family)
        return found

    @functools.cached_property
    def stored_periods(self) -> int | None:
        """The most steps it forecasts (a stored path's length: ``paths``), None without a limit."""
        return stored_periods(self.artifact.core, self.artifact.parameters)

    def periods_limit(self, server_limit: int) -> int:
        """The most steps a request may ask of it: the server's limit, or its stored path if shorter."""
        stored = self.stored_periods
        return server_limit if stored is None else min(server_limit, stored)

    @property
    def calibrated_horizon(self) -> int:
        return self._errors.shape[1]

    def log_forecast(self, periods: int) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale centre and model-based variance for steps 1..periods (``point_path``)."""
        a = self.artifact
        return point_path(a.core, a.spec, a.parameters, a.t_last, periods)

    def predict(self, periods: int, conf: float) -> Forecast:
        """Forecast ``periods`` steps after the last observation with a ``conf`` interval."""
        mean, lower, upper = self.paths(periods, conf)
        return Forecast(timestamps=self.calendar.future(self.last_timestamp, periods),
                        mean=mean, lower=lower, upper=upper, conf=conf)

    def paths(self, periods: int, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The mean, lower and upper paths of ``predict``, without the timestamps."""
        if periods < 1:
            raise ValueError("periods must be at least 1")
        if not 0.0 < conf < 1.0:
            raise ValueError("conf must be strictly between 0 and 1")
        log_mean, variance = self.log_mean(periods)
        low_q, high_q = self.error_quantiles(conf, variance)
        return np.exp(log_mean), np.exp(log_mean + low_q), np.exp(log_mean + high_q)

    def log_mean(self, periods: int) -> tuple[np.ndarray, np.ndarray]:
        """The log of the point forecast (the mean, ``exp(z + v / 2)``), which the intervals are placed
        around (see ``calibration``), and the model variance per step."""
        z_hat, variance = self.log_forecast(periods)
        return z_hat + 0.5 * variance, variance

    def calibrated_bounds(self, conf: float) -> tuple[np.ndarray, np.ndarray]:
        """The normalised calibration errors' bounds per step for a central ``conf`` interval."""
        return bounds(self._errors, conf)

    def error_quantiles(self, conf: float, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-scale interval offsets from the point forecast per step (see ``calibration``).

        Steps within the cross-validated horizon use that step's normalised CV errors times the
        current error scale, capped by the unscaled errors where they are kept; steps past it scale
        the last step's offsets by the model's variance growth.
        """
        horizon = self._errors.shape[1]
        low, high = self.calibrated_bounds(conf)
        low, high = low * self._scale, high * self._scale
        if self._raw is not None:
            low, high = capped(low, high, self._raw, conf, self._peak)
        periods = variance.size
        steps = np.minimum(np.arange(periods), horizon - 1)
        low, high = low[steps], high[steps]
        if periods > horizon and variance[horizon - 1] > 0:
            growth = np.sqrt(np.maximum(variance / variance[horizon - 1], 1.0))
            low, high = low * growth, high * growth
        return low, high
