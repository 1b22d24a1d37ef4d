"""The partially pooled autoregression: its least squares against NumPy's solver on the stacked rows
(pooled, weighted, and with the panel as a prior), the recovery of a known AR process pooled over
series of different levels, psi weights against an independent recursion, no look-ahead, the window,
failures, and the panel's pooling."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.families import global_ar as gar
from pipeline_code.engine.families.base import Context, FamilyError
from pipeline_code.engine.panel_fit import backtest_panel, fit_panel, run_panel
from pipeline_code.engine.settings import Settings
from tests.engine.panel_helpers import panel_of, settings, synthetic

FAMILY = gar.GlobalAR()
CTX = Context(season_length=12.0, window=48, horizon=6, periods=24)


def ar_process(n: int, weights: np.ndarray, level: float, seed: int, noise: float = 0.01) -> np.ndarray:
    """A positive series whose log follows the AR with ``weights`` (oldest lag first)."""
    rng = np.random.default_rng(seed)
    p = weights.size
    z = np.full(n + 200, level)
    for t in range(p, z.size):
        z[t] = z[t - p:t] @ weights + noise * rng.standard_normal()
    return np.exp(z[200:])


def stacked_rows(z: np.ndarray, order: int, targets: range) -> tuple[np.ndarray, np.ndarray]:
    """The centred lags and targets of ``targets``, built row by row (the yardstick)."""
    x, y = [], []
    for t in targets:
        lags = z[t - order:t]
        x.append(lags - lags.mean())
        y.append(z[t] - lags.mean())
    return np.array(x), np.array(y)


def test_coefficients_are_the_ridge_least_squares_of_the_stacked_rows():
    rng = np.random.default_rng(0)
    series = [np.exp(np.cumsum(rng.normal(0, 0.05, 90)) + lvl) for lvl in (1.0, 4.0, 9.0)]
    order, origin = 5, 70
    pooled = sum(gar.statistics(np.log(y), order, np.array([origin]), window=40, history="window")
                 for y in series)[0]
    xs, ys = zip(*(stacked_rows(np.log(y), order, range(origin - 40 + order, origin)) for y in series))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert pooled[-1, -1] == len(y)
    penalty = gar.RIDGE * np.trace(x.T @ x) / order
    augmented_x = np.vstack([x, np.sqrt(penalty) * np.eye(order)])
    augmented_y = np.concatenate([y, np.zeros(order)])
    expected = np.linalg.lstsq(augmented_x, augmented_y, rcond=None)[0]
    np.testing.assert_allclose(gar.coefficients(pooled), expected, rtol=1e-8, atol=1e-10)
    # all history: every row whose target is before the origin
    full = gar.statistics(np.log(series[0]), order, np.array([origin]), window=40, history="all")[0]
    assert full[-1, -1] == origin - order


def ridge_lstsq(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Ridge least squares by NumPy's solver on rows augmented with the penalty (the yardstick)."""
    penalty = gar.RIDGE * np.trace(x.T @ x) / order
    return np.linalg.lstsq(np.vstack([x, np.sqrt(penalty) * np.eye(order)]),
                           np.concatenate([y, np.zeros(order)]), rcond=None)[0]


def test_a_panel_weighs_each_series_by_its_own_residual_variance():
    order = 4
    steady = np.array([0.1, -0.2, 0.3, 0.8])
    series = [ar_process(200, steady, 2.0, seed=1, noise=0.01), ar_process(150, steady, 5.0, seed=2, noise=0.02),
              ar_process(90, np.array([0.4, 0.3, 0.2, 0.1]), 3.0, seed=3, noise=0.3)]
    ctx = Context(season_length=3.0, window=60, horizon=6, periods=6)
    candidate = {"family": gar.NAME, "history": "all", "order": order}
    xs, ys, ws = [], [], []
    for v in series:  # each series' own rows up to 40 values before its end (counts 156, 106, 46)
        x, y = stacked_rows(np.log(v), order, range(order, v.size - 40))
        residual = y - x @ ridge_lstsq(x, y, order)
        xs.append(x), ys.append(y), ws.append(np.full(len(y), (len(y) - order) / np.sum(residual ** 2)))
    root = np.sqrt(np.concatenate(ws))
    expected = ridge_lstsq(np.concatenate(xs) * root[:, None], np.concatenate(ys) * root, order)
    pooled = sum(FAMILY.statistics(v, candidate, np.array([v.size - 40]), ctx) for v in series)
    np.testing.assert_allclose(gar.coefficients(pooled)[0], expected, rtol=1e-7, atol=1e-9)
    assert pooled[0, -1, -1] == sum(len(y) for y in ys)
    unweighted = sum(FAMILY.own(v, candidate, np.array([v.size - 40]), ctx) for v in series)
    assert not np.allclose(gar.coefficients(unweighted), gar.coefficients(pooled), atol=0.05)
    # a flat series (no residual at all) adds rows but no information, and no infinite weight
    flat = FAMILY.statistics(np.full(120, 7.0), candidate, np.array([80]), ctx)
    assert np.all(np.isfinite(flat)) and flat[0, -1, -1] == 80 - order
    np.testing.assert_allclose(gar.coefficients(pooled + flat), gar.coefficients(pooled), rtol=1e-12)


