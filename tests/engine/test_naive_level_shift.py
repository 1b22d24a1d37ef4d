"""Seasonal naive's point forecast is the value one season earlier, even after a level shift inside the
window (whose seasonal differences make its variance large): in CV, in its artifact, served, in a
combination and as a panel's fallback. An artifact written before the point was named serves as it did."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.forecaster import POINT, Forecaster, point_path
from pipeline_code.engine.cv import cross_validate_candidate
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.estimator import ModelEstimator
from pipeline_code.engine.families import combination, registry
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.panel_fit import backtest_panel, fit_panel
from pipeline_code.engine.panel_cv import panel_cutoffs
from pipeline_code.engine.panel_series import naive_section
from tests.engine.panel_helpers import panel_of, settings, synthetic

NAIVE = {"family": "seasonal_naive", "use_counterfactual_data": 1}
CTX = Context(season_length=12, window=48, horizon=12, periods=24)


def doubled(n: int = 120, at: int = 108, seed: int = 0) -> np.ndarray:
    """Monthly, log-normal noise, the level doubling 12 months before the end (inside the last window)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    log_y = np.log(100) + 0.2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.05, n) + np.log(2) * (t >= at)
    return np.exp(log_y)


def series(y: np.ndarray) -> Series:
    calendar = parse_freq("MS")
    return Series([calendar.shift(date(2010, 1, 1), k) for k in range(y.size)], y, "MS")


def test_the_served_point_after_a_level_shift_is_the_last_season():
    y = doubled()
    fit = ModelEstimator(NAIVE, CTX).fit(series(y))
    assert fit.artifact.parameters["sigma2"] > 0.1  # the shift's differences: the corrected mean was 9% higher
    forecast = fit.forecaster.predict(24, 0.9)
    np.testing.assert_allclose(forecast.mean, np.tile(y[-12:], 2), rtol=1e-12)
    assert forecast.mean.max() <= y.max() * (1 + 1e-12)
    assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)
    origins = fit.cv.origins  # the scored CV forecasts too
    np.testing.assert_allclose(fit.cv.forecast, y[origins[:, None] + np.arange(12) - 12], rtol=1e-12)


def test_the_artifact_forecasts_what_the_cv_fit_forecasts():
    y = doubled()
    family = registry.family("seasonal_naive")
    cv = family.fit_windows(y, NAIVE, np.array([y.size]), replace(CTX, horizon=CTX.periods))
    section = family.fit_final(y, NAIVE, CTX)
    centre, variance = point_path(section.core, section.spec, section.parameters, y.size - 1, CTX.periods)
    np.testing.assert_allclose(centre, cv.centre[0], rtol=1e-12)
    np.testing.assert_allclose(variance, cv.variance[0], rtol=1e-12)


def test_a_combination_serves_the_weighted_mean_of_the_last_season_and_its_other_member():
    """Scored in CV and served from the saved artifact alike."""
    y = doubled()
    theta = registry.family("theta").candidates(replace(
        settings(), data=replace(settings().data, horizon=12)))[0]
    candidate = combination.equal_weights([NAIVE, theta], "equal top 2")
    fit = ModelEstimator(candidate, CTX).fit(series(y))
    other = ModelEstimator(theta, CTX).fit(series(y)).forecaster.predict(12, 0.9).mean
    served = fit.forecaster.predict(12, 0.9).mean
    np.testing.assert_allclose(served, 0.5 * y[-12:] + 0.5 * other, rtol=1e-9)
    last = fit.cv.origins[-1:]
    alone = cross_validate_candidate({False: y, True: y}, y, theta, last, CTX)
    np.testing.assert_allclose(fit.cv.forecast[-1], 0.5 * y[last[0] - 12:last[0]] + 0.5 * alone.forecast[0],
                               rtol=1e-9)


def test_an_artifact_written_before_the_point_was_named_serves_its_mean_as_before(tmp_path):
    fit = ModelEstimator(NAIVE, CTX).fit(series(doubled()))
    old = fit.artifact
    old.parameters = {k: v for k, v in old.parameters.items() if k != POINT}
    loaded = Forecaster.load(old.save(tmp_path / "old"))
    season = np.exp(np.asarray(old.parameters["last_season"]))
    np.testing.assert_allclose(loaded.predict(12, 0.9).mean, season * np.exp(0.5 * old.parameters["sigma2"]),
                               rtol=1e-12)


def test_a_saved_artifact_keeps_its_point(tmp_path):
    y = doubled()
    loaded = Forecaster.load(ModelEstimator(NAIVE, CTX).fit(series(y)).artifact.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.predict(12, 0.9).mean, y[-12:], rtol=1e-12)


@pytest.mark.parametrize("values", [[3.0, 4.0, 5.0], [3.0], [2.0, 8.0]])
def test_the_naive_fallback_serves_the_last_value(values):
    section = naive_section(np.array(values), 36)
    artifact = ModelArtifact(spec=section.spec, freq="MS", last_timestamp="2020-03-01", t_last=len(values) - 1,
                             parameters={**section.parameters, "error_scale": 0.1},
                             calibration_errors=np.linspace(-1, 1, 12).reshape(4, 3),
                             history={"timestamps": [], "values": []}, family="seasonal_naive", core=section.core)
    np.testing.assert_allclose(Forecaster(artifact).predict(5, 0.9).mean, values[-1], rtol=1e-12)


def test_a_panel_serves_and_backtests_the_last_season_after_a_level_shift():
    values = {**synthetic(4, length=72), "shifted": doubled(72, at=62), "tiny": np.array([3.0, 4.0, 5.0])}
    fit = fit_panel(panel_of(values), settings(), choice={"family": "seasonal_naive"})
    assert fit.choices["tiny"]["reason"].startswith("too short")
    for item, y in values.items():
        served = Forecaster(fit.artifacts[item]).predict(12, 0.9).mean
        expected = np.full(12, y[-1]) if item == "tiny" else y[-12:]
        np.testing.assert_allclose(served, expected, rtol=1e-12, err_msg=item)
    cutoffs = panel_cutoffs(panel_of(values), horizon=6, cutoffs=2, step=3)
    backtest = backtest_panel(panel_of(values), settings(), choice={"family": "seasonal_naive"}, cutoffs=cutoffs)
    shifted = backtest.items["shifted"]
    assert shifted.forecast.shape[0] == 2
    for row, cutoff in enumerate(shifted.cutoffs):
        origin = panel_of(values).series["shifted"].timestamps.index(cutoff)
        np.testing.assert_array_equal(shifted.actual[row], values["shifted"][origin:origin + 6])
        np.testing.assert_allclose(shifted.forecast[row], values["shifted"][origin - 12:origin - 6], rtol=1e-12)
