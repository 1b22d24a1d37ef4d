"""The estimator users and entrypoints call: fit a candidate of any family (or a combination) on a
series, with intervals calibrated on its own out-of-sample CV errors, and export the artifact."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pipeline_code import __version__
from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calibration import SCALE_WINDOW, current_scale, local_scales, normalised
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.cv import (
    CVResult, cross_validate_candidate, is_batched, selection_origins, sliding_origins,
)
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.families import combination
from pipeline_code.engine.families.base import Context, FamilyError, Section
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.settings import SearchSpace

HISTORY_POINTS = 156
# A model is calibrated on at least this many CV splits with a known local error scale.
MIN_CALIBRATION_SPLITS = 8


@dataclass
class FitResult:
    """A fitted model: its artifact and the cross-validation it was calibrated on."""

    artifact: ModelArtifact
    cv: CVResult

    @property
    def forecaster(self) -> Forecaster:
        return Forecaster(self.artifact)


def calibration_origins(n: int, candidate: dict[str, Any], ctx: Context, *, step: int,
                        splits: int) -> np.ndarray:
    """The CV splits a model's intervals are calibrated on: every step-``step`` split for batched
    families, the thinned selection grid for the costly ones."""
    grid = sliding_origins(n, window=ctx.window, horizon=ctx.horizon, step=step)
    return grid if is_batched(candidate) else selection_origins(grid, splits)


def final_section(data: dict[bool, np.ndarray], candidate: dict[str, Any], ctx: Context) -> Section:
    """The candidate fitted on all of its data (each member, for a combination)."""
    if candidate["family"] == combination.COMBINATION:
        return combination.section([
            (member, float(w), final_section(data, member, ctx), member["family"])
            for member, w in zip(candidate["members"], candidate["weights"])
        ])
    y = data[bool(int(candidate.get("use_counterfactual_data", 1)))]
    return family(candidate["family"]).fit_final(y, candidate, ctx)


class ModelEstimator:
    """Fit one candidate: cross-validate it (its CV errors calibrate the intervals, see
    ``calibration``), then fit the final model on all the data."""

    def __init__(self, candidate: dict[str, Any], ctx: Context, *, step: int = 1,
                 splits: int = SearchSpace.selection_splits) -> None:
        self.candidate = candidate
        self.ctx = ctx
        self.step = step
        self.splits = splits

    def fit(
        self, series: Series, *, counterfactual: np.ndarray | None = None,
        target: np.ndarray | None = None, metadata: dict[str, Any] | None = None,
    ) -> FitResult:
        """Fit on ``series`` (and its counterfactual version, default: the series); CV errors are
        measured against ``target`` (default: the counterfactual)."""
        data = {False: np.asarray(series.values, float),
                True: np.asarray(series.values if counterfactual is None else counterfactual, float)}
        target = data[True] if target is None else np.asarray(target, float)
        origins = calibration_origins(len(series), self.candidate, self.ctx, step=self.step,
                                      splits=self.splits)
        cv = cross_validate_candidate(data, target, self.candidate, origins, self.ctx).succeeded()
        step1 = cv.log_errors[:, 0]
        calibration_errors = normalised(cv.log_errors, local_scales(step1))
        if calibration_errors.shape[0] < MIN_CALIBRATION_SPLITS:
            raise FamilyError(
                f"{self.candidate['family']}: {calibration_errors.shape[0]} CV splits calibrate the"
                f" intervals; at least {MIN_CALIBRATION_SPLITS} are needed")
        error_scale = current_scale(step1)
        section = final_section(data, self.candidate, self.ctx)
        history = series.tail(HISTORY_POINTS)
        artifact = ModelArtifact(
            spec=section.spec,
            freq=series.freq,
            last_timestamp=series.timestamps[-1].isoformat(),
            t_last=len(series) - 1,
            parameters={**section.parameters, "error_scale": error_scale},
            calibration_errors=calibration_errors,
            history={
                "timestamps": [ts.isoformat() for ts in history.timestamps],
                "values": history.values,
            },
            family=self.candidate["family"],
            core=section.core,
            metadata={
                "name": self.candidate["family"].replace("_", "-"),
                "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "training": {
                    "start": series.timestamps[0].isoformat(),
                    "end": series.timestamps[-1].isoformat(),
                    "observations": len(series),
                    "window": min(self.ctx.window, len(series)),
                    "horizon": self.ctx.horizon,
                    "cv_step": self.step,
                    "cv_splits": int(cv.origins.size),
                },
                "hyperparameters": self.candidate,
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


class HarmonicArimaForecaster(ModelEstimator):
    """The harmonic model with ARIMA errors for one ``ModelSpec``, calibrated on every step-``step``
    split of ``window`` observations."""

    def __init__(self, spec: ModelSpec, *, window: int, horizon: int, step: int = 1) -> None:
        super().__init__({"family": HARMONIC, **spec.hyperparameters()},
                         Context(spec.season_length, window, horizon, horizon), step=step)
        self.spec = spec
        self.window = window

    def fit(self, series: Series, *, target: np.ndarray | None = None,
            metadata: dict[str, Any] | None = None) -> FitResult:
        return super().fit(series, counterfactual=series.values, target=target, metadata=metadata)
