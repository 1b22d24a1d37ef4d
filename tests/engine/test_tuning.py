import json
from dataclasses import replace

import numpy as np
import pytest

from pipeline_code.engine.families.combination import build, ranked_members
from pipeline_code.engine.settings import FAMILY_NAMES, Settings, SettingsError, check_offered
from pipeline_code.engine.tuning import (
    TuningError, TuningResult, candidate_space, score_candidates, select, tune,
)


def test_search_space_is_the_full_grid():
    candidates = [c for c in candidate_space(Settings()) if c["family"] == "harmonic_arima"]
    assert len(candidates) == 80
    assert {c["fourier_k"] for c in candidates} == set(range(1, 11))
    others = {c["family"] for c in candidate_space(Settings())} - {"harmonic_arima"}
    # seasonal ARIMA offers no candidate for a 52-week season; a monthly one has every family
    assert others == set(Settings().search.families) - {"harmonic_arima", "arima"}
    monthly = replace(Settings(), data=replace(Settings().data, season_length=12))
    assert {c["family"] for c in candidate_space(monthly)} == set(Settings().search.families)


def test_monthly_season_limits_the_fourier_orders():
    settings = Settings()
    settings = replace(settings, data=replace(settings.data, season_length=12))
    assert max(c["fourier_k"] for c in candidate_space(settings) if "fourier_k" in c) == 5


@pytest.fixture(scope="module")
def gasoline_700(gasoline) -> tuple[np.ndarray, np.ndarray]:
    """The first 700 weeks and a counterfactual copy that differs at every 97th."""
    y = gasoline.values[:700]
    return y, y * np.where(np.arange(y.size) % 97 == 0, 1.01, 1.0)


@pytest.fixture(scope="module")
def window_settings(small_settings):
    """The small search on the CV window only (fits on all history cost four times as much here)."""
    return replace(small_settings, search=replace(small_settings.search, histories=("window",)))


@pytest.fixture(scope="module")
def serial(gasoline_700, window_settings):
    """The whole local search in one process (the slowest step of this module: run once)."""
    return tune(*gasoline_700, window_settings, jobs=1, progress=False)


def test_parallel_search_equals_serial_and_writes_every_candidate(serial, gasoline_700, window_settings, tmp_path):
    parallel = tune(*gasoline_700, window_settings, jobs=2, progress=False)
    assert [c["cv_mse"] for c in serial.candidates] == [c["cv_mse"] for c in parallel.candidates]
    ranked = ranked_members([c for c in serial.candidates if c["hyperparameters"]["family"] != "combination"])
    assert serial.best["hyperparameters"]["kind"] == "equal top 3"  # search.serve's default
    assert serial.best["hyperparameters"]["members"] == [c["hyperparameters"] for c in ranked[:3]]
    assert json.loads(json.dumps(serial.to_dict(), default=str))["serve"] == "equal top 3"
    serial.write(tmp_path / "tuning.json")
    written = json.loads((tmp_path / "tuning.json").read_text())
    singles = [c for c in written["candidates"] if c["hyperparameters"]["family"] != "combination"]
    assert len(singles) == len(candidate_space(window_settings))
    assert all({"hyperparameters", "cv_mse", "seconds"} <= set(c) for c in written["candidates"])
    combos = len(written["candidates"]) - len(singles)
    assert combos >= 1
    assert serial.scope() == f"{len(singles)} candidates and {combos} combinations x {serial.splits} splits"


def test_combinations_rank_each_family_and_history_apart_by_cv_mase():
    """A family fitted on all history is a member beside the same family on the window; within one
    (family, history) only the best candidate joins; the ranks are CV MASE's, not CV MSE's."""
    scores = [(1.0, 4.0), (2.0, 3.0), (3.0, 2.0), (4.0, 1.0), (np.inf, np.inf)]  # (cv_mase, cv_mse)
    families = [{"family": "theta", "history": "window"}, {"family": "theta", "history": "all"},
                {"family": "harmonic_arima", "fourier_k": 1}, {"family": "harmonic_arima", "fourier_k": 2},
                {"family": "ets", "history": "all"}]
    singles = [{"index": i, "cv_mase": mase, "cv_mse": mse, "hyperparameters": hp}
               for i, ((mase, mse), hp) in enumerate(zip(scores, families))]
    rng = np.random.default_rng(0)
    actual = 10 + rng.standard_normal((6, 3))
    forecasts = {i: actual + rng.standard_normal((6, 3)) for i in range(5)}
    combos = {c["hyperparameters"]["kind"]: c for c in build(singles, forecasts, actual, (2, 3))}
    assert combos["equal top 2"]["indices"] == [0, 1]
    assert combos["equal top 3"]["indices"] == [0, 1, 2]
    assert combos["fitted weights"]["indices"] == [0, 1, 2]
    assert sum(combos["fitted weights"]["hyperparameters"]["weights"]) == pytest.approx(1.0)


@pytest.mark.parametrize("families", [("harmonic_arima", "seasonal_naive"), ("harmonic_arima",)])
def test_fewer_members_than_the_top_serve_the_lowest_objective(gasoline, small_settings, families):
    """Two members (or one) of a narrowed search: not a blind average with seasonal naive."""
    settings = replace(small_settings, search=replace(small_settings.search, families=families))
    y = gasoline.values[:700]
    result = tune(y, y, settings, jobs=1, progress=False)
    assert result.serve == "lowest"
    assert result.best["cv_mase"] == min(c["cv_mase"] for c in result.candidates)
    assert result.best["hyperparameters"].get("members", [{}])[-1].get("family") != "seasonal_naive"


