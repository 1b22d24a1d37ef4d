"""Panel fit: a served artifact per series chosen by its own CV, one global choice, pooled
calibration, fallbacks with reasons, failures scored as failed, processes, the tuning ranges."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.families import registry
from pipeline_code.engine.panel_fit import (
    backtest_panel, choice_from_hyperparameters, family_candidate, fit_panel,
)
from pipeline_code.engine.settings import SettingsError
from pipeline_code.engine.panel_cv import panel_cutoffs
from tests.engine.panel_helpers import panel_of, settings, synthetic


@pytest.fixture(scope="module")
def values() -> dict[str, np.ndarray]:
    return synthetic(8, length=72)


@pytest.fixture(scope="module")
def fitted(values):
    return fit_panel(panel_of(values), settings())


def test_each_series_chooses_by_its_own_cv_and_is_served(fitted, values):
    allowed = {"seasonal_naive", "theta", "combination"}
    assert set(fitted.artifacts) == set(values)
    for item, choice in fitted.choices.items():
        assert choice["family"] in allowed
        scores = choice["cv_mase"]
        assert scores[choice["family"]] == min(scores.values())
        forecast = Forecaster(fitted.artifacts[item]).predict(6, 0.95)
        assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)
        assert fitted.artifacts[item].metadata["item_id"] == item
    assert fitted.report["families"] and sum(fitted.report["families"].values()) == len(values)
    assert set(fitted.report["per_item"]) == set(values)
    panel = fitted.cv.panel
    assert {"mase", "wape", "coverage_80", "coverage_95", "interval_score"} <= set(panel)
    assert panel["mase"] == pytest.approx(np.mean([m["mase"] for m in fitted.cv.per_item.values()]))
    assert np.isfinite(fitted.objective)


def test_intervals_pool_the_panel_with_each_series_own_scale(fitted):
    artifacts = list(fitted.artifacts.values())
    pool = artifacts[0].calibration_errors
    assert pool.shape[1] == 6 and pool.shape[0] > 8  # more than one series' cutoffs
    assert all(a.calibration_errors is pool for a in artifacts)
    scales = {round(a.parameters["error_scale"], 12) for a in artifacts}
    assert len(scales) == len(artifacts) and min(scales) > 0


def test_too_short_and_constant_series_get_the_fallback_with_a_reason(values):
    panel = panel_of({**values, "short": values["s000"][-14:], "flat": np.full(60, 7.0)})
    fit = fit_panel(panel, settings())
    assert fit.choices["short"]["family"] == "seasonal_naive"
    assert fit.choices["short"]["reason"].startswith("too short")
    assert fit.choices["flat"]["family"] == "seasonal_naive"
    assert fit.choices["flat"]["reason"].startswith("constant")
    assert set(fit.report["fallbacks"]) == {"short", "flat"}
    flat = Forecaster(fit.artifacts["flat"]).predict(3, 0.95)
    np.testing.assert_allclose(flat.mean, 7.0)
    assert np.all(np.isfinite(Forecaster(fit.artifacts["short"]).predict(3, 0.8).upper))
    # a series shorter than a season: the last value repeated
    tiny = fit_panel(panel_of({**values, "tiny": np.array([3.0, 4.0, 5.0])}), settings())
    assert tiny.artifacts["tiny"].spec == {"period": 1}
    assert Forecaster(tiny.artifacts["tiny"]).predict(2, 0.95).mean[0] == pytest.approx(5.0, rel=0.05)


def test_a_fallback_item_too_short_for_its_own_spread_gets_the_panels_interval_scale(values):
    """One observation (no spread at all: a zero-width interval) and 13 monthly ones (one seasonal
    difference): both take the median scale of the items served by their own choice, and the report
    says which model serves them and why."""
    fit = fit_panel(panel_of({**values, "one": values["s000"][-1:], "season": values["s001"][-13:]}), settings())
    chosen = [a.parameters["error_scale"] for item, a in fit.artifacts.items() if item in values
              and not fit.choices[item].get("reason")]
    for item in ("one", "season"):
        artifact = fit.artifacts[item]
        assert artifact.parameters["error_scale"] == pytest.approx(np.median(chosen))
        assert "the panel's median" in fit.choices[item]["interval"]
        assert artifact.metadata["interval"] == fit.choices[item]["interval"]
        forecast = Forecaster(artifact).predict(6, 0.9)
        assert np.all(np.log(forecast.upper / forecast.lower) > 2 * np.median(chosen))
    one = fit.report["per_item"]["one"]["reason"]
    assert one.startswith("too short: 1 observation, 0 before the first cutoff")
    assert one.endswith("seasonal naive needs more than one season (12) of data; naive serves (the last value"
                        " repeated)")
    assert fit.artifacts["one"].spec == {"period": 1} and fit.artifacts["season"].spec == {"period": 12}
    assert fit.report["fallbacks"]["season"].startswith("too short: 13 observations")
    assert not any("interval" in fit.choices[item] for item in values)


def test_a_family_failing_on_a_series_is_scored_failed_for_it(values, monkeypatch):
    theta = registry.FAMILIES["theta"]
    marker = values["s001"][0]

    class Flaky:
        name, batched = theta.name, theta.batched
        candidates = theta.candidates
        fit_final = theta.fit_final

        def fit_windows(self, y, candidate, origins, ctx):
            if y[0] == marker:
                raise RuntimeError("cannot fit this one")
            return theta.fit_windows(y, candidate, origins, ctx)

    monkeypatch.setitem(registry.FAMILIES, "theta", Flaky())
    fit = fit_panel(panel_of(values), settings())
    assert fit.choices["s001"]["family"] == "seasonal_naive"
    assert fit.choices["s001"]["cv_mase"]["theta"] == np.inf
    assert "cannot fit this one" in fit.report["failures"]["s001"]["theta"]
    only = fit_panel(panel_of(values), settings(), choice={"family": "theta"})
    assert only.choices["s001"]["family"] == "seasonal_naive"
    assert "every candidate failed" in only.choices["s001"]["reason"]


def test_one_global_choice_for_every_series(values):
    fit = fit_panel(panel_of(values), settings(), choice={"family": "theta", "history": "all"})
    assert {c["family"] for c in fit.choices.values()} == {"theta"}
    assert {a.metadata["hyperparameters"]["history"] for a in fit.artifacts.values()} == {"all"}
    chosen = fit_panel(panel_of(values), settings(selection="global"))
    assert len({c["family"] for c in chosen.choices.values()}) == 1
    with pytest.raises(ValueError, match="family: 'ets' is not one of"):
        fit_panel(panel_of(values), settings(), choice={"family": "ets"})
    with pytest.raises(ValueError, match="unknown key"):
        fit_panel(panel_of(values), settings(), choice={"families": "theta"})
    windowless = settings().merged({"search": {"histories": ["all"]}})
    with pytest.raises(ValueError, match="history: 'window' is not one of"):
        fit_panel(panel_of(values), windowless, choice={"history": "window"})


def test_one_per_series_fit_reports_what_each_global_choice_would_score(values, fitted):
    """The objectives read off the per-series fit's forecasts are those of a fit with that choice."""
    objectives = fitted.report["objectives"]
    assert set(objectives) == {"per_series", "seasonal_naive", "theta", "combination"}
    assert objectives["per_series"] == fitted.objective
    for family in ("theta", "combination"):
        alone = fit_panel(panel_of(values), settings(), choice={"family": family})
        assert alone.report["objectives"][family] == pytest.approx(objectives[family], rel=1e-12)
        assert alone.objective == pytest.approx(objectives[family], rel=1e-12)
    assert len(set(objectives.values())) == len(objectives)


