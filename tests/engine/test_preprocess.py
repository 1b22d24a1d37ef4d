"""The structural break: one episode found, clean years alone, the replacement closer to the truth."""

import numpy as np
import pytest

from pipeline_code.engine.dataset import Series
from pipeline_code.engine.preprocess import find_episode, preprocess
from pipeline_code.engine.settings import PreprocessSettings

SEASON = 365.25 / 7


@pytest.fixture(scope="module")
def broken(gasoline):
    values = gasoline.values.copy()
    idx = np.array([i for i, t in enumerate(gasoline.timestamps) if "2009-03-01" <= t.isoformat() <= "2009-08-31"])
    values[idx] *= 0.75  # a COVID-style collapse of a quarter of demand for six months
    series = Series(gasoline.timestamps, values, gasoline.freq)
    pre = preprocess(series, SEASON, PreprocessSettings(break_start="2008-06-01", break_end="2010-12-31"))
    return gasoline, idx, pre


def test_injected_episode_is_found(broken):
    _, idx, pre = broken
    assert pre.episode is not None
    assert abs(pre.episode.start - idx[0]) <= 1 and abs(pre.episode.stop - 1 - idx[-1]) <= 1
    assert pre.is_counterfactual.sum() == len(pre.episode)


def test_clean_years_are_left_alone(broken):
    truth, _, pre = broken
    outside = ~pre.is_counterfactual
    np.testing.assert_array_equal(pre.counterfactual[outside], pre.series.values[outside])
    early = np.array([t.year < 2005 for t in truth.timestamps])
    assert not pre.is_counterfactual[early].any()


def test_an_isolated_outlier_is_flagged_not_replaced(gasoline):
    values = gasoline.values.copy()
    spike = next(i for i, t in enumerate(gasoline.timestamps) if t.isoformat() >= "2009-05-01")
    values[spike] *= 1.4
    pre = preprocess(Series(gasoline.timestamps, values, gasoline.freq), SEASON,
                     PreprocessSettings(break_start="2008-06-01", break_end="2010-12-31"))
    assert pre.is_outlier[spike] and pre.episode is None
    np.testing.assert_array_equal(pre.counterfactual, values)


def _monthly(values: np.ndarray) -> Series:
    from datetime import date

    stamps = [date(2015 + (m // 12), m % 12 + 1, 1) for m in range(values.size)]
    return Series(stamps, values, "MS")


@pytest.mark.parametrize("years", [5, 10, 20])
def test_clean_series_have_no_break_and_few_outliers(years):
    """Season plus white noise, the break window over its last five years: robust STL follows a short
    series closely, so fences from its own residuals flagged a third of 5-year series' points and found a
    "break" in most of them."""
    rng = np.random.default_rng(years)
    months = np.arange(12 * years)
    settings = PreprocessSettings(break_start=f"{2015 + years - 5}-01-01")
    episodes, flagged = 0, 0.0
    for _ in range(20):
        values = 100 * np.exp(0.2 * np.sin(2 * np.pi * months / 12) + 0.002 * months + rng.normal(0, 0.05, months.size))
        pre = preprocess(_monthly(values), 12, settings)
        episodes += pre.episode is not None
        flagged = max(flagged, pre.is_outlier.mean())
    assert episodes == 0 and flagged <= 0.02


def test_a_break_in_a_short_clean_series_is_found():
    rng = np.random.default_rng(7)
    months = np.arange(120)
    log_values = 0.2 * np.sin(2 * np.pi * months / 12) + rng.normal(0, 0.05, months.size)
    log_values[100:106] -= [0.2, 0.5, 0.5, 0.4, 0.3, 0.15]
    pre = preprocess(_monthly(100 * np.exp(log_values)), 12, PreprocessSettings(break_start="2020-01-01"))
    assert pre.episode is not None and 99 <= pre.episode.start <= 101 and 103 <= pre.episode.stop <= 106


def test_replacement_is_closer_to_the_truth_than_the_broken_data(broken):
    truth, _, pre = broken
    ep = slice(pre.episode.start, pre.episode.stop)
    broken_mse = np.mean((pre.series.values[ep] - truth.values[ep]) ** 2)
    replaced_mse = np.mean((pre.counterfactual[ep] - truth.values[ep]) ** 2)
    assert replaced_mse < 0.1 * broken_mse


def test_the_default_window_finds_nothing_in_the_bundled_data(gasoline):
    pre = preprocess(gasoline, SEASON, PreprocessSettings())
    assert pre.episode is None and not pre.is_counterfactual.any()
    np.testing.assert_array_equal(pre.counterfactual, gasoline.values)


def test_only_the_largest_cluster_is_the_episode():
    flagged = np.zeros(100, dtype=bool)
    flagged[[10, 11, 12]] = True  # small cluster
    flagged[[50, 52, 55, 57, 60]] = True  # larger one, gaps under the tolerance
    flagged[90] = True  # isolated
    residual = np.where(flagged, 1.0, 0.0)
    from datetime import date, timedelta

    stamps = [date(2000, 1, 7) + timedelta(days=7 * i) for i in range(100)]
    ep = find_episode(stamps, flagged, residual, PreprocessSettings(break_start="2000-01-01"))
    assert (ep.start, ep.stop) == (50, 61)


def test_split_holds_out_the_last_horizon(broken):
    _, _, pre = broken
    train, test = pre.split(26)
    assert len(test.series) == 26 and len(train.series) == len(pre.series) - 26
    assert test.series.timestamps[0] > train.series.timestamps[-1]
