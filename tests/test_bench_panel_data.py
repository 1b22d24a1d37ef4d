"""The panel benchmarks' data and scoring (bench/panel_data.py, bench/panel_accuracy_bench.py)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from bench.panel_accuracy_bench import LEVELS, Forecasts, cutoff_dates, make_task, metrics, panel_end
from bench.panel_data import add_months, observed, synthetic_rows, write_long_csv
from pipeline_code.engine.panel_data import load_panel
from pipeline_code.engine.settings import Settings


def test_synthetic_panel_is_positive_monthly_and_ends_together():
    rows = synthetic_rows(5, length=60, end=date(2019, 12, 1), seed=3)
    series = observed(rows)
    assert len(series) == 5
    for s in series.values():
        assert 30 <= s.values.size <= 60
        assert np.all(s.values > 0)
        assert s.month(s.values.size - 1) == date(2019, 12, 1)
    assert rows == synthetic_rows(5, length=60, end=date(2019, 12, 1), seed=3)
    assert rows != synthetic_rows(5, length=60, end=date(2019, 12, 1), seed=4)


def test_long_csv_reads_back_as_a_panel(tmp_path):
    rows = synthetic_rows(3, length=48, seed=1)
    rows[0] = (rows[0][0], rows[0][1], float("nan"))  # a leading missing value starts the series later
    path = write_long_csv(tmp_path / "panel.csv", rows)
    panel = load_panel(path, settings=Settings.from_dict({"data": {"freq": "MS", "horizon": 12}}))
    series = observed(rows)
    assert panel.items == sorted(series)
    for item, s in series.items():
        assert panel.series[item].timestamps[0] == s.start
        np.testing.assert_allclose(panel.series[item].values, s.values)


def test_observed_drops_leading_keeps_trailing_and_refuses_inner_gaps():
    nan = float("nan")
    months = [add_months(date(2000, 1, 1), i) for i in range(5)]
    got = observed([("a", m, v) for m, v in zip(months, [nan, 1.0, 2.0, 3.0, nan])])["a"]
    assert got.start == date(2000, 2, 1)
    assert got.values.size == 4 and np.isnan(got.values[-1])
    with pytest.raises(ValueError, match="item 'b': missing value inside"):
        observed([("b", m, v) for m, v in zip(months, [1.0, nan, 2.0, 3.0, 4.0])])


def test_cutoffs_scale_and_scoring_see_no_future():
    rows = synthetic_rows(2, length=120, seed=2)
    series = observed(rows)
    cutoffs = cutoff_dates(panel_end(series), horizon=12, cutoffs=3, step=12)
    assert add_months(cutoffs[-1], 11) == panel_end(series)
    task = make_task(series, cutoffs)
    item = task.items[0]
    k = task.cuts.index(cutoffs[0])
    s = series[item]
    s.values[-12:] *= 10  # the last horizon's values: no earlier cutoff's scale may change
    again = make_task(series, cutoffs)
    assert again.scale[k] == task.scale[k]
    perfect = Forecasts(task.actual.copy(), {lv: (task.actual.copy(), task.actual.copy()) for lv in LEVELS}, 0.0)
    scored = metrics(task, perfect)
    assert scored["mase"] == 0.0 and scored["coverage_95"] == 1.0
    off = Forecasts(task.actual + task.scale[:, None], perfect.bounds, 0.0)
    assert metrics(task, off)["mase"] == pytest.approx(1.0)
