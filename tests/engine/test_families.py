"""Model families: the CV fit and the artifact section agree, the NumPy core forecasts every section,
combinations combine, and a family that fails is scored failed, not a crash."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.forecaster import Forecaster, point_path
from pipeline_code.engine.core.paths import log_path
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.estimator import HarmonicArimaForecaster, ModelEstimator
from pipeline_code.engine.evaluation import gate
from pipeline_code.engine.families import combination, registry
from pipeline_code.engine.families.base import Context, WindowForecasts
from pipeline_code.engine.families.sf import Z95, model_code, to_log_scale
from pipeline_code.engine.settings import FAMILY_CHOICES, Settings, family_needs
from pipeline_code.engine.tuning import TuningError, tune

from ..conftest import weekly_series

MONTHLY = Context(season_length=12, window=72, horizon=12, periods=24)


def monthly(n: int = 144, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(0, 0.03, n)
    return np.exp(5 + 0.004 * t + 0.2 * np.sin(2 * np.pi * t / 12) + noise)


def candidates_of(name: str, settings: Settings) -> list[dict]:
    return registry.family(name).candidates(settings)


MONTHLY_SETTINGS = replace(Settings(), data=replace(Settings().data, season_length=12, horizon=12),
                           cv=replace(Settings().cv, window=72))
FAST = ["harmonic_arima", "seasonal_naive", "theta", "mstl", "ets", "arima_fourier", "arima", "ces", "thief"]


# Temporal hierarchies need a window of 7 seasons (settings.THIEF_MIN_SEASONS).
LONG_WINDOW = (replace(MONTHLY, window=84), replace(MONTHLY_SETTINGS, cv=replace(MONTHLY_SETTINGS.cv, window=84)))


@pytest.mark.parametrize("name", FAST)
def test_the_artifact_section_forecasts_what_the_cv_fit_forecasts(name):
    """Fit the last window both ways: the core's forecast from the section equals the CV forecast."""
    y = monthly()
    ctx, settings = LONG_WINDOW if name == "thief" else (MONTHLY, MONTHLY_SETTINGS)
    candidate = candidates_of(name, settings)[-1]
    family = registry.family(name)
    cv = family.fit_windows(y, candidate, np.array([y.size]), replace(ctx, horizon=ctx.periods)
                            ) if name != "seasonal_naive" else None
    section = family.fit_final(y, candidate, ctx)
    z, v = log_path(section.core, section.spec, section.parameters, y.size - 1, ctx.periods)
    assert z.shape == v.shape == (MONTHLY.periods,) and np.all(np.isfinite(z)) and np.all(v >= 0)
    if cv is not None:
        np.testing.assert_allclose(z, cv.centre[0], rtol=1e-6)
        np.testing.assert_allclose(v, cv.variance[0], rtol=1e-6)
    else:
        np.testing.assert_allclose(z, np.log(np.tile(y[-12:], 2)))
    assert np.all(np.abs(np.exp(z[:12]) / y[-12:] - 1) < 0.25)  # a sane seasonal forecast


def test_seasonal_arima_is_offered_for_short_seasons_only():
    """A 52-week seasonal ARIMA is slow and approximate: weekly data has no ``arima`` candidate."""
    assert candidates_of("arima", MONTHLY_SETTINGS) == [
        {"family": "arima", "use_counterfactual_data": 1, "history": "window", "scale": s} for s in ("log", "raw")]
    assert candidates_of("arima", Settings()) == []


def test_windows_are_fitted_only_on_data_before_their_origin():
    y = monthly()
    origins = np.array([90, 110])
    for name in ("seasonal_naive", "theta"):
        candidate = candidates_of(name, MONTHLY_SETTINGS)[0]
        before = registry.family(name).fit_windows(y, candidate, origins, MONTHLY)
        poked = y.copy()
        poked[110:] *= 3.0
        after = registry.family(name).fit_windows(poked, candidate, origins, MONTHLY)
        np.testing.assert_allclose(before.centre, after.centre)


