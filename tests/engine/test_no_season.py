"""A series with no season (``data.season_length`` 1: yearly data): the run document derives usable
settings from the data, every family either fits it without a season or offers nothing, the rules that
need a season are skipped with the reason, and the NumPy core forecasts what is fitted."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from pipeline_code.engine.core.paths import log_path
from pipeline_code.engine.cv import seasonal_naive_scale
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.evaluation import diagnostics
from pipeline_code.engine.families import registry
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.plots import plot_tuning
from pipeline_code.engine.settings import Settings, SettingsError, check_length, resolve

YEARS = 47  # fpp2's ausair: 1970..2016


def years(n: int, month: int = 1, day: int = 1) -> list[date]:
    return [date(1970 + k, month, day) for k in range(n)]


def yearly(n: int = YEARS, seed: int = 0) -> np.ndarray:
    """Growth with autocorrelated noise, positive."""
    rng = np.random.default_rng(seed)
    return np.exp(2 + 0.05 * np.arange(n) + np.cumsum(rng.normal(0, 0.04, n)))


def derived(n: int, **dates) -> Settings:
    return resolve([], timestamps=years(n, **dates), observations=n).settings


@pytest.mark.parametrize("dates", [{}, {"month": 12, "day": 31}], ids=["year start", "year end"])
def test_a_yearly_series_needs_no_flags_down_to_the_named_minimum(dates):
    """Season 1, horizon 6 (M4's yearly), a CV window of what the length allows, never below 10; the
    minimum length is reached exactly and one row fewer is refused naming it."""
    settings = derived(YEARS, **dates)
    assert (settings.data.season_length, settings.data.horizon) == (1.0, 6)
    assert settings.min_observations() == YEARS and settings.cv.window == 14
    minimum = 10 + 2 * 6 + 8 + 13  # the lowest window, 2 horizons, 8 evaluation origins, 13 to scale
    assert derived(minimum, **dates).min_observations() == minimum == 43
    short = derived(minimum - 1, **dates)
    with pytest.raises(SettingsError, match=re.escape(
            "42 observations; it needs at least 43 observations: CV window 10 + 2 x horizon 6 + 8 ")):
        check_length(short, minimum - 1)
    assert derived(100).cv.window == 24  # a long yearly series: 24 years, as the seasonal floor


def test_a_refused_derived_value_says_it_was_derived_from_the_data():
    """The provenance reads "(key derived from the data)", a layer's "(key from <layer>)"."""
    months = [date(2000 + k // 12, k % 12 + 1, 1) for k in range(120)]
    with pytest.raises(SettingsError) as info:
        resolve([("deployment", {"serve": {"max_periods": 4}})], timestamps=months, observations=120)
    problem = "data.horizon: 12 exceeds serve.max_periods 4 (data.horizon derived from the data)"
    assert problem in str(info.value)
    assert "from derived" not in str(info.value)


YEARLY = replace(Settings(), data=replace(Settings().data, season_length=1.0, horizon=6),
                    cv=replace(Settings().cv, window=14))


def test_the_search_and_the_tuning_ranges_leave_out_what_needs_a_season():
    """The harmonic family without Fourier terms or dummies (4 candidates), MSTL left out of the
    search and of the tuning job's Grid, ETS, Theta and ARIMA offered."""
    YEARLY.validate()
    harmonic = registry.family("harmonic_arima").candidates(YEARLY)
    assert len(harmonic) == 4 and {(c["fourier_k"], c["deseasonalize"]) for c in harmonic} == {(0, 0)}
    assert registry.family("mstl").candidates(YEARLY) == []
    offered = YEARLY.offered_families()
    assert offered == [f for f in YEARLY.search.families if f != "mstl"]
    assert YEARLY.parameter_ranges()["CategoricalParameterRanges"][0]["Values"] == offered
    assert {"ets", "theta", "arima", "harmonic_arima", "seasonal_naive"} <= set(offered)


def test_seasonal_naive_is_naive_and_the_mase_scale_the_one_step_naive_mae():
    y = yearly()
    ctx = Context.from_settings(YEARLY)
    origins = np.array([20, 30, 40])
    naive = registry.family("seasonal_naive").fit_windows(y, {"family": "seasonal_naive"}, origins, ctx)
    np.testing.assert_allclose(naive.mean(), y[origins - 1][:, None].repeat(ctx.horizon, axis=1), rtol=1e-12)
    assert np.all(np.diff(naive.variance, axis=1) > 0)  # a random walk's variance grows every step
    scale = seasonal_naive_scale(y, origins, ctx.window, ctx.period)
    np.testing.assert_allclose(scale, [np.mean(np.abs(np.diff(y[o - ctx.window:o]))) for o in origins])


@pytest.mark.parametrize("name", ["harmonic_arima", "seasonal_naive", "ets", "theta", "arima"])
def test_every_offered_family_fits_a_short_yearly_window_and_the_core_forecasts_it(name):
    """Each fits without a season (statsforecast's models with season_length 1, the last value, no
    Fourier terms), every CV window of 14 years forecasts (the harmonic family's AR order is capped on
    it), and the final fit's section is forecast by the NumPy core for the periods served."""
    y = yearly()
    ctx = Context.from_settings(YEARLY)
    family = registry.family(name)
    for candidate in family.candidates(YEARLY):
        windows = family.fit_windows(y, candidate, np.arange(14, YEARS - ctx.horizon, 4), ctx)
        assert not windows.failed.any(), (candidate, windows.reason)
    candidate = family.candidates(YEARLY)[-1]
    section = family.fit_final(y, candidate, ctx)
    if name == "harmonic_arima":
        assert section.spec["fourier_k"] == 0
    elif name == "seasonal_naive":
        assert section.spec["period"] == section.parameters["last_season"].size == 1
    else:
        assert family.model(candidate, ctx).season_length == 1
    z, v = log_path(section.core, section.spec, section.parameters, y.size - 1, ctx.periods)
    assert np.all(np.isfinite(z)) and np.all(v >= 0) and z.size == ctx.periods


def test_the_outlier_and_break_rules_are_skipped_with_the_reason():
    from pipeline_code.engine.cleaning import NO_SEASON as RULES_SKIPPED, clean

    y = yearly()
    y[30] *= 3  # what robust STL would flag, had the series a season
    series = Series(years(YEARS), y, "YS")
    pre, report = clean(series, YEARLY)
    np.testing.assert_array_equal(pre.counterfactual, y)
    assert not pre.is_outlier.any() and pre.episode is None
    assert report == {"rules_skipped": RULES_SKIPPED, "residual_bounds": None}
    assert clean(series, replace(YEARLY, data=replace(YEARLY.data, season_length=4.0)))[1] == {}


def test_the_residual_diagnostics_test_no_seasonal_lag():
    residuals = np.random.default_rng(3).normal(size=40)
    assert [row["lag"] for row in diagnostics(residuals, 1.0, 0)["ljung_box"]] == [10]


def test_the_tuning_plot_leaves_out_failed_harmonic_candidates(tmp_path):
    """A search whose harmonic candidates all failed (a short yearly window, before their AR order was
    capped) is plotted, not a failed run."""
    failed = {"hyperparameters": {"family": "harmonic_arima", "use_counterfactual_data": 1, "detrend": 1,
                                  "deseasonalize": 0, "fourier_k": 0}, "cv_mase": float("inf")}
    scored = {"hyperparameters": {"family": "theta"}, "cv_mase": 1.2}
    assert plot_tuning(tmp_path / "tuning.png", [failed, scored]).is_file()


@pytest.mark.parametrize("detrend", [False, True])
def test_a_short_yearly_window_fits_as_the_yardstick_fits_it_with_a_capped_ar_order(detrend):
    """No Fourier terms or dummies; the AR order searched on 14 values is capped (4, so AICc's
    small-sample term stays defined), in the batched fitter and the statsmodels yardstick alike."""
    from pipeline_code.engine.core.spec import ModelSpec
    from pipeline_code.engine.model import reference
    from pipeline_code.engine.model.sliding import fit_windows

    z = np.log(yearly(seed=5))
    spec = ModelSpec(fourier_k=0, season_length=1.0, detrend=detrend)
    origins = np.array([20, 33, 41])
    batched = fit_windows(z, spec, window=14, horizon=6, origins=origins)
    assert batched.phi.shape[1] == 4 and np.all(np.isfinite(batched.z_hat))
    for i, origin in enumerate(origins):
        z_hat, variance, diff = reference.fit_forecast_one(z, spec, origin=int(origin), window=14, horizon=6)
        assert diff == batched.diff[i]
        np.testing.assert_allclose(batched.z_hat[i], z_hat, atol=5e-4)
        np.testing.assert_allclose(batched.variance[i], variance, rtol=2e-3)  # the fitter's ridge, 14 values