def test_pooling_recovers_a_known_process_across_levels():
    truth = np.array([0.0, -0.5, 1.5])  # z_t = z_{t-1} + 0.5 (z_{t-1} - z_{t-2}): sums to one
    series = [ar_process(120, truth, level, seed) for seed, level in enumerate((0.5, 3.0, 7.0, 12.0) * 5)]
    pooled = sum(gar.statistics(np.log(y), 3, np.array([120]), window=120, history="all") for y in series)[0]
    weights = gar.ar_weights(gar.coefficients(pooled))
    np.testing.assert_allclose(weights, truth, atol=0.05)
    assert weights.sum() == pytest.approx(1.0)


def test_psi_weights_and_forecasts_match_an_independent_recursion():
    from statsmodels.tsa.arima_process import arma2ma

    a = np.array([0.1, -0.3, 0.2, 1.0])  # oldest first; sums to one
    psi = gar.psi_weights(a[None, :], 10)[0]
    np.testing.assert_allclose(psi, arma2ma(np.r_[1, -a[::-1]], [1], lags=10), rtol=1e-10)
    last = np.array([[1.0, 1.2, 0.9, 1.1]])
    got = gar.recursive_forecast(last, a[None, :], 5)[0]
    buffer = list(last[0])
    for _ in range(5):
        buffer.append(float(np.dot(buffer[-4:], a)))
    np.testing.assert_allclose(got, buffer[4:], rtol=1e-12)


def test_largest_root_matches_the_characteristic_polynomial_and_explosive_fits_are_refused():
    rng = np.random.default_rng(3)
    for a in (np.array([0.5, 0.5]), np.array([-1.5, 2.5]), rng.dirichlet(np.ones(6)), np.array([0.2, -0.1, 0.3, 0.6])):
        phi = a[::-1]  # z_t = phi_1 z_{t-1} + ...: roots of x^p - phi_1 x^(p-1) - ... - phi_p
        assert gar.largest_root(a) == pytest.approx(np.abs(np.roots(np.r_[1.0, -phi])).max(), rel=1e-9)
    assert not gar.explosive(np.array([0.5, 0.5]), 1000)  # a unit root
    growing = np.array([-1.5, 2.5])  # roots 1 and 1.5
    assert gar.explosive(growing, 2) and not gar.explosive(growing, 1)  # 1.5 ** 2 > 2 > 1.5
    # a pooled fit that explodes: no forecast in its windows, and the final fit says why
    z = np.zeros(40)
    z[:2] = 0.0, 0.01
    for t in range(2, z.size):
        z[t] = 2.5 * z[t - 1] - 1.5 * z[t - 2] + 0.001 * rng.standard_normal()
    candidate = {"family": gar.NAME, "history": "all", "order": 2}
    y = ar_process(60, np.array([0.3, 0.7]), 2.0, seed=4)
    shared = gar.statistics(z, 2, np.array([40]), window=40, history="all")
    assert gar.largest_root(gar.ar_weights(gar.coefficients(shared))[0]) == pytest.approx(1.5, rel=1e-3)
    ctx = Context(season_length=1.0, window=40, horizon=6, periods=6)
    windows = FAMILY.fit_windows(y, candidate, np.array([50]), ctx, pooled=shared)
    assert windows.failed.all() and "explosive" in windows.reason
    with pytest.raises(FamilyError, match="explosive"):
        FAMILY.fit_final(y, candidate, ctx, pooled=shared[0])
    assert FAMILY.fit_final(y, candidate, ctx).core  # its own fit is stable