def test_the_harmonic_family_fits_all_history_when_asked():
    """Out of ``search.window_only``, its whole search is on all history too: its CV fit uses the data
    before the window (the window's does not), and its section forecasts what its last CV fit does."""
    both = replace(MONTHLY_SETTINGS, search=replace(MONTHLY_SETTINGS.search, window_only=()))
    window_only, everything = candidates_of("harmonic_arima", MONTHLY_SETTINGS), candidates_of("harmonic_arima", both)
    assert {c["history"] for c in window_only} == {"window"}
    assert everything == window_only + [{**c, "history": "all"} for c in window_only]
    family, y, origins = registry.family("harmonic_arima"), monthly(), np.array([100, 120])
    poked = y.copy()
    poked[:origins[0] - MONTHLY.window] *= 1.5  # before every window
    for candidate, moves in ((window_only[3], False), ({**window_only[3], "history": "all"}, True)):
        before, after = (family.fit_windows(v, candidate, origins, MONTHLY).centre for v in (y, poked))
        assert np.allclose(before, after) != moves
    candidate = everything[-1]
    cv = family.fit_windows(y, candidate, np.array([y.size]), replace(MONTHLY, horizon=MONTHLY.periods))
    section = family.fit_final(y, candidate, MONTHLY)
    np.testing.assert_allclose(log_path(section.core, section.spec, section.parameters, y.size - 1,
                                        MONTHLY.periods)[0], cv.centre[0], rtol=1e-9)


def test_a_stored_path_refuses_more_periods_than_it_holds():
    with pytest.raises(ValueError, match="stores a forecast of 3 periods; 4 were asked"):
        log_path("path", {}, {"centre": [1.0, 1.0, 1.0], "variance": [0.1, 0.1, 0.1]}, 10, 4)


def test_a_combination_forecasts_the_weighted_mean_of_its_members():
    y = monthly()
    members = [c for name in ("seasonal_naive", "theta") for c in candidates_of(name, MONTHLY_SETTINGS)[:1]]
    weights = [0.3, 0.7]
    origins = np.array([y.size])
    ctx = replace(MONTHLY, horizon=MONTHLY.periods)
    fits = [registry.family(m["family"]).fit_windows(y, m, origins, ctx) for m in members]
    combined = combination.combine(fits, weights)
    np.testing.assert_allclose(combined.mean()[0], 0.3 * fits[0].mean()[0] + 0.7 * fits[1].mean()[0])
    sections = [(m, w, registry.family(m["family"]).fit_final(y, m, MONTHLY), m["family"])
                for m, w in zip(members, weights)]
    section = combination.section(sections)
    z, v = point_path(section.core, section.spec, section.parameters, y.size - 1, MONTHLY.periods)
    np.testing.assert_allclose(np.exp(z + v / 2), combined.mean()[0], rtol=1e-9)


def test_fitted_weights_favour_the_better_member_and_are_shrunk():
    actual = np.ones((20, 4)) * 10
    good = actual + np.random.default_rng(0).normal(0, 0.1, actual.shape)
    bad = actual + np.random.default_rng(1).normal(0, 3.0, actual.shape)
    w = combination.fitted_weights(np.stack([good, bad]), actual)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] > w[1] >= combination.SHRINKAGE / 2


class Boom:
    """A family that fails on windows ending after 100, as ETS can on a short window."""

    name = "boom"
    batched = True

    def candidates(self, settings):
        return [{"family": "boom", "use_counterfactual_data": 1}]

    def fit_windows(self, y, candidate, origins, ctx):
        if origins.max() > 100:
            raise np.linalg.LinAlgError("singular matrix")
        return WindowForecasts.from_rows(origins, np.zeros((origins.size, ctx.horizon)),
                                         np.zeros((origins.size, ctx.horizon)))

    def fit_final(self, y, candidate, ctx):
        raise AssertionError("never chosen")