def test_processes_give_the_same_fit(values, fitted):
    parallel = fit_panel(panel_of(values), settings(), jobs=2)
    assert parallel.choices == fitted.choices
    for item, artifact in fitted.artifacts.items():
        np.testing.assert_array_equal(parallel.artifacts[item].calibration_errors, artifact.calibration_errors)
        assert parallel.artifacts[item].parameters["error_scale"] == artifact.parameters["error_scale"]


def test_counterfactual_series_are_what_the_models_train_on(values):
    doubled = {item: 2 * v for item, v in values.items()}
    fit = fit_panel(panel_of(values), settings(), choice={"family": "seasonal_naive"}, counterfactual=doubled)
    item = next(iter(values))
    np.testing.assert_allclose(Forecaster(fit.artifacts[item]).predict(12, 0.95).mean[:12] / values[item][-12:],
                               2.0, rtol=1e-9)


def test_backtest_coverage_over_a_panel():
    values = synthetic(40, length=84, seed=3)
    panel = panel_of(values)
    cutoffs = panel_cutoffs(panel, horizon=6, cutoffs=4, step=3)
    got = backtest_panel(panel, settings(), cutoffs=cutoffs, jobs=2).panel
    assert got["items"] == 40 and got["points"] == 40 * 4 * 6
    assert 0.85 <= got["coverage_95"] <= 0.995
    assert got["coverage_80"] < got["coverage_95"]


