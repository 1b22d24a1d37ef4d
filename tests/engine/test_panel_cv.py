"""Panel CV: shared cutoff dates, no leak of any series' future, the backtest re-runs the procedure
on the data before each cutoff, and the measures."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.panel_cv import (
    NORMAL_ROWS, POOL_ROWS, interval_score, panel_cutoffs, pooled, split_metrics,
)
from pipeline_code.engine.panel_data import Panel
from pipeline_code.engine.panel_fit import backtest_panel, fit_panel
from tests.engine.panel_helpers import CALENDAR, END, monthly, panel_of, settings, synthetic


def test_cutoffs_are_shared_dates_whose_last_horizon_ends_with_the_panel():
    panel = panel_of({"a": np.ones(60) + np.arange(60), "b": np.ones(40) + np.arange(40)})
    cutoffs = panel_cutoffs(panel, horizon=6, cutoffs=3, step=4)
    assert cutoffs == [date(2019, 11, 1), date(2020, 3, 1), date(2020, 7, 1)]
    assert CALENDAR.shift(cutoffs[-1], 5) == END
    with pytest.raises(ValueError, match="positive"):
        panel_cutoffs(panel, horizon=6, cutoffs=0, step=4)


def test_no_split_sees_any_series_future():
    """Series "jump" is series s000 made 1000 times larger from the last cutoff on: every split of
    both trains on the same data, so any look at a split's own horizon shows as a difference."""
    values = synthetic(4, length=72)
    cutoff = panel_cutoffs(panel_of(values), horizon=6, cutoffs=3, step=6)[-1]
    jump = values["s000"].copy()
    at = len(jump) - 6
    jump[at:] *= 1000
    values["jump"] = jump
    fit = fit_panel(panel_of(values), settings(families=("theta",)))
    got, same = fit.cv.items["jump"], fit.cv.items["s000"]
    assert got.cutoffs == same.cutoffs and got.cutoffs[-1] == cutoff
    np.testing.assert_array_equal(got.forecast, same.forecast)
    np.testing.assert_array_equal(got.upper[0.95], same.upper[0.95])
    assert got.actual[-1, 0] == jump[at]
    # every scored point is the series' own value at cutoff + step
    series = monthly(jump)
    for r in fit.cv.rows():
        if r["item_id"] == "jump":
            assert r["actual"] == jump[series.timestamps.index(date.fromisoformat(r["timestamp"]))]


def test_backtest_is_the_fit_on_the_data_before_each_cutoff():
    """A backtest's choice, forecast and interval at a cutoff are those of the procedure fitted on
    the panel cut before it (so the choice never looks at the evaluation's horizon), as served."""
    values = synthetic(6, length=72)
    panel, s = panel_of(values), settings()
    when = CALENDAR.shift(END, -11)
    bt = backtest_panel(panel, s, cutoffs=[when])
    cut = Panel(series={i: x.head(x.timestamps.index(when)) for i, x in panel.series.items()},
                freq="MS", single=False)
    fit = fit_panel(cut, s)
    for item in panel.items:
        got = bt.items[item]
        assert got.cutoffs == [when]
        assert got.families == [fit.choices[item]["family"]]
        served = Forecaster(fit.artifacts[item]).predict(6, 0.95)
        np.testing.assert_allclose(got.forecast[0], served.mean, rtol=1e-9)
        np.testing.assert_allclose(got.lower[0.95][0], served.lower, rtol=1e-9)
        np.testing.assert_allclose(got.upper[0.95][0], served.upper, rtol=1e-9)
        np.testing.assert_array_equal(got.actual[0], values[item][-12:-6])


def test_backtest_needs_a_cutoff():
    with pytest.raises(ValueError, match="evaluation cutoff"):
        backtest_panel(panel_of(synthetic(2)), settings(), cutoffs=[])


def test_measures_on_a_hand_computed_split():
    actual = np.array([[10.0, 20.0]])
    forecast = np.array([[12.0, 20.0]])
    lower = {0.8: np.array([[11.0, 19.0]]), 0.95: np.array([[9.0, 18.0]])}
    upper = {0.8: np.array([[13.0, 21.0]]), 0.95: np.array([[14.0, 22.0]])}
    m = split_metrics(actual, forecast, lower, upper, np.array([2.0]))
    assert m["mase"] == pytest.approx(0.5)  # (2/2 + 0/2) / 2
    assert m["wape"] == pytest.approx(2 / 30)
    assert m["coverage_80"] == 0.5 and m["coverage_95"] == 1.0
    assert m["interval_score"] == pytest.approx((5 + 4) / 2 / 2)
    # below the interval: width plus 2/alpha times the miss
    assert interval_score(np.array([5.0]), np.array([9.0]), np.array([14.0]), 0.95)[0] == pytest.approx(5 + 40 * 4)


def test_pool_is_sorted_capped_finite_or_normal_without_errors():
    rng = np.random.default_rng(1)
    rows = [rng.normal(size=(POOL_ROWS, 3)), rng.normal(size=(10, 3)), np.full((1, 3), np.inf)]
    pool = pooled(rows, 3)
    assert pool.shape == (POOL_ROWS, 3)
    assert np.all(np.isfinite(pool)) and np.all(np.diff(pool, axis=0) >= 0)
    empty = pooled([np.zeros((0, 3))], 3)
    assert empty.shape == (NORMAL_ROWS, 3)
    assert empty[-1, 2] == pytest.approx(empty[-1, 0] * np.sqrt(3))


def test_a_small_pool_gives_centred_normal_quantiles_with_its_spread():
    """A shard of one or two series pools a handful of rows: their tails resolve nothing, so the
    intervals are normal with the rows' RMS per step, centred (they always contain the centre)."""
    rows = [np.array([[0.3, 0.6], [0.5, 1.0], [0.4, 0.8]])]
    pool = pooled(rows, 2)
    assert pool.shape == (NORMAL_ROWS, 2)
    assert np.all(np.diff(pool, axis=0) >= 0) and pool[0, 0] < 0 < pool[-1, 0]
    assert pool[:, 0].mean() == pytest.approx(0.0, abs=1e-12)
    rms = np.sqrt(np.mean(rows[0] ** 2, axis=0))
    assert pool[-1, 1] / pool[-1, 0] == pytest.approx(rms[1] / rms[0])
    one = pooled([np.array([[0.2, 0.4]])], 2)
    assert one[-1, 1] == pytest.approx(one[-1, 0] * np.sqrt(2))
