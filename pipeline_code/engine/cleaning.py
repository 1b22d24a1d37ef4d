"""The outlier and break rules where they apply: ``preprocess`` (robust STL) on a series with a season;
a series with none (``data.season_length`` 1: yearly data) is used as observed, with the reason, since
STL decomposes a season. Processing, the CLI's tune and backtest go through ``clean``; a panel's
series ask ``rules_skipped`` (``pipeline/panel_stages.py``). Before it, processing refuses a series
without variation to forecast (``check_variation``, the ``constant`` rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.dataset import DataValidationError, Series
from pipeline_code.engine.preprocess import Preprocessed, preprocess
from pipeline_code.engine.settings import SCALE_WINDOW, Settings

NO_SEASON = ("no season (data.season_length 1): the outlier and break rules fit robust STL, which needs one;"
             " the series is used as observed")


# Changes a ``constant`` refusal names; the rest are counted.
NAMED_CHANGES = 3


def check_variation(series: Series, settings: Settings) -> None:
    """The ``constant`` rule (DataValidationError): a series that is constant, repeats its season
    exactly, or either but for outliers, has no variation to forecast nor to scale the errors by (MASE).

    "But for outliers": more than half of the values repeat the one a season before exactly, so the
    outlier rule's noise scale (``preprocess.noise_scale``, the MAD of those seasonal differences) is zero
    and every other value counts as an outlier, and at least ``SCALE_WINDOW`` of them in a row, so the
    one-step errors that scale the intervals (``calibration.local_scales``) and MASE's seasonal-naive
    error are zero there. (Low counts such as 1, 1, 2, 1 also repeat more than half the time, but change
    every few values: they are forecast.)
    """
    values, period = series.values, season_period(settings.data.season_length)
    if np.all(values == values[0]):  # a panel's constant series get the fallback instead
        raise DataValidationError("constant", f"every value is {values[0]:g}: a constant series has no"
                                  " variation to forecast, nor to scale the errors by (MASE)")
    repeats = values[period:] == values[:-period]
    if repeats.all():
        raise DataValidationError("constant", f"every value repeats the one {period} periods before: a series"
                                  " that repeats its season exactly has no seasonal-naive error to scale the"
                                  " errors by (MASE); its forecast is its last season")
    if 2 * repeats.sum() <= repeats.size:
        return
    start, length = _longest_run(repeats)
    if length >= SCALE_WINDOW:
        first, last = series.timestamps[period + start], series.timestamps[period + start + length - 1]
        raise DataValidationError(
            "constant", f"{repeats.sum()} of {repeats.size} values repeat the one {period} periods before"
            f" exactly, {length} in a row ({first.isoformat()} to {last.isoformat()}); the others differ"
            f" ({_changes(series, period, repeats)}): a series constant or repeating its season but for"
            " outliers (more than half repeating, the outlier rule's noise scale is zero) has no variation to"
            " forecast, nor to scale the errors by (MASE)")


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """Start and length of the longest run of True values in ``flags`` (which holds one)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    starts, stops = edges[::2], edges[1::2]
    longest = int(np.argmax(stops - starts))
    return int(starts[longest]), int(stops[longest] - starts[longest])


def _changes(series: Series, period: int, repeats: np.ndarray) -> str:
    """The values that differ from the one ``period`` before, the first few named."""
    changed = np.flatnonzero(~repeats) + period
    named = ", ".join(f"{series.timestamps[i].isoformat()}: {series.values[i]:g} after"
                      f" {series.values[i - period]:g}" for i in changed[:NAMED_CHANGES])
    return named + (f" and {changed.size - NAMED_CHANGES} more" if changed.size > NAMED_CHANGES else "")


def rules_skipped(settings: Settings) -> str | None:
    """Why the outlier and break rules do not run under these settings, or None when they do."""
    return NO_SEASON if season_period(settings.data.season_length) < 2 else None


def clean(series: Series, settings: Settings) -> tuple[Preprocessed, dict[str, Any]]:
    """``preprocess`` where its rules apply, else the series as observed (nothing flagged, no episode);
    with what the processing report adds: nothing, or why the rules were skipped (and no bounds)."""
    skipped = rules_skipped(settings)
    if skipped is None:
        return preprocess(series, settings.data.season_length, settings.preprocess), {}
    unflagged = np.zeros(len(series), dtype=bool)  # no residual lies beyond (-inf, inf): none is flagged
    observed = Preprocessed(series, series.values.copy(), unflagged, unflagged.copy(), None,
                            (-np.inf, np.inf))
    return observed, {"rules_skipped": skipped, "residual_bounds": None}  # JSON has no infinity
