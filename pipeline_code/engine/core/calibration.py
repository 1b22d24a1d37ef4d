"""Calibrated prediction intervals from out-of-sample errors (NumPy only; serving imports it).

Locally scaled split conformal: each CV split's log errors are divided by a *local scale*, the RMS of
the previous ``scale_window`` one-step-ahead out-of-sample errors (known at that split's origin); the
per-step quantiles of the most recent ``calibration_splits`` normalised errors, times the scale at
the forecast origin, give the interval. The error level of weekly gasoline demand moves by a factor
of three between calm and volatile years, so unscaled pooled errors under-cover after calm spells
and over-cover after volatile ones; the local scale tracks that.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from pipeline_code.engine.settings import SCALE_WINDOW

# The latest this many scaled CV splits calibrate a model whose every step-1 split is cheap (batched).
CALIBRATION_SPLITS = 260
# A model that is costly to fit per split (a statsforecast family, or a combination with one) is
# calibrated on this many consecutive latest splits (two years of weekly origins), each scaled by the
# ``SCALE_WINDOW`` splits before it: as current as the batched families' scale, at 130 fits rather
# than all of them. (A thinned grid spread over the history made every split's scale the RMS of
# errors years apart, and the served scale a long-run average: gasoline's 95% intervals covered 81%.)
COSTLY_CALIBRATION_SPLITS = 104


def local_scales(step1_errors: np.ndarray, window: int = SCALE_WINDOW) -> np.ndarray:
    """Scale known at each split: RMS of the ``window`` previous splits' one-step errors (NaN first).

    Split k's one-step target is its origin, which precedes split k+1's origin, so the errors used
    for split k are all observed before split k's origin (given consecutive, step-1 origins).
    """
    e2 = np.concatenate([[0.0], np.cumsum(np.asarray(step1_errors, float) ** 2)])
    k = np.arange(step1_errors.size)
    lo = np.maximum(0, k - window)
    count = k - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt((e2[k] - e2[lo]) / count)
    scale[count < max(2, window // 2)] = np.nan
    return scale


def current_scale(step1_errors: np.ndarray, window: int = SCALE_WINDOW) -> float:
    """The scale after the last split: RMS of the last ``window`` one-step errors."""
    tail = np.asarray(step1_errors, float)[-window:]
    return float(np.sqrt(np.mean(tail**2)))


def normalised(log_errors: np.ndarray, scales: np.ndarray, keep: int = CALIBRATION_SPLITS) -> np.ndarray:
    """The most recent ``keep`` rows of errors / scale, skipping rows without a scale."""
    ok = np.isfinite(scales) & (scales > 0)
    return (log_errors[ok] / scales[ok, None])[-keep:]


def bounds(sorted_errors: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column conformal lower/upper order statistics for a central ``conf`` interval.

    Tails finer than the sample resolves fall back to a normal with the column's mean and spread.
    """
    n = sorted_errors.shape[0]
    alpha = 1.0 - conf
    return (_order_statistic(sorted_errors, alpha / 2, n, upper=False),
            _order_statistic(sorted_errors, 1 - alpha / 2, n, upper=True))


def _order_statistic(sorted_errors: np.ndarray, level: float, n: int, *, upper: bool) -> np.ndarray:
    rank = math.ceil((n + 1) * level) if upper else math.floor((n + 1) * level)
    if 1 <= rank <= n:
        return sorted_errors[rank - 1]
    z = NormalDist().inv_cdf(level)
    return sorted_errors.mean(axis=0) + z * sorted_errors.std(axis=0, ddof=1)
