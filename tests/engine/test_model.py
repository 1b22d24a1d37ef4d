"""The batched sliding-window fits agree with statsmodels (``model.reference``), and forecasts are aligned."""

import numpy as np
import pytest

from pipeline_code.engine.cv import cross_validate, sliding_origins
from pipeline_code.engine.model import reference
from pipeline_code.engine.model.sliding import fit_windows, inverse_ma
from pipeline_code.engine.core.spec import ModelSpec


@pytest.mark.parametrize("n, window, horizon, step", [(1329, 417, 26, 1), (100, 50, 10, 3), (60, 50, 10, 1)])
def test_split_count_formula(n, window, horizon, step):
    origins = sliding_origins(n, window=window, horizon=horizon, step=step)
    assert origins.size == (n - window - horizon) // step + 1
    assert origins[-1] + horizon <= n
    assert origins[0] == window


def test_too_few_observations_for_one_split():
    with pytest.raises(ValueError, match="too few"):
        sliding_origins(30, window=25, horizon=10)


SPECS = [
    ModelSpec(fourier_k=8),
    ModelSpec(fourier_k=3, detrend=False),
    ModelSpec(fourier_k=2, deseasonalize=True),
    ModelSpec(fourier_k=5, diff=0, ar_order_max=3),
    ModelSpec(fourier_k=1, diff=1),
]
WINDOW, HORIZON = 417, 26


def sample_origins(z: np.ndarray, size: int = 6) -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.sort(rng.choice(np.arange(WINDOW, z.size - HORIZON), size=size, replace=False))