def test_the_global_choices_and_the_tuning_jobs_ranges():
    three = settings(families=("seasonal_naive", "ets", "theta"))
    assert three.panel_families() == ["per_series", "seasonal_naive", "ets", "theta", "combination", "ets+theta"]
    assert settings(families=("seasonal_naive", "ets", "theta", "global_ar")).panel_families()[-3:] == [
        "ets+theta", "ets+global_ar", "theta+global_ar"]
    # no pair of the fallback; no pair that is the whole combination
    assert settings(families=("ets", "theta")).panel_families() == ["per_series", "ets", "theta", "combination"]
    # the tuning job: a Grid over the history and the scale; each trial scores every family choice
    ranges = three.panel_parameter_ranges()
    assert set(ranges) == {"CategoricalParameterRanges", "IntegerParameterRanges", "ContinuousParameterRanges"}
    assert ranges["CategoricalParameterRanges"] == [{"Name": "history", "Values": ["window", "all"]},
                                                    {"Name": "scale", "Values": ["log", "raw"]}]
    assert three.tuning_grid(panel=True) == 4 and three.tuning_grid(panel=False) == len(three.search.families)
    many = settings(families=("seasonal_naive", "ets", "theta", "mstl", "arima_fourier", "tbats", "arima",
                              "harmonic_arima", "global_ar"))
    assert len(many.panel_families()) > 30  # no categorical holds the families any more: no limit of 30
    assert choice_from_hyperparameters({"family": "ets", "history": "all", "scale": "raw", "other": "1"}) == \
        {"family": "ets", "history": "all", "scale": "raw"}



def test_the_grid_searches_only_what_the_panels_families_vary_along():
    """Seasonal naive and harmonic regression (on its default window) fit neither history nor scale: one
    trial, not four;
    the global AR varies the history alone; the fallback counts as a family of the panel."""
    assert settings(families=("seasonal_naive", "harmonic_arima")).panel_parameter_ranges()[
        "CategoricalParameterRanges"] == [{"Name": "history", "Values": ["window"]}, {"Name": "scale", "Values": ["log"]}]
    assert settings(families=("seasonal_naive", "harmonic_arima")).tuning_grid(panel=True) == 1
    harmonic_all = settings(families=("seasonal_naive", "harmonic_arima")).merged(
        {"search": {"window_only": []}})  # its search on all history too: two trials
    assert (harmonic_all.panel_histories(), harmonic_all.panel_scales()) == (["window", "all"], ["log"])
    assert family_candidate("harmonic_arima", harmonic_all, "all", "log")["history"] == "all"
    global_ar = settings(families=("seasonal_naive", "global_ar"))
    assert (global_ar.panel_histories(), global_ar.panel_scales()) == (["window", "all"], ["log"])
    arima = settings(families=("seasonal_naive", "arima"))
    assert (arima.panel_histories(), arima.panel_scales()) == (["window"], ["log", "raw"])
    with_fallback = replace(arima, series=replace(arima.series, families=("harmonic_arima",), fallback="theta"))
    assert with_fallback.tuning_grid(panel=True) == 4


def test_a_familys_panel_candidate_keeps_the_scale_where_it_has_no_such_history():
    """ARIMA fits the window alone: asked for all history on the raw scale, it fits the window, raw."""
    monthly = settings(families=("seasonal_naive", "arima"))
    assert {k: family_candidate("arima", monthly, "all", "raw")[k] for k in ("history", "scale")} == \
        {"history": "window", "scale": "raw"}
    assert family_candidate("ets", monthly, "all", "raw")["history"] == "all"

def test_the_ets_model_space_of_a_panel_is_a_setting():
    assert family_candidate("ets", settings(), "window", "log")["model"] == "ZZZ"
    assert family_candidate("ets", settings(ets_model="AZZ"), "all", "raw") == \
        {"family": "ets", "use_counterfactual_data": 1, "history": "all", "scale": "raw", "model": "AZZ"}
    assert "model" not in family_candidate("theta", settings(ets_model="AZZ"), "window", "log")
    with pytest.raises(SettingsError, match="series.ets_model"):
        settings(ets_model="AXZ")


def test_an_item_whose_final_model_cannot_forecast_gets_the_fallback(values, monkeypatch):
    """A final fit whose forecast overflows within the periods served is refused at fit time (the
    fallback serves it, with the reason), so serving never meets it (a 500 when the item is asked for)."""
    theta = registry.FAMILIES["theta"]
    marker = values["s002"][0]

    fit_final = theta.fit_final

    def exploding(y, candidate, ctx):
        section = fit_final(y, candidate, ctx)
        if y[0] == marker:
            centre = np.array(section.parameters["centre"], float)
            centre[-1] = 800.0  # exp overflows at the last period served
            section = replace(section, parameters={**section.parameters, "centre": centre})
        return section

    monkeypatch.setattr(theta, "fit_final", exploding)
    fit = fit_panel(panel_of(values), settings(), choice={"family": "theta"})
    served = fit.artifacts["s002"]
    assert served.family == "seasonal_naive"
    assert np.isfinite(Forecaster(served).predict(settings().serve.max_periods, 0.95).upper).all()
    assert "not finite at step" in str(fit.report)
    assert fit.artifacts["s001"].family == "theta"
