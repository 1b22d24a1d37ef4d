"""The serving forecaster's memoized path gives exactly the engine's forecasts."""

from __future__ import annotations

import math

import pytest

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.serving.app import ServingForecaster


def test_memoized_forecasts_equal_the_engine(model_dir):
    engine, serving = Forecaster.load(model_dir), ServingForecaster.load(model_dir)
    for periods in range(1, 105):
        for conf in (1e-9, 0.5, 0.8, 0.9, 0.95, 0.999999):
            expected = engine.predict(periods, conf).records()
            assert serving.predict(periods, conf).records() == expected
            assert serving.predict(periods, conf).records() == expected  # from the cache
    z, variance = serving.log_forecast(26)
    with pytest.raises(ValueError):
        variance[0] = 0.0  # cached arrays are read-only
    assert all(math.isfinite(v) for v in z)
