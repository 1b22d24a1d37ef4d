"""A series that is constant, or repeats its season, but for a spike or a few is refused by the
``constant`` rule, naming the spikes; low counts, which repeat as often but change every few values, are
not."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pytest

from pipeline_code.engine.cleaning import check_variation
from pipeline_code.engine.dataset import DataValidationError, Series
from pipeline_code.engine.settings import Settings

WEEKLY = Settings()  # W-FRI, season 52.18 weeks: period 52
MONTHLY = replace(WEEKLY, data=replace(WEEKLY.data, freq="MS", season_length=12, horizon=12))
FIRST_FRIDAY = date(2015, 1, 2)


def weekly(values) -> Series:
    return Series([FIRST_FRIDAY + timedelta(weeks=i) for i in range(len(values))], np.asarray(values, float),
                  "W-FRI")


def monthly(values) -> Series:
    return Series([date(2000 + i // 12, i % 12 + 1, 1) for i in range(len(values))], np.asarray(values, float),
                  "MS")


def spiked(n: int, *spikes: int, level: float = 100.0, spike: float = 250.0) -> np.ndarray:
    values = np.full(n, level)
    values[list(spikes)] = spike
    return values


def refusal(series: Series, settings: Settings) -> str:
    with pytest.raises(DataValidationError) as caught:
        check_variation(series, settings)
    assert caught.value.rule == "constant"
    return str(caught.value)


@pytest.mark.parametrize(("spikes", "named"), [
    ((100,), "2016-12-02: 250 after 100, 2017-12-01: 100 after 250"),  # before the CV windows' end
    ((395,), "2022-07-29: 250 after 100)"),  # inside the last CV window
    ((100, 250), "2016-12-02: 250 after 100, 2017-12-01: 100 after 250, 2019-10-18: 250 after 100 and 1 more"),
    ((3,), "2016-01-22: 100 after 250)"),  # in the first season: named where the series comes back
])
def test_a_weekly_constant_series_with_spikes_is_refused_naming_them(spikes, named):
    message = refusal(weekly(spiked(400, *spikes)), WEEKLY)
    assert message.startswith("[constant] ")
    assert "values repeat the one 52 periods before exactly" in message and named in message
    assert "but for outliers" in message and "nor to scale the errors by (MASE)" in message


def test_the_message_counts_the_repeats_and_names_the_longest_stretch():
    message = refusal(weekly(spiked(400, 100)), WEEKLY)
    assert "346 of 348 values repeat the one 52 periods before exactly, 247 in a row (2017-12-08 to 2022-08-26)" \
        in message


def test_a_monthly_constant_series_with_a_spike_is_refused():
    message = refusal(monthly(spiked(200, 50)), MONTHLY)
    assert "186 of 188 values repeat the one 12 periods before exactly" in message
    assert "2004-03-01: 250 after 100" in message


def test_a_periodic_series_with_a_spike_is_refused():
    values = 100.0 + np.arange(400) % 52
    values[200] = 900.0
    assert "2018-11-02: 900 after 144" in refusal(weekly(values), WEEKLY)


def test_constant_and_exactly_periodic_series_keep_their_messages():
    assert refusal(weekly(np.full(400, 7.0)), WEEKLY).startswith("[constant] every value is 7: ")
    periodic = weekly(7000.0 + np.arange(400) % 52)
    assert refusal(periodic, WEEKLY).startswith("[constant] every value repeats the one 52 periods before: ")


def test_low_counts_that_repeat_often_but_change_every_few_values_pass():
    counts = np.random.default_rng(3).choice([1.0, 2.0, 3.0], size=400, p=[0.75, 0.17, 0.08])
    repeats = counts[52:] == counts[:-52]
    assert repeats.mean() > 0.5  # as often as the spiked series' outlier rule sees no noise
    check_variation(weekly(counts), WEEKLY)


def test_a_series_with_noise_passes():
    check_variation(weekly(100 + np.random.default_rng(0).normal(0, 5, 400)), WEEKLY)
