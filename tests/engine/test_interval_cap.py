"""An interval is never wider than the errors its model has made (``calibration.capped``): after a
level shift, locally scaled errors and the current scale both carry the shift, and without the cap
they multiply; a new volatility, which the calibration sample learns of a horizon late, still widens
it through the recent one-step errors."""

from dataclasses import replace

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ArtifactError, ModelArtifact
from pipeline_code.engine.core.calibration import bounds, capped, local_peaks, local_scales
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.estimator import ModelEstimator
from pipeline_code.engine.evaluation import backtest_candidate
from tests.engine.test_naive_level_shift import CTX, NAIVE, doubled, series

LEVELS = np.linspace(0.01, 0.999, 200)


def samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled errors (heavy-tailed) and the same rows unscaled (scales that jump), each sorted per column."""
    rng = np.random.default_rng(seed)
    scaled = rng.standard_t(2, size=(n, 6))
    scales = np.where(np.arange(n) < n // 2, 0.02, 0.3)[:, None]
    return np.sort(scaled, axis=0), np.sort(scaled * scales, axis=0)


@pytest.mark.parametrize("n", [3, 12, 40, 260])
def test_capped_offsets_never_widen_stop_at_the_largest_error_and_nest(n):
    scaled, raw = samples(n, seed=n)
    centred = raw - np.median(raw, axis=0)
    lows, highs = [], []
    for conf in LEVELS:
        low, high = bounds(scaled, conf)
        low, high = low * 0.5, high * 0.5  # a current scale that makes the scaled bounds wide
        cap_low, cap_high = capped(low, high, raw, conf)
        assert np.all(cap_low >= low) and np.all(cap_high <= high)
        assert np.all(cap_low <= 0) and np.all(cap_high >= 0)
        raw_low, raw_high = bounds(raw, conf)
        assert np.all(cap_high <= np.maximum(centred[-1], raw_high) + 1e-15)
        assert np.all(cap_low >= np.minimum(centred[0], raw_low) - 1e-15)
        lows.append(cap_low)
        highs.append(cap_high)
    assert np.all(np.diff(lows, axis=0) <= 0) and np.all(np.diff(highs, axis=0) >= 0)


def test_a_narrow_scaled_interval_is_left_as_it_is():
    scaled, raw = samples(260, seed=1)
    low, high = bounds(scaled, 0.9)
    low, high = low * 1e-3, high * 1e-3
    cap_low, cap_high = capped(low, high, raw, 0.9)
    np.testing.assert_array_equal(cap_low, low)
    np.testing.assert_array_equal(cap_high, high)


@pytest.mark.parametrize("peak", [0.0, 0.3, 5.0])
def test_the_recent_peak_widens_the_cap_to_its_size_at_every_step(peak):
    scaled, raw = samples(260, seed=2)
    low, high = bounds(scaled, 0.9)
    low, high = low * 50, high * 50  # far past any cap
    cap_low, cap_high = capped(low, high, raw, 0.9, peak)
    without_low, without_high = capped(low, high, raw, 0.9)
    np.testing.assert_array_equal(cap_high, np.maximum(without_high, np.minimum(high, cap_high)))
    assert np.all(cap_high >= np.minimum(high, peak) - 1e-15) and np.all(cap_low <= np.maximum(low, -peak) + 1e-15)
    assert np.all(cap_high >= without_high) and np.all(cap_low <= without_low)
    if peak == 0.0:
        np.testing.assert_array_equal(cap_high, without_high)


def test_the_peak_at_a_split_is_the_largest_of_the_errors_before_it():
    rng = np.random.default_rng(3)
    errors = rng.normal(0, 0.1, 80)
    peaks = local_peaks(errors, window=10)
    for k in (0, 1, 9, 10, 45, 79):
        assert peaks[k] == np.abs(errors[max(0, k - 10):k]).max(initial=0.0)
    bumped = errors.copy()
    bumped[45] = 9.0  # an error at split 45 is not known at its own origin
    np.testing.assert_array_equal(local_peaks(bumped, window=10)[:46], peaks[:46])
    assert np.all(local_peaks(bumped, window=10)[46:56] == 9.0) and np.isfinite(local_scales(errors, 10)[10])


@pytest.mark.parametrize("at", [90, 100, 108])
def test_after_a_level_shift_the_served_interval_stays_near_the_shift(at):
    """Seasonal naive on a series that doubled: its errors reach a doubling, so a 95% bound about
    twice the point, up to three times at the latest steps, is what they support; the uncapped bound
    was 100 to 430 times the point."""
    fit = ModelEstimator(NAIVE, CTX).fit(series(doubled(at=at)))
    for conf in (0.8, 0.95):
        forecast = fit.forecaster.predict(12, conf)
        assert np.all(forecast.upper / forecast.mean < 3.5), conf
        assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)
    uncapped = Forecaster(replace(fit.artifact, calibration_scales=None)).predict(12, 0.95)
    assert (uncapped.upper / uncapped.mean).max() > 50  # what the cap prevents


def test_the_backtest_caps_as_the_served_model_does():
    y = doubled(n=132, at=108)
    origins = np.arange(118, 121)
    backtest = backtest_candidate({False: y, True: y}, y, NAIVE, CTX, origins=origins, levels=(0.95,))
    low, high = backtest.intervals[0.95]
    for row, origin in enumerate(origins):
        served = ModelEstimator(NAIVE, CTX).fit(series(y[:origin])).forecaster.predict(12, 0.95)
        np.testing.assert_allclose(served.upper, high[row], rtol=1e-9)
        np.testing.assert_allclose(served.lower, low[row], rtol=1e-9)
    assert np.all(high / backtest.forecast < 3.5)


def test_the_scales_round_trip_and_an_artifact_without_them_serves_as_before(tmp_path):
    fit = ModelEstimator(NAIVE, CTX).fit(series(doubled()))
    loaded = ModelArtifact.load(fit.artifact.save(tmp_path / "new"))
    np.testing.assert_array_equal(loaded.calibration_scales, fit.artifact.calibration_scales)
    old = replace(fit.artifact, calibration_scales=None).save(tmp_path / "old")
    assert ModelArtifact.load(old).calibration_scales is None
    before = Forecaster(replace(fit.artifact, calibration_scales=None)).predict(12, 0.9)
    assert Forecaster.load(old).predict(12, 0.9).records() == before.records()


def volatile(n: int = 120, at: int = 104) -> np.ndarray:
    """Monthly, its noise eight times larger from ``at`` on: a new volatility, not a shift."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    return np.exp(np.log(100) + 0.2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n) * np.where(t >= at, 0.25, 0.03))


