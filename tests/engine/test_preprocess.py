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
    # isolated outliers exist in clean years but are only flagged, never replaced
    early = np.array([t.year < 2005 for t in truth.timestamps])
    assert pre.is_outlier[early].sum() > 0 and not pre.is_counterfactual[early].any()


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
