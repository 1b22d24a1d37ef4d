"""The estimator users and entrypoints call: fit a candidate of any family (or a combination) on a
series, with intervals calibrated on its own out-of-sample CV errors, and export the artifact."""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from pipeline_code import __version__
from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calibration import (
    CALIBRATION_SPLITS, COSTLY_CALIBRATION_SPLITS, SCALE_WINDOW, calibration_rows, current_peak, current_scale,
    local_scales,
)
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.cv import (
    CVResult, cross_validate_candidate, is_batched, sliding_origins, window_forecasts,
)
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.families import combination
from pipeline_code.engine.families.base import Context, FamilyError, Section, pooled_argument
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.registry import family

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


def calibration_splits(candidate: dict[str, Any]) -> int:
    """How many of the latest scaled CV splits calibrate ``candidate``'s intervals (see
    ``core.calibration``): fewer for a family that is costly to fit per split."""
    return CALIBRATION_SPLITS if is_batched(candidate) else COSTLY_CALIBRATION_SPLITS


def calibration_origins(n: int, candidate: dict[str, Any], ctx: Context, *, step: int) -> np.ndarray:
    """The CV splits a model's intervals are calibrated on, consecutive step-``step`` splits ending
    with the latest: every one for a batched family; for a costly one the latest
    ``calibration_splits`` and the ``SCALE_WINDOW`` before them that scale the first one."""
    grid = sliding_origins(n, window=ctx.window, horizon=ctx.horizon, step=step)
    return grid if is_batched(candidate) else grid[-(calibration_splits(candidate) + SCALE_WINDOW):]


def final_section(data: dict[bool, np.ndarray], candidate: dict[str, Any], ctx: Context,
                  pooled: dict[str, np.ndarray] | None = None) -> Section:
    """The candidate fitted on all of its data (each member, for a combination); ``pooled`` as in
    ``cv.window_forecasts``, one statistics matrix per pooled family."""
    if candidate["family"] == combination.COMBINATION:
        return combination.section([
            (member, float(w), final_section(data, member, ctx, pooled), member["family"])
            for member, w in zip(candidate["members"], candidate["weights"])
        ])
    y = data[bool(int(candidate.get("use_counterfactual_data", 1)))]
    return family(candidate["family"]).fit_final(y, candidate, ctx, **pooled_argument(pooled, candidate["family"]))


class ModelEstimator:
    """Fit one candidate: cross-validate it (its CV errors calibrate the intervals, see
    ``calibration``), then fit the final model on all the data."""

    def __init__(self, candidate: dict[str, Any], ctx: Context, *, step: int = 1,
                 splits: int | None = None) -> None:
        """``splits`` (the selection grid's size) no longer sets the calibration splits
        (``calibration_origins`` does); it is accepted for callers of the earlier signature."""
        del splits
        self.candidate = candidate
        self.ctx = ctx
        self.step = step

    def fit(
        self, series: Series, *, counterfactual: np.ndarray | None = None,
        target: np.ndarray | None = None, metadata: dict[str, Any] | None = None,
    ) -> FitResult:
        """Fit on ``series`` (and its counterfactual version, default: the series); CV errors are
        measured against ``target`` (default: the counterfactual)."""
        data = {False: np.asarray(series.values, float),
                True: np.asarray(series.values if counterfactual is None else counterfactual, float)}
        target = data[True] if target is None else np.asarray(target, float)
        origins = calibration_origins(len(series), self.candidate, self.ctx, step=self.step)
        cv = cross_validate_candidate(data, target, self.candidate, origins, self.ctx).succeeded()
        step1 = cv.log_errors[:, 0]
        scales = local_scales(step1)
        rows = calibration_rows(scales, calibration_splits(self.candidate))
        calibration_errors, calibration_scales = cv.log_errors[rows] / scales[rows, None], scales[rows]
        if calibration_errors.shape[0] < MIN_CALIBRATION_SPLITS:
            raise FamilyError(
                f"{self.candidate['family']}: {calibration_errors.shape[0]} CV splits calibrate the"
                f" intervals; at least {MIN_CALIBRATION_SPLITS} are needed")
        recent = np.concatenate([step1, self._recent_step1_errors(data, target, cv)])
        error_scale, error_peak = current_scale(recent), current_peak(recent)
        section = final_section(data, self.candidate, self.ctx)
        history = series.tail(HISTORY_POINTS)
        artifact = ModelArtifact(
            spec=section.spec,
            freq=series.freq,
            last_timestamp=series.timestamps[-1].isoformat(),
            t_last=len(series) - 1,
            parameters={**section.parameters, "error_scale": error_scale, "error_peak": error_peak},
            calibration_errors=calibration_errors,
            calibration_scales=calibration_scales,
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
                    "method": "locally scaled split conformal, capped by the unscaled and recent errors",
                    "splits": int(calibration_errors.shape[0]),
                    "scale_window": SCALE_WINDOW,
                    "error_scale": error_scale,
                    "error_peak": error_peak,
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

    def _recent_step1_errors(self, data: dict[bool, np.ndarray], target: np.ndarray, cv: CVResult
                             ) -> np.ndarray:
        """One-step errors from the origins after the last full-horizon split (their later steps are
        not observed yet), so the served scale is the RMS of the errors just before the forecast
        origin, as each backtest origin's is (not ``horizon`` periods older)."""
        recent = np.arange(int(cv.origins[-1]) + self.step, target.size, self.step)
        if recent.size == 0:
            return recent.astype(float)
        one_step = window_forecasts(data, self.candidate, recent, replace(self.ctx, horizon=1))
        ok = ~one_step.failed
        return np.log(target[recent[ok]]) - one_step.centre[ok, 0]


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
