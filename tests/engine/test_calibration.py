"""Locally scaled split-conformal intervals on errors whose size changes over time: each split's
scale uses only errors observed before it, and scaling is what keeps coverage in calm and volatile
spells alike."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from pipeline_code.engine.core.calibration import bounds, current_scale, local_scales, normalised, t_quantile
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.cv import cross_validate
from pipeline_code.engine.estimator import HarmonicArimaForecaster, ModelEstimator
from pipeline_code.engine.evaluation import backtest_candidate, online_offsets
from pipeline_code.engine.families import registry
from pipeline_code.engine.families.base import Context, Section, WindowForecasts
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from tests.conftest import weekly_series

WINDOW = 26
SPEC = ModelSpec(fourier_k=1, detrend=False, diff=0, ar_order_max=1)
CALM, VOLATILE, BLOCK = 0.01, 0.04, 100


def signal(t: np.ndarray) -> np.ndarray:
    """The log-scale seasonal level of ``regime_series``."""
    return 5 + 0.1 * np.sin(2 * np.pi * np.asarray(t, float) / 52.18)


def regime_series(n: int, seed: int, *, last: float, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """A seasonal series whose noise alternates between calm and volatile blocks of ``block`` points,
    ending in ``last``; returns the series and each point's noise level."""
    t = np.arange(n)
    ends_in_first = (t // block) % 2 == ((n - 1) // block) % 2
    sd = np.where(ends_in_first, last, CALM + VOLATILE - last)
    noise = sd * np.random.default_rng(seed).standard_normal(n)
    return np.exp(signal(t) + noise), sd


class Oracle:
    """A stand-in for a family that is costly to fit per split (not batched, like statsforecast's):
    it forecasts ``regime_series``' noise-free level, so its errors are the noise itself."""

    name = "oracle"
    batched = False

    def candidates(self, settings):
        return [{"family": self.name, "use_counterfactual_data": 1}]

    def fit_windows(self, y, candidate, origins, ctx):
        centre = signal(origins[:, None] + np.arange(ctx.horizon)[None, :])
        return WindowForecasts.from_rows(origins, centre, np.zeros_like(centre))

    def fit_final(self, y, candidate, ctx):
        return Section("path", dict(candidate), {"centre": signal(y.size + np.arange(ctx.periods)),
                                                 "variance": np.zeros(ctx.periods)})


@pytest.fixture
def oracle(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, Oracle.name, Oracle())
    return {"family": Oracle.name, "use_counterfactual_data": 1}


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
    both spells (out of sample); pooled unscaled errors over-cover calm spells and under-cover volatile
    ones."""
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
    assert unscaled[spell == VOLATILE].mean() < level


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


@pytest.mark.parametrize("last", [CALM, VOLATILE])
def test_a_costly_family_serves_intervals_as_wide_as_the_current_error_level(oracle, last):
    """A family fitted on a few CV splits only is calibrated on the latest consecutive ones, so its
    local scale is current: after a long calm (volatile) spell its intervals are as wide as that
    spell's noise, not as wide as the whole history's (which splits spread over it would give)."""
    y, _ = regime_series(1000, seed=0, last=last, block=200)
    fit = ModelEstimator(oracle, Context(52.18, 150, 4, 4)).fit(weekly_series(y))
    forecast = fit.forecaster.predict(4, 0.8)
    width = np.log(forecast.upper) - np.log(forecast.lower)
    expected = 2 * NormalDist().inv_cdf(0.9) * last
    assert np.all((width > expected / 1.5) & (width < expected * 1.5)), width / expected


@pytest.mark.parametrize("costly", [True, False])
def test_a_backtest_origin_is_calibrated_as_the_model_served_from_it(oracle, costly):
    """The backtest's interval at an origin is the one the model fitted on the data before that origin
    serves: the same calibration splits and the same current scale, for a costly family as for a
    batched one (the errors' size changes, so any other split or scale shows)."""
    y, _ = regime_series(760, seed=3, last=VOLATILE)
    ctx = Context(52.18, 150, 4, 4)
    candidate = oracle if costly else {"family": HARMONIC, **SPEC.hyperparameters()}
    origins = np.arange(700, 716)
    backtest = backtest_candidate({False: y, True: y}, y, candidate, ctx, origins=origins, levels=(0.8, 0.95))
    for row in (0, 7, 15):
        served = ModelEstimator(candidate, ctx).fit(weekly_series(y[: origins[row]])).forecaster
        for level in (0.8, 0.95):
            forecast = served.predict(4, level)
            low, high = backtest.intervals[level]
            np.testing.assert_allclose(forecast.lower, low[row], rtol=1e-6)
            np.testing.assert_allclose(forecast.upper, high[row], rtol=1e-6)


@pytest.mark.parametrize("df, rtol", [(3, 0.008), (5, 0.001), (12, 1e-4), (38, 1e-6), (200, 1e-8)])
def test_the_t_quantile_matches_scipys(df, rtol):
    from scipy import stats

    levels = np.linspace(0.005, 0.995, 41)
    ours = np.array([t_quantile(p, df) for p in levels])
    assert np.allclose(ours, stats.t.ppf(levels, df), rtol=rtol, atol=0)
    assert np.all(np.diff(ours) > 0)  # increasing: quantiles never cross


def test_a_tail_beyond_the_sample_is_a_t_prediction_bound_never_inside_the_sample():
    rng = np.random.default_rng(3)
    errors = np.sort(rng.normal(0.1, 0.5, size=(20, 2)), axis=0)  # 20 errors: the 95% ranks are outside
    centred = errors - np.median(errors, axis=0)
    low, high = bounds(errors, 0.95)
    spread = np.sqrt(1 + 1 / 20) * errors.std(axis=0, ddof=1)
    half = t_quantile(0.975, 19) * spread
    # a t prediction bound for a new draw, or the sample's extreme moved out by the t quantiles' spacing
    # from its level (20/21), whichever is wider
    step = (t_quantile(0.975, 19) - t_quantile(20 / 21, 19)) * spread
    assert np.allclose(high, np.maximum(centred.mean(axis=0) + half, centred[-1] + step))
    assert np.allclose(low, np.minimum(centred.mean(axis=0) - half, centred[0] - step))
    assert np.all(high > centred[-1]) and np.all(low < centred[0])
    # the t bound is wider than the normal with the sample's mean and spread taken as known, by 9% here
    assert np.all(half > 1.09 * NormalDist().inv_cdf(0.975) * errors.std(axis=0, ddof=1))
    low80, high80 = bounds(errors, 0.8)  # inside the sample: the (centred) order statistics
    assert np.array_equal(high80, centred[math.ceil(21 * 0.9) - 1])
    assert np.array_equal(low80, centred[math.floor(21 * 0.1) - 1])


def heavy_tailed(n: int, seed: int) -> np.ndarray:
    """``n`` scaled errors per step, sorted: Student t with 2 degrees of freedom, as errors divided by
    a local scale from a dozen errors are (the elecdaily audit's were up to 4 scales out)."""
    return np.sort(np.random.default_rng(seed).standard_t(2, size=(n, 8)), axis=0)


@pytest.mark.parametrize("n", [2, 3, 8, 9, 13, 20, 25, 38, 39, 60, 260])
def test_bounds_nest_and_leave_the_sample_outward_at_every_level(n):
    """A higher level never gives a narrower bound, inside the sample or past it; past it, a bound
    is strictly beyond the sample's extreme (quantiles are not collapsed onto it)."""
    errors = heavy_tailed(n, seed=n)
    levels = np.linspace(0.0, 0.999, 400)
    lows, highs = map(np.array, zip(*(bounds(errors, c) for c in levels)))
    assert np.all(np.diff(lows, axis=0) <= 0) and np.all(np.diff(highs, axis=0) >= 0)
    centred = errors - np.median(errors, axis=0)
    past = levels > (n - 1) / (n + 1)  # both tails' ranks outside the sample
    assert np.all(highs[past] > centred[-1]) and np.all(lows[past] < centred[0])


def test_intervals_are_centred_on_the_point_forecast_whatever_the_errors_bias():
    """Errors biased to one side (a model that under-forecast every CV split) shape the interval but do
    not shift it off the point forecast: every central interval contains it."""
    errors = np.sort(np.random.default_rng(4).normal(3.0, 0.5, size=(21, 12)), axis=0)
    for conf in (0.01, 0.5, 0.8, 0.95, 0.999):
        low, high = bounds(errors, conf)
        assert np.all(low <= 0) and np.all(high >= 0)
    low, high = bounds(errors, 0.8)
    assert np.all(low < 0) and np.all(high > 0)


