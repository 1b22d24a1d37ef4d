"""Quantile forecasts (engine/core/quantiles.py): the interval bounds they extend, and never crossing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.quantiles import quantile_forecast
from pipeline_code.serving.request import QUANTILE_RANGE, quantile_key

from .panel_models import fit_item


@pytest.fixture(scope="module")
def forecaster():
    return Forecaster(fit_item(3))


def test_p5_and_p95_are_the_90_percent_interval(forecaster):
    interval = forecaster.predict(30, 0.9)
    quantiles = quantile_forecast(forecaster, 30, (0.95, 0.05, 0.5))
    assert quantiles.quantiles == (0.05, 0.5, 0.95)
    np.testing.assert_allclose(quantiles.values[0], interval.lower, rtol=1e-12)
    np.testing.assert_allclose(quantiles.values[2], interval.upper, rtol=1e-12)
    np.testing.assert_array_equal(quantiles.mean, interval.mean)
    assert [ts.isoformat() for ts in quantiles.timestamps] == [r["timestamp"] for r in interval.records()]


def test_the_normal_tail_cannot_cross_the_order_statistics():
    """Few calibration rows: the extreme quantiles come from the t tail, which an outlier among the
    errors puts beyond the order statistics; the running maximum keeps the paths ordered."""
    artifact = fit_item(5)
    errors = np.zeros((30, artifact.calibration_errors.shape[1]))
    # one outlier, the order statistic of p5; the tail at p0.1 (mean - t quantile x sd x sqrt(1 + 1/n)
    # = -0.66) sits above it
    errors[0] = -1.0
    artifact.calibration_errors = errors
    raw = Forecaster(artifact)
    low, _ = raw.error_quantiles(1 - 2 * 0.001, np.ones(3))
    order_statistic, _ = raw.error_quantiles(1 - 2 * 0.05, np.ones(3))
    assert np.all(low > order_statistic)  # the crossing exists before the fix
    values = quantile_forecast(raw, 3, (0.001, 0.05, 0.5)).values
    assert np.all(np.diff(values, axis=0) >= 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(*QUANTILE_RANGE), min_size=1, max_size=9, unique=True), st.integers(1, 104))
def test_quantiles_never_cross(forecaster, levels, periods):
    forecast = quantile_forecast(forecaster, periods, tuple(levels))
    assert np.all(np.isfinite(forecast.values)) and forecast.values.shape == (len(levels), periods)
    assert np.all(np.diff(forecast.values, axis=0) >= 0)


def test_keys_are_amazon_forecasts():
    assert [quantile_key(q) for q in (0.1, 0.5, 0.9, 0.025, 0.07, 0.001, 0.999)] == [
        "p10", "p50", "p90", "p2.5", "p7", "p0.1", "p99.9"]