def test_window_forecasts_use_nothing_at_or_after_the_origin_nor_before_the_window():
    y = ar_process(120, np.array([0.0, -0.5, 1.5]), 2.0, seed=1)
    candidate = {"family": gar.NAME, "history": "window", "order": 13, "use_counterfactual_data": 1}
    origins = np.array([80, 100])
    base = FAMILY.fit_windows(y, candidate, origins, CTX)
    assert not base.failed.any()
    later = y.copy()
    later[80:] *= 3.0
    np.testing.assert_array_equal(FAMILY.fit_windows(later, candidate, origins[:1], CTX).centre, base.centre[:1])
    earlier = y.copy()
    earlier[:80 - CTX.window] *= 0.5  # outside the first origin's window
    np.testing.assert_allclose(FAMILY.fit_windows(earlier, candidate, origins[:1], CTX).centre, base.centre[:1],
                               rtol=1e-12)
    everything = {**candidate, "history": "all"}
    assert not np.allclose(FAMILY.fit_windows(earlier, everything, origins[:1], CTX).centre, base.centre[:1])


def test_the_level_does_not_change_the_shape():
    y = ar_process(100, np.array([0.0, -0.5, 1.5]), 2.0, seed=2)
    candidate = {"family": gar.NAME, "history": "window", "order": 13, "use_counterfactual_data": 1}
    origins = np.array([90])
    one, ten = FAMILY.fit_windows(y, candidate, origins, CTX), FAMILY.fit_windows(10 * y, candidate, origins, CTX)
    np.testing.assert_allclose(ten.centre - one.centre, np.log(10.0), atol=1e-9)
    np.testing.assert_allclose(ten.variance, one.variance, rtol=1e-8)
    assert np.all(np.diff(one.variance[0]) >= 0) and one.variance[0, 0] > 0


def test_too_little_data_fails_its_window_and_the_final_fit_says_why():
    y = ar_process(60, np.array([0.0, -0.5, 1.5]), 2.0, seed=3)
    candidate = {"family": gar.NAME, "history": "all", "order": 13, "use_counterfactual_data": 1}
    got = FAMILY.fit_windows(y, candidate, np.array([20, 59]), CTX)
    assert got.failed.tolist() == [True, False] and got.reason
    with pytest.raises(FamilyError, match="too few observations"):
        FAMILY.fit_final(y[:20], candidate, CTX)
    section = FAMILY.fit_final(y, candidate, CTX)
    assert section.core == "path" and len(section.parameters["centre"]) == CTX.periods
    assert sum(section.spec["weights"]) == pytest.approx(1.0)


def test_candidates_follow_the_season_and_the_histories():
    monthly = Settings().merged({"data": {"freq": "MS", "season_length": 12, "horizon": 12}})
    assert [c["order"] for c in FAMILY.candidates(monthly)] == [13, 13]
    assert [c["history"] for c in FAMILY.candidates(monthly.merged({"search": {"histories": ["all"]}}))] == ["all"]


def test_a_series_fit_is_its_own_rows_with_the_panel_as_a_prior():
    """The yardstick: weighted least squares on the series' own rows stacked with every panel row,
    the panel's rows scaled to weigh ``PRIOR_ROWS_PER_LAG`` rows per coefficient in all."""
    order = 4
    ctx = Context(season_length=3.0, window=60, horizon=6, periods=6)
    candidate = {"family": gar.NAME, "history": "all", "order": order}
    series = [ar_process(n, np.array([0.1, -0.2, 0.3, 0.8]), level, seed=seed, noise=noise)
              for n, level, seed, noise in ((200, 2.0, 1, 0.01), (150, 5.0, 2, 0.02), (90, 3.0, 3, 0.05))]
    rows, weights = [], []
    for v in series:
        x, y = stacked_rows(np.log(v), order, range(order, v.size - 40))
        residual = y - x @ ridge_lstsq(x, y, order)
        rows.append((x, y)), weights.append((len(y) - order) / np.sum(residual ** 2))
    count = sum(len(y) for _, y in rows)
    panel_x = np.concatenate([x * np.sqrt(w) for (x, _), w in zip(rows, weights)])
    panel_y = np.concatenate([y * np.sqrt(w) for (_, y), w in zip(rows, weights)])
    prior = np.sqrt(gar.PRIOR_ROWS_PER_LAG * order / count)
    pooled = sum(FAMILY.statistics(v, candidate, np.array([v.size - 40]), ctx) for v in series)
    for v, (x, y), w in zip(series, rows, weights):
        expected = ridge_lstsq(np.vstack([x * np.sqrt(w), panel_x * prior]),
                               np.concatenate([y * np.sqrt(w), panel_y * prior]), order)
        own = FAMILY.own(v, candidate, np.array([v.size - 40]), ctx)
        np.testing.assert_allclose(gar.coefficients(gar.shrunk(own, pooled))[0], expected, rtol=1e-7, atol=1e-9)