def test_serve_lowest_serves_the_lowest_objective(gasoline_700, small_settings):
    # the NumPy families only: enough members and combinations to choose among, in seconds
    settings = replace(small_settings, search=replace(small_settings.search, serve="lowest",
                                                      families=("harmonic_arima", "seasonal_naive")))
    result = tune(*gasoline_700, settings, jobs=1, progress=False)
    assert result.best["cv_mase"] == min(c["cv_mase"] for c in result.candidates)
    assert result.to_dict()["serve"] == "lowest"
    assert not any(c["hyperparameters"].get("kind") == "equal top 4" for c in result.candidates)


def test_the_lowest_is_by_the_objective_when_cv_mse_ranks_otherwise():
    """CV MSE lets the latest, largest splits of a growing series decide; the objective is CV MASE."""
    small_errors_late = {"hyperparameters": {"family": "ets"}, "cv_mse": 4.0, "cv_mase": 0.9}
    small_errors_scaled = {"hyperparameters": {"family": "theta"}, "cv_mse": 9.0, "cv_mase": 0.7}
    result = TuningResult([small_errors_late, small_errors_scaled], seconds=0.0, jobs=1, splits=30)
    assert result.best is small_errors_scaled


def test_families_scored_apart_and_merged_give_the_local_tunes_result(gasoline_700, small_settings):
    """The cloud's trials score one family each (score_candidates with family_name); merged in index
    order, select gives what the one local tune gives: every score, the combinations and the pick."""
    # the NumPy families, serving equal weights of their two members: the same paths, in seconds
    settings = replace(small_settings, search=replace(small_settings.search, serve_top=2,
                                                      families=("harmonic_arima", "seasonal_naive")))
    local = tune(*gasoline_700, settings, jobs=1, progress=False)
    singles, forecasts = [], {}
    for name in settings.search.families:
        part, part_forecasts = score_candidates(*gasoline_700, settings, family_name=name, jobs=1)
        assert {c["hyperparameters"]["family"] for c in part} == {name}
        singles += part
        forecasts.update(part_forecasts)
    singles.sort(key=lambda c: c["index"])
    assert [c["index"] for c in singles] == list(range(len(candidate_space(settings))))
    merged = select(singles, forecasts, gasoline_700[1], settings, seconds=0.0, jobs=1)
    assert [c["hyperparameters"] for c in merged.candidates] == [c["hyperparameters"] for c in local.candidates]
    assert [c["cv_mase"] for c in merged.candidates] == [c["cv_mase"] for c in local.candidates]
    assert merged.best["hyperparameters"] == local.best["hyperparameters"]
    assert merged.serve == local.serve == "equal top 2"
    lowest = replace(settings, search=replace(settings.search, serve="lowest"))
    assert (select(singles, forecasts, gasoline_700[1], lowest, seconds=0.0, jobs=1).best["hyperparameters"]
            == min(local.candidates, key=lambda c: c["cv_mase"])["hyperparameters"])
    failed = [{**c, "cv_mase": np.inf} for c in singles]
    with pytest.raises(TuningError, match="every candidate of every family failed"):
        select(failed, forecasts, gasoline_700[1], settings, seconds=0.0, jobs=1)


def test_a_search_no_family_of_which_offers_a_model_is_refused_naming_what_each_needs():
    weekly = Settings.from_dict({"search": {"families": ["thief", "arima"]}}, "test")
    with pytest.raises(SettingsError) as info:
        tune(np.ones(600), np.ones(600), weekly, jobs=1, progress=False)
    assert info.value.problems == [
        "search.families: no family offers a model for these settings: 'thief' offers no model for "
        "data.season_length 52.1786 and cv.window 417; it needs a whole season of 2 to 24 periods and a "
        "cv.window of at least 7 seasons; 'arima' offers no model for data.season_length 52.1786 and "
        "cv.window 417; it needs a season of at most 24 periods"]
    # one family that offers a model is enough: the others are left out, as arima is by default
    check_offered(Settings.from_dict({"search": {"families": ["thief", "seasonal_naive"]}}, "test"), panel=False)


@pytest.mark.parametrize("season_length, window", [(52.1786, 417), (12, 96), (4, 32)])
def test_every_familys_candidates_survive_a_trials_json_unchanged(season_length, window):
    """The Select job compares a trial's candidates, read back from JSON, with the run document's space
    (``trials.merge_trials``): a tuple or a float that JSON changed would refuse a valid trial."""
    settings = Settings.from_dict({"data": {"season_length": season_length}, "cv": {"window": window},
                                   "search": {"families": list(FAMILY_NAMES)}}, "test")
    space = candidate_space(settings)
    assert {c["family"] for c in space} >= {"harmonic_arima", "ets", "theta", "mstl", "ces"}
    assert json.loads(json.dumps(space)) == space


def test_a_candidate_whose_mase_is_undefined_is_failed_with_the_reason():
    """A series that repeats its season exactly fits, but its MASE scale is zero: the candidate is
    scored failed, saying why, and a tune of nothing else says so instead of an empty reason."""
    settings = Settings.from_dict({"data": {"season_length": 12, "horizon": 12}, "cv": {"window": 48},
                                   "search": {"families": ["seasonal_naive"]}}, "test")
    y = 100 + 10 * np.sin(2 * np.pi * np.arange(120) / 12)
    y = np.round(y, 6)
    singles, forecasts = score_candidates(y, y, settings, jobs=1, progress=False)
    assert singles[0]["failed"].startswith("CV MASE undefined: the seasonal-naive error that scales it is zero")
    with pytest.raises(TuningError, match=r"seasonal_naive: CV MASE undefined"):
        select(singles, forecasts, y, settings, seconds=0.0, jobs=1)
