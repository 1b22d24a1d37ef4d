"""The outlier and break rules where they apply: ``preprocess`` (robust STL) on a series with a season;
a series with none (``data.season_length`` 1: yearly data) is used as observed, with the reason, since
STL decomposes a season. Processing, the CLI's tune and backtest go through ``clean``; a panel's
series ask ``rules_skipped`` (``pipeline/panel_stages.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.preprocess import Preprocessed, preprocess
from pipeline_code.engine.settings import Settings

NO_SEASON = ("no season (data.season_length 1): the outlier and break rules fit robust STL, which needs one;"
             " the series is used as observed")


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