def test_a_family_that_fails_is_scored_failed_and_reported(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "boom", Boom())
    settings = replace(MONTHLY_SETTINGS, search=replace(MONTHLY_SETTINGS.search,
                                                        families=("seasonal_naive", "boom")))
    y = monthly()
    result = tune(y, y, settings, jobs=1, progress=False)
    boom = next(c for c in result.candidates if c["hyperparameters"]["family"] == "boom")
    assert boom["cv_mse"] == np.inf and "singular matrix" in boom["failed"]
    assert result.failures() == {"boom": "LinAlgError: singular matrix"}
    assert result.best["hyperparameters"]["family"] == "seasonal_naive"


def test_when_every_family_fails_tuning_says_so(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "boom", Boom())
    settings = replace(MONTHLY_SETTINGS, search=replace(MONTHLY_SETTINGS.search, families=("boom",)))
    y = monthly()
    with pytest.raises(TuningError, match="every candidate of every family failed.*boom: LinAlgError"):
        tune(y, y, settings, jobs=1, progress=False)


def test_non_finite_forecasts_mark_their_windows_failed():
    centre = np.array([[1.0, np.nan], [1.0, 2.0]])
    out = WindowForecasts.from_rows(np.array([5, 6]), centre, np.zeros((2, 2)))
    assert out.failed.tolist() == [True, False] and out.reason == "non-finite forecast"


def test_tuning_searches_every_family_and_combinations():
    y = monthly(150)
    settings = replace(MONTHLY_SETTINGS, search=replace(
        MONTHLY_SETTINGS.search, fourier_k=(2,), use_counterfactual_data=(1,), selection_splits=10,
        families=("harmonic_arima", "seasonal_naive", "theta")))
    result = tune(y, y, settings, jobs=1, progress=False)
    families = {c["hyperparameters"]["family"] for c in result.candidates}
    assert families == {"harmonic_arima", "seasonal_naive", "theta", "combination"}
    assert {c["splits"] for c in result.candidates} == {10}
    kinds = {c["hyperparameters"]["kind"] for c in result.candidates if c["hyperparameters"]["family"] == "combination"}
    assert kinds == {"equal top 2", "equal top 3", "fitted weights"}
    assert set(result.family_seconds) == {"harmonic_arima", "seasonal_naive", "theta"}


def test_the_tuning_jobs_one_range_is_the_family():
    """A trial scores a whole family (pipeline/trials.py): a Grid over the families that offer a model
    covers the space; seasonal ARIMA offers none for a 52-week season, so weekly data gets no trial of it."""
    weekly = Settings()
    assert weekly.parameter_ranges() == {
        "CategoricalParameterRanges": [{"Name": "family", "Values": [
            f for f in weekly.search.families if f != "arima"]}],
        "IntegerParameterRanges": [], "ContinuousParameterRanges": []}
    assert weekly.tuning_grid(panel=False) == len(weekly.search.families) - 1
    assert MONTHLY_SETTINGS.parameter_ranges()["CategoricalParameterRanges"][0]["Values"] == list(
        MONTHLY_SETTINGS.search.families)


@pytest.mark.parametrize("name", registry.FAMILIES)
@pytest.mark.parametrize("season, window", [(52.1786, 417), (12, 96), (12, 72), (4, 32), (7, 365), (2, 40), (1.5, 30)])
def test_what_a_family_needs_is_what_it_offers(name, season, window):
    """``settings.family_needs`` (which the starter Lambda asks, standard library only) is empty exactly
    when the family offers a candidate."""
    settings = replace(Settings(), data=replace(Settings().data, season_length=season),
                       cv=replace(Settings().cv, window=window))
    assert (family_needs(name, settings) == "") == bool(candidates_of(name, settings))


def test_a_raw_scale_forecast_becomes_the_log_normal_with_its_mean_and_variance():
    mean, variance = np.array([[100.0, 50.0, 0.0, -3.0]]), np.array([[400.0, 2500.0, 1.0, 1.0]])
    z, v = to_log_scale(mean, variance)
    np.testing.assert_allclose(np.exp(z + v / 2)[0, :2], mean[0, :2])
    np.testing.assert_allclose(((np.exp(v) - 1) * np.exp(2 * z + v))[0, :2], variance[0, :2])
    assert np.isnan(z[0, 2:]).all() and np.isnan(v[0, 2:]).all()  # no log-normal has that mean


