"""The estimator users and entrypoints call: fit on a series, forecast, export the artifact."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pipeline_code import __version__
from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calibration import SCALE_WINDOW, current_scale, local_scales, normalised
from pipeline_code.engine.cv import CVResult, cross_validate
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.model.sliding import fit_windows
from pipeline_code.engine.core.spec import ModelSpec

HISTORY_POINTS = 156


@dataclass
class FitResult:
    """A fitted model: its artifact and the cross-validation it was calibrated on."""

    artifact: ModelArtifact
    cv: CVResult

    @property
    def forecaster(self) -> Forecaster:
        return Forecaster(self.artifact)


class HarmonicArimaForecaster:
    """Harmonic regression with ARIMA errors on the log scale, with CV-calibrated intervals.

    ``fit`` cross-validates the specification on sliding windows of the series (its out-of-sample
    errors calibrate the intervals, see ``calibration``) and fits the final model on the last
    ``window`` observations.
    """

    def __init__(self, spec: ModelSpec, *, window: int, horizon: int, step: int = 1) -> None:
        self.spec = spec
        self.window = window
        self.horizon = horizon
        self.step = step

    def fit(
        self, series: Series, *, target: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> FitResult:
        """Fit on ``series``; CV errors are measured against ``target`` (default: the series)."""
        cv = cross_validate(
            series.values, self.spec, window=self.window, horizon=self.horizon, step=self.step,
            target=target,
        )
        step1 = cv.log_errors[:, 0]
        calibration_errors = normalised(cv.log_errors, local_scales(step1))
        error_scale = current_scale(step1)
        window = min(self.window, len(series))
        z = np.log(series.values)
        final = fit_windows(z, self.spec, window=window, horizon=1, origins=np.array([z.size]))
        history = series.tail(HISTORY_POINTS)
        artifact = ModelArtifact(
            spec=self.spec.to_dict(),
            freq=series.freq,
            last_timestamp=series.timestamps[-1].isoformat(),
            t_last=z.size - 1,
            parameters={
                "beta": final.beta[0],
                "phi": final.phi[0],
                "theta": float(final.theta[0]),
                "diff": int(final.diff[0]),
                "sigma2": float(final.sigma2[0]),
                "x_tail": final.x_tail[0],
                "u_last": float(final.u_last[0]),
                "error_scale": error_scale,
            },
            calibration_errors=calibration_errors,
            history={
                "timestamps": [ts.isoformat() for ts in history.timestamps],
                "values": history.values,
            },
            metadata={
                "name": "harmonic-arima",
                "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "training": {
                    "start": series.timestamps[0].isoformat(),
                    "end": series.timestamps[-1].isoformat(),
                    "observations": len(series),
                    "window": window,
                    "horizon": self.horizon,
                    "cv_step": self.step,
                    "cv_splits": int(cv.origins.size),
                },
                "hyperparameters": self.spec.hyperparameters(),
                "metrics": {f"cv_{k}": v for k, v in cv.metrics().items()},
                "calibration": {
                    "method": "locally scaled split conformal",
                    "splits": int(calibration_errors.shape[0]),
                    "scale_window": SCALE_WINDOW,
                    "error_scale": error_scale,
                },
                "libraries": {
                    "forecast_mlops": __version__,
                    "numpy": np.__version__,
                    "python": platform.python_version(),
                },
                **(metadata or {}),
            },
        )
        return FitResult(artifact, cv)