def test_a_short_series_leans_on_the_panel_and_a_long_one_on_its_own_rows():
    shared, other = np.array([0.1, -0.2, 0.3, 0.8]), np.array([0.5, 0.3, 0.1, 0.1])
    ctx = Context(season_length=3.0, window=400, horizon=6, periods=6)
    candidate = {"family": gar.NAME, "history": "all", "order": 4}
    panel = [ar_process(300, shared, 2.0 + k, seed=k) for k in range(6)]
    pooled = sum(FAMILY.statistics(v, candidate, np.array([v.size]), ctx) for v in panel)
    target = gar.ar_weights(gar.coefficients(pooled))[0]
    fits = {}
    for n in (8, 12, 400):  # the same odd process, seen briefly or for long
        v = ar_process(n, other, 4.0, seed=9)
        own = FAMILY.own(v, candidate, np.array([v.size]), ctx)
        fits[n] = (gar.ar_weights(gar.coefficients(gar.shrunk(own, pooled)))[0],
                   gar.ar_weights(gar.coefficients(own))[0])
    def gap(a, b):
        return np.abs(a - b).max()
    # 4 rows cannot fit 4 coefficients alone (MIN_ROWS_PER_LAG), but can with the prior's 4 rows
    assert np.isnan(fits[8][1]).all() and gap(fits[8][0], target) < 0.2
    # 8 rows against a prior worth 4: pulled halfway and more toward the panel
    assert gap(fits[12][0], target) < 0.5 * gap(fits[12][1], target)
    # 396 rows: its own process, the prior nearly spent
    assert gap(fits[400][0], fits[400][1]) < 0.02 and gap(fits[400][0], other) < 0.1 < gap(fits[400][0], target)


def test_a_panel_pools_every_series_and_serves_each_with_its_own_variance():
    values = synthetic(8, length=72)
    conf = settings(families=("seasonal_naive", "global_ar"))
    fit = fit_panel(panel_of(values), conf, choice={"family": "global_ar"})
    candidate = next(iter(fit.artifacts.values())).metadata["hyperparameters"]
    ctx = Context.from_settings(conf)
    pooled = sum(FAMILY.statistics(v, candidate, np.array([v.size]), ctx) for v in values.values())
    for item, v in values.items():  # each series shrunk toward the pooled fit of every series' rows
        own = FAMILY.own(v, candidate, np.array([v.size]), ctx)
        np.testing.assert_allclose(fit.artifacts[item].spec["weights"],
                                   gar.ar_weights(gar.coefficients(gar.shrunk(own, pooled)))[0], atol=1e-9)
        alone = FAMILY.fit_final(v, candidate, ctx)
        assert not np.allclose(alone.spec["weights"], fit.artifacts[item].spec["weights"])
    variances = {round(a.parameters["variance"][0], 12) for a in fit.artifacts.values()}
    assert len(variances) == len(values)
    for item, artifact in fit.artifacts.items():
        forecast = Forecaster(artifact).predict(6, 0.9)
        assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)


def test_a_panel_split_pools_only_data_before_its_cutoff():
    values = synthetic(6, length=72)
    conf = settings(families=("seasonal_naive", "global_ar"))
    panel = panel_of(values)
    _, _, plan = run_panel(panel, conf, {"family": "global_ar", "history": "window", "scale": "log"}, [], 1, None,
                           fit=False)
    changed = {k: v.copy() for k, v in values.items()}
    last = int(plan.cutoffs[-1])
    for v in changed.values():
        v[last:] *= 2.0  # every series' values from the last cutoff on
    _, _, other = run_panel(panel_of(changed), conf, {"family": "global_ar", "history": "window", "scale": "log"},
                            [], 1, None, fit=False)
    np.testing.assert_array_equal(other.pooled["global_ar"][:-1], plan.pooled["global_ar"][:-1])
    assert not np.allclose(other.pooled["global_ar"][-1], plan.pooled["global_ar"][-1])