@pytest.mark.parametrize("spec", SPECS)
def test_batched_forecasts_equal_statsmodels_state_space_at_the_same_parameters(gasoline, spec):
    """Given each window's fitted ARMA parameters, statsmodels' SARIMAX (regression on its own
    deterministic design, ARIMA(p, d, 1) errors) forecasts steps 1..h with the same means and variances."""
    z = np.log(gasoline.values)
    origins = sample_origins(z)
    fits = fit_windows(z, spec, window=WINDOW, horizon=HORIZON, origins=origins)
    assert np.any(fits.theta != 0), "the windows must exercise the MA term"
    for i, origin in enumerate(origins):
        diff = int(fits.diff[i])
        design = reference.deterministic_design(spec, origin + HORIZON, constant=diff == 0)
        past, future = design[origin - WINDOW : origin], design[origin:]
        b, _ = reference.regression(z[origin - WINDOW : origin], past, diff)
        mean, variance = reference.state_space_forecast(
            z[origin - WINDOW : origin], past, future, b,
            phi=fits.phi[i], theta=float(fits.theta[i]), sigma2=float(fits.sigma2[i]), diff=diff,
        )
        np.testing.assert_allclose(fits.z_hat[i], mean, atol=1e-4)
        np.testing.assert_allclose(fits.variance[i], variance, rtol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_batched_fits_equal_the_statsmodels_yardstick_refitted_per_split(gasoline, spec):
    """Each split's fit (KPSS differencing, MA grid and AR order by AICc) agrees with the yardstick's
    from-scratch estimate of the same window."""
    z = np.log(gasoline.values)
    origins = sample_origins(z)
    batched = fit_windows(z, spec, window=WINDOW, horizon=HORIZON, origins=origins)
    for i, origin in enumerate(origins):
        z_hat, variance, diff = reference.fit_forecast_one(
            z, spec, origin=origin, window=WINDOW, horizon=HORIZON)
        assert diff == batched.diff[i]
        np.testing.assert_allclose(batched.z_hat[i], z_hat, atol=5e-4)
        np.testing.assert_allclose(batched.variance[i], variance, rtol=1e-3)


@pytest.mark.parametrize("spec", SPECS)
def test_windows_of_different_lengths_fit_in_one_batch_as_one_at_a_time(gasoline, spec):
    """All history before each origin (lengths 417 to 1300 here, right-aligned and zero-padded in one
    batch): every row is the fit of its own window alone, decisions and forecasts."""
    z = np.log(gasoline.values)
    origins = np.array([WINDOW, 600, 601, 950, 1300])
    batched = fit_windows(z, spec, window=WINDOW, horizon=HORIZON, origins=origins, starts=np.zeros(5, int))
    for i, origin in enumerate(origins):
        alone = fit_windows(z, spec, window=int(origin), horizon=HORIZON, origins=origins[i:i + 1])
        assert (batched.diff[i], batched.theta[i]) == (alone.diff[0], alone.theta[0])
        np.testing.assert_array_equal(batched.phi[i] != 0, alone.phi[0] != 0)
        np.testing.assert_allclose(batched.z_hat[i], alone.z_hat[0], atol=1e-9)
        np.testing.assert_allclose(batched.variance[i], alone.variance[0], rtol=1e-9)


def test_consecutive_windows_fit_as_each_window_alone(gasoline):
    """Step-1 windows (their bounds dense: one running sum over every row) against each alone (sparse
    bounds: products between them)."""
    z = np.log(gasoline.values)
    origins = np.arange(WINDOW, WINDOW + 100)
    batched = fit_windows(z, SPECS[2], window=WINDOW, horizon=HORIZON, origins=origins)
    for i in range(0, 100, 33):
        alone = fit_windows(z, SPECS[2], window=WINDOW, horizon=HORIZON, origins=origins[i:i + 1])
        np.testing.assert_allclose(batched.z_hat[i], alone.z_hat[0], atol=1e-9)
        np.testing.assert_allclose(batched.beta[i], alone.beta[0], rtol=1e-6, atol=1e-9)


def test_many_long_windows_are_fitted_in_batches_with_the_same_result(gasoline, monkeypatch):
    """Past ``MAX_CELLS`` (windows x the longest window) the windows are fitted in batches: memory stays
    bounded, and every window's fit is unchanged."""
    from pipeline_code.engine.model import sliding

    z = np.log(gasoline.values)
    origins = np.arange(900, 1300, 7)
    whole = fit_windows(z, SPECS[0], window=WINDOW, horizon=HORIZON, origins=origins, starts=np.zeros_like(origins))
    monkeypatch.setattr(sliding, "MAX_CELLS", 5 * 1300)  # batches of 5 windows
    batched = fit_windows(z, SPECS[0], window=WINDOW, horizon=HORIZON, origins=origins, starts=np.zeros_like(origins))
    for name in ("z_hat", "variance", "beta", "phi", "theta", "diff", "x_tail"):
        np.testing.assert_allclose(getattr(batched, name), getattr(whole, name), rtol=1e-8, atol=1e-10)


def test_an_all_history_fit_equals_the_statsmodels_yardstick(gasoline):
    """A row of a mixed-length batch against the independent yardstick on its own (all) history."""
    z = np.log(gasoline.values)
    spec, origins = SPECS[0], np.array([500, 1100])
    batched = fit_windows(z, spec, window=WINDOW, horizon=HORIZON, origins=origins, starts=np.array([0, 0]))
    z_hat, variance, diff = reference.fit_forecast_one(z, spec, origin=1100, window=1100, horizon=HORIZON)
    assert diff == batched.diff[1]
    np.testing.assert_allclose(batched.z_hat[1], z_hat, atol=5e-4)
    np.testing.assert_allclose(batched.variance[1], variance, rtol=1e-3)


def test_a_window_starting_before_the_series_is_refused(gasoline):
    z = np.log(gasoline.values)
    with pytest.raises(ValueError, match="full window"):
        fit_windows(z, SPECS[0], window=WINDOW, horizon=HORIZON, origins=np.array([400]))


@pytest.mark.parametrize("shape", [(1, 1), (1, 600), (37, 417)])
@pytest.mark.parametrize("theta", [-0.95, -0.3, 0.5])
def test_the_inverse_ma_filter_is_scipys_first_order_recursive_filter(shape, theta):
    from scipy.signal import lfilter

    errors = np.random.default_rng(7).normal(size=shape)
    np.testing.assert_array_equal(inverse_ma(errors, theta), lfilter([1.0], [1.0, theta], errors, axis=1))


def test_moving_average_term_shapes_the_forecast():
    """On ARIMA(0, 1, 1) errors with theta = -0.6, the fit finds the MA term and statsmodels agrees on
    the forecast: the level is smoothed, not the last value repeated."""
    rng = np.random.default_rng(11)
    n, theta = 700, -0.6
    eps = 0.02 * rng.standard_normal(n + 1)
    z = 4.0 + np.cumsum(eps[1:] + theta * eps[:-1])
    spec = ModelSpec(fourier_k=0, detrend=False, diff=1, ar_order_max=2)
    fits = fit_windows(z, spec, window=600, horizon=5, origins=np.array([n]))
    assert fits.theta[0] == pytest.approx(theta, abs=0.16)
    z_hat, variance, _ = reference.fit_forecast_one(z, spec, origin=n, window=600, horizon=5)
    np.testing.assert_allclose(fits.z_hat[0], z_hat, atol=1e-6)
    np.testing.assert_allclose(fits.variance[0], variance, rtol=1e-5)
    assert abs(fits.z_hat[0, 0] - z[-1]) > 1e-3


def test_forecasts_cover_steps_one_to_horizon_after_the_window():
    """A noiseless seasonal series is forecast exactly at steps 1..h (no shift, no last fitted value)."""
    t = np.arange(400, dtype=float)
    m = 365.25 / 7
    y = np.exp(5 + 0.001 * t + 0.1 * np.sin(2 * np.pi * t / m) + 0.05 * np.cos(4 * np.pi * t / m))
    spec = ModelSpec(fourier_k=2, diff=0, ar_order_max=0)
    cv = cross_validate(y, spec, window=200, horizon=13, step=50)
    np.testing.assert_allclose(cv.log_errors, 0.0, atol=1e-5)
    assert cv.actual[0, 0] == y[200]  # the first forecast is the first point after the window


def test_each_split_sees_only_its_window():
    """Changing data outside a split's window must not change that split's forecast."""
    rng = np.random.default_rng(0)
    y = np.exp(5 + 0.1 * rng.standard_normal(300).cumsum() / 10)
    spec = ModelSpec(fourier_k=2)
    base = cross_validate(y, spec, window=120, horizon=10, origins=np.array([150]))
    poked = y.copy()
    poked[:30] *= 3  # before the window [30, 150)
    poked[160:] *= 3  # after the forecast targets used as inputs
    again = cross_validate(poked, spec, window=120, horizon=10, origins=np.array([150]))
    np.testing.assert_allclose(np.log(base.actual) - base.log_errors, np.log(again.actual) - again.log_errors)


def test_fourier_order_is_bounded_by_the_season_length():
    with pytest.raises(ValueError, match="fourier_k=7"):
        ModelSpec(fourier_k=7, season_length=12)
    assert ModelSpec(fourier_k=5, season_length=12).seasonal_period == 12