def test_a_new_volatility_widens_the_interval_before_the_calibration_sample_sees_it():
    """The last 16 months are eight times noisier; the splits that see them at every step are not
    complete yet, so a cap by the calibration errors alone kept the 95% bound at 1.26 times the point
    (the noise alone makes a one-step error of e^(1.96 x 0.25), 1.6 times)."""
    fit = ModelEstimator(NAIVE, CTX).fit(series(volatile()))
    served = fit.forecaster.predict(12, 0.95)
    sample_only = Forecaster(replace(fit.artifact, parameters={**fit.artifact.parameters, "error_peak": 0.0}))
    assert np.all(served.upper / served.mean > 1.6)
    assert np.all(served.upper > sample_only.predict(12, 0.95).upper)


def test_a_negative_peak_is_refused_when_the_model_loads(tmp_path):
    fit = ModelEstimator(NAIVE, CTX).fit(series(doubled()))
    folder = replace(fit.artifact, parameters={**fit.artifact.parameters, "error_peak": -1.0}).save(tmp_path / "m")
    with pytest.raises(ArtifactError, match="error_peak must be a number >= 0"):
        ModelArtifact.load(folder)


@pytest.mark.parametrize("scales, problem", [
    (lambda rows: np.ones(rows - 1), "expected 48 numbers"),
    (lambda rows: -np.ones(rows), "not finite and positive"),
    (lambda rows: np.full(rows, np.nan), "not finite and positive"),
    (lambda rows: np.array(["a"] * rows), "expected 48 numbers"),
])
def test_bad_scales_are_refused_when_the_model_loads(tmp_path, scales, problem):
    fit = ModelEstimator(NAIVE, CTX).fit(series(doubled()))
    folder = fit.artifact.save(tmp_path / "model")
    errors = fit.artifact.calibration_errors
    np.savez(folder / "arrays.npz", calibration_errors=errors, calibration_scales=scales(errors.shape[0]))
    with pytest.raises(ArtifactError, match=f"arrays.npz: calibration_scales .*{problem}"):
        ModelArtifact.load(folder)
