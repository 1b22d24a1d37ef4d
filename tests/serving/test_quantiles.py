"""Quantile forecasts (engine/core/quantiles.py): the interval bounds they extend, never crossing, and\ncentred on the point forecast."""

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


def with_errors(errors: np.ndarray) -> Forecaster:
    """The errors as given: without row scales, so no cap (``calibration.capped``) narrows them."""
    artifact = fit_item(5)
    artifact.calibration_errors, artifact.calibration_scales = errors, None
    return Forecaster(artifact)


def test_a_tail_past_the_sample_goes_beyond_its_extreme():
    """Few calibration rows: p0.1 comes from the tail past the sample, which an outlier among the
    errors once put inside the order statistics (p0.1 above p5, then clipped onto it)."""
    errors = np.zeros((30, 12))
    errors[0] = -1.0  # one outlier, the order statistic of p5
    values = quantile_forecast(with_errors(errors), 3, (0.001, 0.05, 0.5)).values
    assert np.all(values[0] < values[1]) and np.all(values[1] < values[2])


def test_wider_intervals_contain_narrower_ones_on_heavy_tailed_errors():
    """25 heavy-tailed scaled errors per step (a short daily series): the 95% interval's tails are past
    the sample, the 80% one's inside it; the 95% interval contains the 80% one at every step, as
    p2.5 < p10 < p90 < p97.5 (the audit saw upper_95 below upper_80, and p97.5 clipped onto p90)."""
    errors = np.sort(np.random.default_rng(7).standard_t(2, size=(25, 12)), axis=0)
    forecaster = with_errors(errors)
    narrow, wide = forecaster.predict(12, 0.8), forecaster.predict(12, 0.95)
    assert np.all(wide.lower < narrow.lower) and np.all(wide.upper > narrow.upper)
    values = quantile_forecast(forecaster, 12, (0.025, 0.1, 0.9, 0.975)).values
    assert np.all(np.diff(values, axis=0) > 0)


def test_the_mean_is_p50_and_inside_every_interval_when_the_errors_are_biased():
    """A model that under-forecast every CV split (errors all far above zero): its intervals keep the
    errors' spread and skew around the point forecast instead of moving off it."""
    errors = np.sort(np.random.default_rng(8).lognormal(1.0, 0.4, size=(21, 12)), axis=0)
    forecaster = with_errors(errors)
    quantiles = quantile_forecast(forecaster, 12, (0.1, 0.5, 0.9))
    np.testing.assert_allclose(quantiles.values[1], quantiles.mean, rtol=1e-12)
    assert np.all(quantiles.values[0] < quantiles.mean) and np.all(quantiles.mean < quantiles.values[2])
    for conf in (0.5, 0.8, 0.95):
        forecast = forecaster.predict(12, conf)
        assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(*QUANTILE_RANGE), min_size=1, max_size=9, unique=True), st.integers(1, 104))
def test_quantiles_never_cross(forecaster, levels, periods):
    forecast = quantile_forecast(forecaster, periods, tuple(levels))
    assert np.all(np.isfinite(forecast.values)) and forecast.values.shape == (len(levels), periods)
    assert np.all(np.diff(forecast.values, axis=0) >= 0)


def test_keys_are_amazon_forecasts():
    assert [quantile_key(q) for q in (0.1, 0.5, 0.9, 0.025, 0.07, 0.001, 0.999)] == [
        "p10", "p50", "p90", "p2.5", "p7", "p0.1", "p99.9"]