def test_the_scale_is_a_tuned_choice_of_the_statsforecast_families():
    """Both scales are candidates; a trend that is additive on the data's scale is forecast better
    on it, and the raw fit's mean is the library's own forecast of the data."""
    t = np.arange(144.0)
    y = 200 + 1.5 * t + 20 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 2, t.size)
    theta = registry.family("theta")
    by_scale = {c["scale"]: c for c in candidates_of("theta", MONTHLY_SETTINGS) if c["history"] == "window"}
    assert set(by_scale) == {"log", "raw"}
    origins = np.arange(96, 133, 4)
    actual = np.stack([y[o:o + 12] for o in origins])
    errors = {s: np.abs(theta.fit_windows(y, c, origins, MONTHLY).mean() - actual).mean() for s, c in by_scale.items()}
    assert errors["raw"] < errors["log"]
    only_log = replace(MONTHLY_SETTINGS, search=replace(MONTHLY_SETTINGS.search, scales=("log",)))
    assert {c.get("scale") for c in candidates_of("ets", only_log)} == {"log"}



@pytest.mark.parametrize("name", registry.FAMILIES)
def test_each_family_varies_along_the_global_choices_it_declares(name):
    """``settings.FAMILY_CHOICES`` (what a panel's tuning searches) says what the family's candidates
    may vary along, on a monthly series of ten years' window with every history and both scales searched;
    ``Settings.family_choices`` says what they vary along under the defaults."""
    ten_years = replace(MONTHLY_SETTINGS, cv=replace(MONTHLY_SETTINGS.cv, window=120))
    everything = replace(ten_years, search=replace(ten_years.search, window_only=()))
    for settings, declared in ((everything, FAMILY_CHOICES[name]), (ten_years, ten_years.family_choices(name))):
        varying = {key for key in ("history", "scale") if len({c.get(key) for c in candidates_of(name, settings)}) > 1}
        assert varying == set(declared)

def test_ets_on_the_log_scale_has_additive_errors():
    """An error left to the AICc is additive on logs; the raw scale and an explicit error keep theirs.
    Yardstick: statsforecast's own AutoETS with the additive-error code, on the window's logs."""
    assert model_code({"scale": "log"}) == "AZZ" and model_code({}) == "AZZ"
    assert model_code({"scale": "raw", "model": "ZZZ"}) == "ZZZ"
    assert model_code({"scale": "log", "model": "MZZ"}) == "MZZ"
    assert model_code({"scale": "log", "model": "ZAN"}) == "AAN"
    from statsforecast.models import AutoETS

    t = np.arange(120.0)  # logs whose noise grows with their level: the AICc picks ETS(M,A,M) on them
    noise = 1 + np.random.default_rng(0).normal(0, 0.08, 120)
    y = np.exp((1 + 0.04 * t) * (1 + 0.1 * np.sin(2 * np.pi * t / 12)) * noise)
    candidate = next(c for c in candidates_of("ets", MONTHLY_SETTINGS)
                     if c["scale"] == "log" and c["history"] == "all")
    out = registry.family("ets").fit_windows(y, candidate, np.array([108]), MONTHLY)
    expected = AutoETS(season_length=12, model="AZZ").forecast(y=np.log(y[:108]), h=12)["mean"]
    np.testing.assert_allclose(out.centre[0], expected, rtol=1e-9)
    unrestricted = AutoETS(season_length=12, model="ZZZ").forecast(y=np.log(y[:108]), h=12)["mean"]
    assert not np.allclose(unrestricted, expected, rtol=1e-6)  # the rule changes this fit


