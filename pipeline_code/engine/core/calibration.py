"""Calibrated prediction intervals from out-of-sample errors (NumPy only; serving imports it).

Locally scaled split conformal: each CV split's log errors are divided by a *local scale*, the RMS of
the previous ``scale_window`` one-step-ahead out-of-sample errors (known at that split's origin); the
per-step quantiles of the most recent ``calibration_splits`` normalised errors, times the scale at
the forecast origin, give the interval. The error level of weekly gasoline demand moves by a factor
of three between calm and volatile years, so unscaled pooled errors under-cover after calm spells
and over-cover after volatile ones; the local scale tracks that.

The calibration sets an interval's spread and skew, the model its location: ``bounds`` centres each
step's errors on their median and the interval is placed around the point forecast (the mean), so
every central interval contains it and the median quantile equals it. (A median CV bias kept as a
shift put whole intervals beside their own mean; moving the mean by it instead changed backtest MASE
by -17% to +11% on seven audit series, while centring left the served models' coverage as it was;
docs/design.md has the figures and the cost for seasonal naive on trending series.)

An interval is never wider than the errors the model has made (``capped``): after a level shift,
the splits just past it divide a large error by the calm scale before it, and the served scale is
the large one after it, so the two multiply (a seasonal naive model doubled in level served a 95%
upper bound 14,000 times its point). The cap is the wider of each step's most extreme unscaled
calibration error (past the sample's resolution, the unscaled errors' own bound) and the largest
recent one-step error, the one the current scale is built from, grown to each step as the unscaled
errors grow: the calibration sample holds only splits whose whole horizon is observed, so it learns
of a new volatility a horizon late, while the one-step errors show it at once (capping by the sample
alone cut elecequip's backtest 95% coverage from 0.90 to 0.75 after the 2008 fall).
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


def current_peak(step1_errors: np.ndarray, window: int = SCALE_WINDOW) -> float:
    """The largest of the last ``window`` absolute one-step errors (the ones ``current_scale`` uses)."""
    tail = np.abs(np.asarray(step1_errors, float)[-window:])
    return float(tail.max()) if tail.size else 0.0


def local_peaks(step1_errors: np.ndarray, window: int = SCALE_WINDOW) -> np.ndarray:
    """The peak known at each split, as ``local_scales`` has its scale: the largest absolute one-step
    error of the ``window`` previous splits (0 for the first)."""
    e = np.abs(np.asarray(step1_errors, float))
    return np.array([e[max(0, k - window):k].max(initial=0.0) for k in range(e.size)])


def calibration_rows(scales: np.ndarray, keep: int = CALIBRATION_SPLITS) -> np.ndarray:
    """Indices of the most recent ``keep`` rows that have a scale."""
    return np.flatnonzero(np.isfinite(scales) & (scales > 0))[-keep:]


def normalised(log_errors: np.ndarray, scales: np.ndarray, keep: int = CALIBRATION_SPLITS) -> np.ndarray:
    """The most recent ``keep`` rows of errors / scale, skipping rows without a scale."""
    rows = calibration_rows(scales, keep)
    return log_errors[rows] / scales[rows, None]


def capped(low: np.ndarray, high: np.ndarray, sorted_raw: np.ndarray, conf: float, peak: float = 0.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Scaled offsets ``low``/``high`` narrowed to what the errors support: the wider of each tail's
    most extreme unscaled error (or the unscaled ``bounds`` where the level is past the sample) and
    the recent one-step ``peak`` grown to each step as the unscaled errors grow. The limits do not
    shrink as ``conf`` grows, so capped intervals still nest."""
    centred = sorted_raw - np.median(sorted_raw, axis=0)
    raw_low, raw_high = bounds(sorted_raw, conf)
    spread = np.median(np.abs(centred), axis=0)  # robust: a shift's rows do not set the growth
    growth = np.divide(spread, spread[0], out=np.ones_like(spread), where=spread[0] > 0)
    reach = peak * np.maximum(growth, 1.0)
    return (np.maximum(low, np.minimum(np.minimum(raw_low, centred[0]), -reach)),
            np.minimum(high, np.maximum(np.maximum(raw_high, centred[-1]), reach)))


def bounds(sorted_errors: np.ndarray, conf: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column lower/upper offsets of a central ``conf`` interval from the errors sorted per column,
    each column centred on its median (see the module docstring): lower <= 0 <= upper.

    A level the sample resolves is its conformal order statistic. Past the sample's extreme, the bound
    is the wider of a Student t prediction bound for a new draw (mean + t(n-1) quantile x s x
    sqrt(1 + 1/n): the mean and spread are estimates; bench/results/calibration_validation.notes.md)
    and the extreme itself moved out by the t quantiles' spacing from the extreme's level. Both grow
    with the level and the second starts at the extreme, so the bounds nest by construction: a higher
    ``conf`` never gives a narrower interval (heavy-tailed scaled errors put a t fit inside the sample's
    own extremes, a 95% bound inside the 80% one).
    """
    centred = sorted_errors - np.median(sorted_errors, axis=0)
    alpha = 1.0 - conf
    return _bound(centred, alpha / 2, upper=False), _bound(centred, 1 - alpha / 2, upper=True)


def _bound(sorted_errors: np.ndarray, level: float, *, upper: bool) -> np.ndarray:
    n = sorted_errors.shape[0]
    rank = math.ceil((n + 1) * level) if upper else math.floor((n + 1) * level)
    if 1 <= rank <= n:
        return sorted_errors[rank - 1]
    spread = sorted_errors.std(axis=0, ddof=1) * math.sqrt(1 + 1 / n)
    t = t_quantile(level, n - 1)
    fitted = sorted_errors.mean(axis=0) + t * spread
    # the extreme order statistic stands for level n / (n + 1) (upper) or 1 / (n + 1) (lower)
    edge, edge_level = (sorted_errors[-1], n / (n + 1)) if upper else (sorted_errors[0], 1 / (n + 1))
    extended = edge + (t - t_quantile(edge_level, n - 1)) * spread
    return np.maximum(fitted, extended) if upper else np.minimum(fitted, extended)


def t_quantile(level: float, df: int) -> float:
    """Student's t quantile, by Fisher's expansion in the normal quantile (Abramowitz and Stegun 26.7.5,
    five terms): NumPy-free, for serving, and increasing in ``level`` as quantiles must be. Against the
    exact value at levels 0.5% to 99.5%: within 0.01% from 10 degrees of freedom, 0.1% at 5, 0.8% at 3."""
    z = NormalDist().inv_cdf(level)
    v = float(max(df, 1))
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
            + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4))