def test_a_panel_backtest_forecasts_each_series_with_the_pooled_coefficients():
    values = synthetic(6, length=72, seed=5)
    conf = settings(families=("seasonal_naive", "global_ar"))
    panel = panel_of(values)
    cutoff = panel.series["s000"].timestamps[66]  # its selection cutoffs (48..60) leave a full CV window
    cv = backtest_panel(panel, conf, choice={"family": "global_ar"}, cutoffs=[cutoff])
    ctx = Context.from_settings(conf)
    candidate = FAMILY.candidates(conf)[0]
    origin = np.array([66])
    pooled = sum(FAMILY.statistics(v, candidate, origin, ctx) for v in values.values())
    for item, v in values.items():
        z = np.log(v)
        own = FAMILY.own(v, candidate, origin, ctx)
        centre, variance = gar.forecast(z, origin, gar.shrunk(own, pooled), own, ctx.horizon)
        np.testing.assert_allclose(cv.items[item].forecast[0], np.exp(centre + 0.5 * variance)[0], rtol=1e-9)
        local = FAMILY.fit_windows(v, candidate, origin, ctx)
        assert not np.allclose(cv.items[item].forecast[0], local.mean()[0], rtol=1e-6)


def test_detrended_statistics_are_those_of_the_detrended_series():
    rng = np.random.default_rng(4)
    z = np.cumsum(rng.normal(0.01, 0.02, 150)) + 0.2 * np.sin(np.arange(150) * np.pi / 6)
    origins, mu = np.array([60, 100, 150]), np.array([0.012, -0.3, 0.0])
    for history in ("window", "all"):
        stats = gar.statistics(z, 13, origins, window=48, history=history)
        for k, (origin, m) in enumerate(zip(origins, mu)):
            expected = gar.statistics(z - m * np.arange(z.size), 13, np.array([origin]), window=48, history=history)[0]
            np.testing.assert_allclose(gar.detrended(stats[k], m), expected, rtol=1e-9, atol=1e-9)


def test_growth_is_the_mean_change_over_the_rows_span():
    z = np.array([1.0, 2.0, 4.0, 7.0, 11.0, 16.0])
    np.testing.assert_allclose(gar.growth(z, np.array([6, 4, 1]), window=3, history="all"), [3.0, 2.0, 0.0])
    np.testing.assert_allclose(gar.growth(z, np.array([6, 4]), window=3, history="window"), [4.5, 2.5])


def test_the_drift_family_is_the_plain_ar_of_the_detrended_series_with_the_trend_added_back():
    rng = np.random.default_rng(2)
    z = np.cumsum(rng.normal(0.01, 0.03, 120)) + 0.1 * np.sin(2 * np.pi * np.arange(120) / 12) + 2.0
    y = np.exp(z)
    ctx = Context(season_length=12.0, window=96, horizon=12, periods=24)
    drifting = gar.GlobalARDrift()
    candidate = drifting.candidates(settings(families=("seasonal_naive", "global_ar_drift")))[0]
    assert candidate["family"] == "global_ar_drift"
    section = drifting.fit_final(y, candidate, ctx)
    mu = (z[-1] - z[120 - 96]) / 95  # the window's mean growth
    assert section.spec["drift"] == pytest.approx(mu, rel=1e-9)
    t = np.arange(120)
    plain = FAMILY.fit_final(np.exp(z - mu * t), {**candidate, "family": gar.NAME}, ctx)
    np.testing.assert_allclose(section.parameters["centre"], plain.parameters["centre"] + mu * np.arange(120, 144),
                               rtol=1e-9)
    np.testing.assert_allclose(section.parameters["variance"], plain.parameters["variance"], rtol=1e-9)
    np.testing.assert_allclose(section.spec["weights"], plain.spec["weights"], atol=1e-9)
    # window forecasts detrend with each origin's own growth: nothing at or after the origin
    changed = y.copy()
    changed[100:] *= 3.0
    before, after = (drifting.fit_windows(v, candidate, np.array([100]), ctx).mean() for v in (y, changed))
    np.testing.assert_allclose(before, after, rtol=1e-12)