def test_ces_forecasts_what_statsforecasts_autoces_forecasts_on_the_window():
    """Yardstick: statsforecast's AutoCES with the season length, on the window's logs and on the data."""
    from statsforecast.models import AutoCES

    y = monthly(150, seed=3)
    for scale in ("log", "raw"):
        candidate = next(c for c in candidates_of("ces", MONTHLY_SETTINGS)
                         if c["scale"] == scale and c["history"] == "window")
        out = registry.family("ces").fit_windows(y, candidate, np.array([120]), MONTHLY)
        x = y[120 - MONTHLY.window:120]
        expected = AutoCES(season_length=12).forecast(y=np.log(x) if scale == "log" else x, h=12, level=[95])
        centre = expected["mean"] if scale == "log" else to_log_scale(
            expected["mean"], ((expected["hi-95"] - expected["lo-95"]) / (2 * Z95)) ** 2)[0]
        np.testing.assert_allclose(out.centre[0], centre, rtol=1e-6)


def test_a_raw_scale_forecast_that_is_not_positive_fails_its_window_only():
    y = np.concatenate([np.linspace(100, 2, 80), np.linspace(2, 100, 80)])  # down to the floor, then up
    candidate = next(c for c in candidates_of("theta", MONTHLY_SETTINGS) if c["scale"] == "raw")
    out = registry.family("theta").fit_windows(y, candidate, np.array([78, 160]), MONTHLY)
    assert out.failed.tolist() == [True, False] and out.reason == "non-finite forecast"


@pytest.mark.parametrize("name", ["seasonal_naive", "theta"])
def test_any_family_fits_to_an_artifact_that_round_trips(name, tmp_path):
    y = monthly(200)
    series = weekly_series(y)
    candidate = candidates_of(name, MONTHLY_SETTINGS)[0]
    fitted = ModelEstimator(candidate, MONTHLY, splits=30).fit(series)
    folder = fitted.artifact.save(tmp_path / "model")
    loaded = Forecaster.load(folder)
    assert loaded.artifact.family == name and loaded.hyperparameters == candidate
    a, b = fitted.forecaster.predict(24, 0.9), loaded.predict(24, 0.9)
    np.testing.assert_allclose(a.mean, b.mean)
    assert np.all(a.lower < a.mean) and np.all(a.mean < a.upper)


def test_a_format_1_artifact_still_loads(gasoline, tmp_path):
    fitted = HarmonicArimaForecaster(ModelSpec(fourier_k=2), window=200, horizon=13, step=8).fit(gasoline)
    folder = fitted.artifact.save(tmp_path / "model")
    document = json.loads((folder / "model.json").read_text())
    document.update({"format": "forecast-mlops.harmonic-arima", "format_version": 1})
    del document["family"], document["core"]
    (folder / "model.json").write_text(json.dumps(document))
    loaded = ModelArtifact.load(folder)
    assert (loaded.family, loaded.core) == ("harmonic_arima", "harmonic_arima")
    np.testing.assert_allclose(Forecaster(loaded).predict(13, 0.8).mean, fitted.forecaster.predict(13, 0.8).mean)


def test_the_first_run_serves_seasonal_naive_when_it_is_better():
    decision = gate({"mase": 1.2}, None, {"mase": 1.0}, min_improvement=0.01, same_spec=False)
    assert decision["passed"] and decision["serve"] == "seasonal_naive"
    decision = gate({"mase": 0.9}, None, {"mase": 1.0}, min_improvement=0.01, same_spec=False)
    assert decision["passed"] and decision["serve"] == "challenger"
    decision = gate({"mase": 1.2}, {"mase": 1.3}, {"mase": 1.0}, min_improvement=0.01, same_spec=False)
    assert not decision["passed"] and decision["serve"] is None


def test_the_tuning_plot_shows_families_side_by_side_and_combination_weights(tmp_path, monkeypatch):
    from pipeline_code.engine.plots import plot_tuning

    monkeypatch.setitem(registry.FAMILIES, "boom", Boom())
    y = monthly(150)
    settings = replace(MONTHLY_SETTINGS, search=replace(
        MONTHLY_SETTINGS.search, fourier_k=(2, 4), selection_splits=8,
        families=("harmonic_arima", "seasonal_naive", "theta", "boom")))
    result = tune(y, y, settings, jobs=1, progress=False)
    path = plot_tuning(tmp_path / "tuning.png", result.candidates)
    assert path.stat().st_size > 10_000
