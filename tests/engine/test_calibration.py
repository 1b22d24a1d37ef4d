"""Locally scaled split-conformal intervals on errors whose size changes over time: each split's
scale uses only errors observed before it, and scaling is what keeps coverage in calm and volatile
spells alike."""

from statistics import NormalDist

import numpy as np
import pytest

from pipeline_code.engine.core.calibration import bounds, current_scale, local_scales, normalised
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.cv import cross_validate
from pipeline_code.engine.estimator import HarmonicArimaForecaster
from pipeline_code.engine.evaluation import online_offsets
from tests.conftest import weekly_series

WINDOW = 26
SPEC = ModelSpec(fourier_k=1, detrend=False, diff=0, ar_order_max=1)
CALM, VOLATILE, BLOCK = 0.01, 0.04, 100


def regime_series(n: int, seed: int, *, last: float) -> tuple[np.ndarray, np.ndarray]:
    """A seasonal series whose noise alternates between calm and volatile blocks, ending in ``last``;
    returns the series and each point's noise level."""
    t = np.arange(n)
    ends_in_first = (t // BLOCK) % 2 == ((n - 1) // BLOCK) % 2
    sd = np.where(ends_in_first, last, CALM + VOLATILE - last)
    noise = sd * np.random.default_rng(seed).standard_normal(n)
    return np.exp(5 + 0.1 * np.sin(2 * np.pi * t / 52.18) + noise), sd


def test_local_scale_is_the_rms_of_the_previous_window_of_errors():
    errors = np.random.default_rng(0).standard_normal(100) * np.linspace(0.5, 3, 100)
    scales = local_scales(errors, WINDOW)
    for k in range(100):
        previous = errors[max(0, k - WINDOW) : k]
        if previous.size < WINDOW // 2:
            assert np.isnan(scales[k])
        else:
            assert scales[k] == pytest.approx(np.sqrt(np.mean(previous**2)))
    assert current_scale(errors, WINDOW) == pytest.approx(np.sqrt(np.mean(errors[-WINDOW:] ** 2)))


@pytest.mark.parametrize("k", [13, 26, 50, 99])
def test_a_split_scale_ignores_its_own_and_later_errors(k):
    """No look-ahead: blowing up split k's error and every later one leaves scales 0..k unchanged."""
    errors = np.random.default_rng(1).standard_normal(100)
    poked = errors.copy()
    poked[k:] *= 100.0
    np.testing.assert_array_equal(local_scales(poked, WINDOW)[: k + 1], local_scales(errors, WINDOW)[: k + 1])


def test_backtest_offsets_use_only_errors_observed_before_each_origin():
    """Changing every error whose target is at or after a backtest origin leaves its interval alone."""
    horizon = 4
    rng = np.random.default_rng(2)
    origins = np.arange(100, 400)
    log_errors = 0.02 * rng.standard_normal((origins.size, horizon))
    rows = np.array([60, 150, 299])
    before = online_offsets(log_errors, origins, rows, horizon, (0.8, 0.95))
    for i, row in enumerate(rows):
        targets = origins[:, None] + np.arange(horizon)[None, :]
        poked = np.where(targets >= origins[row], log_errors * 50.0 + 1.0, log_errors)
        after = online_offsets(poked, origins, np.array([row]), horizon, (0.8, 0.95))
        for level in (0.8, 0.95):
            np.testing.assert_array_equal(after[level][0][0], before[level][0][i])
            np.testing.assert_array_equal(after[level][1][0], before[level][1][i])


def unscaled_offsets(log_errors, origins, rows, horizon, level):
    """Plain split conformal on the raw past errors: what the local scale improves on."""
    lows, highs = [], []
    for row in rows:
        past = origins + horizon <= origins[row]
        low, high = bounds(np.sort(log_errors[past][-260:], axis=0), level)
        lows.append(low)
        highs.append(high)
    return np.array(lows), np.array(highs)


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_scaled_intervals_cover_in_calm_and_volatile_spells_where_unscaled_ones_do_not(level):
    """Noise alternating between 0.01 and 0.04 every 100 weeks: scaled intervals keep their coverage in
    both spells (out of sample); pooled unscaled errors over-cover calm spells and cover volatile ones
    less."""
    horizon = 4
    y, sd = regime_series(1400, seed=5, last=CALM)
    cv = cross_validate(y, SPEC, window=150, horizon=horizon)
    errors, origins = cv.log_errors, cv.origins
    rows = np.flatnonzero(origins >= 800)
    low, high = online_offsets(errors, origins, rows, horizon, (level,))[level]
    scaled = (errors[rows] >= low) & (errors[rows] <= high)
    low, high = unscaled_offsets(errors, origins, rows, horizon, level)
    unscaled = (errors[rows] >= low) & (errors[rows] <= high)
    spell = sd[origins[rows]]
    tolerance = 0.06 if level == 0.8 else 0.04
    for noise in (CALM, VOLATILE):
        assert scaled[spell == noise].mean() == pytest.approx(level, abs=tolerance)
    assert unscaled[spell == CALM].mean() > level + tolerance
    assert unscaled[spell == VOLATILE].mean() < scaled[spell == VOLATILE].mean()


@pytest.mark.parametrize("last", [CALM, VOLATILE])
def test_served_interval_width_follows_the_current_error_level(last):
    """A model trained on a series ending in a calm (volatile) spell serves intervals as wide as that
    spell's noise, not as wide as the pooled history's."""
    y, _ = regime_series(1000, seed=0, last=last)
    fit = HarmonicArimaForecaster(SPEC, window=150, horizon=4).fit(weekly_series(y))
    forecast = fit.forecaster.predict(4, 0.8)
    width = np.log(forecast.upper) - np.log(forecast.lower)
    expected = 2 * NormalDist().inv_cdf(0.9) * last
    assert np.all((width > expected / 1.5) & (width < expected * 1.5)), width / expected


def test_normalised_keeps_the_most_recent_scaled_rows():
    errors = np.arange(12.0).reshape(6, 2)
    scales = np.array([np.nan, 0.0, 1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(normalised(errors, scales, keep=3), errors[3:] / scales[3:, None])
