"""The run document on the local path: layers, inference from the data, bad documents refused before
anything starts, the one minimum-length rule, and settings reaching every job (no drift)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.cli.main import main
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.settings import SETTINGS_FILE, Settings, SettingsError
from pipeline_code.pipeline.stages import run_evaluation, run_processing, run_training
from tests.conftest import BUNDLED
from tests.run_documents import BAD_SETTINGS


def monthly_csv(path: Path, months: int, start: date = date(1995, 1, 1)) -> Path:
    rng = np.random.default_rng(3)
    rows = ["timestamp,value"]
    for i in range(months):
        day = date(start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1, 1)
        level = 100 * (1.003 ** i) * (1 + 0.2 * np.sin(2 * np.pi * i / 12)) * np.exp(rng.normal(0, 0.02))
        rows.append(f"{day},{level:.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_a_bad_settings_file_is_refused_before_anything_starts(tmp_path, capsys, case):
    body, expected = BAD_SETTINGS[case]
    settings = tmp_path / "run.settings.json"
    settings.write_text(body)
    workdir = tmp_path / "work"
    code = main(["pipeline", "run", "--data", str(BUNDLED), "--workdir", str(workdir), "--settings", str(settings),
                 "--no-serve", "--quiet"])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not workdir.exists()  # no run, no registry, nothing served


def test_a_settings_file_beside_the_data_is_a_layer_and_flags_override_it(tmp_path):
    from pipeline_code.pipeline.settings_args import add_settings_arguments, settings_for_data
    import argparse

    data = shutil.copy(BUNDLED, tmp_path / "gas.csv")
    (tmp_path / "gas.settings.json").write_text(json.dumps({"cv": {"window": 300}, "gate": {"eval_origins": 12}}))
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    args = parser.parse_args(["--eval-origins", "14"])
    args.data = Path(data)
    resolved = settings_for_data(args)
    assert (resolved.settings.cv.window, resolved.settings.gate.eval_origins) == (300, 14)
    assert resolved.derived["data.freq"] == "W-FRI" and "cv.window" not in resolved.derived


@pytest.mark.parametrize("step", [1, 26])
def test_the_minimum_length_message_adds_up(step):
    settings = Settings().merged({"cv": {"step": step}})
    total, window, horizon, origins, scaling = map(int, re.findall(
        r"least (\d+) observations: CV window (\d+) \+ 2 x horizon (\d+) \+ (\d+) evaluation origins \+ (\d+) rows",
        settings.min_observations_rule())[0])
    assert total == window + 2 * horizon + origins + scaling == settings.min_observations()


def test_a_refused_range_names_the_layer_that_set_the_key():
    """Type errors name their file as it is read; range rules run on the merged document, so each
    refused key says which layer set it (or that it was derived from the data)."""
    from pipeline_code.engine.settings import resolve

    layers = [("local defaults", {"gate": {"eval_origins": 12}}), ("gas.settings.json", {"data": {"horizon": 500}}),
              ("flags", {"gate": {"min_improvement": 1.5}})]
    with pytest.raises(SettingsError) as info:
        resolve(layers)
    assert "data.horizon: 500 exceeds serve.max_periods 104 (data.horizon from gas.settings.json)" in str(info.value)
    assert "gate.min_improvement: must be in [0, 1), got 1.5 (gate.min_improvement from flags)" in str(info.value)


def test_a_monthly_series_needs_no_flags(tmp_path):
    """Frequency, season, horizon, window and origins come from the data when no layer sets them."""
    from pipeline_code.engine.profile import profile_csv
    from pipeline_code.engine.settings import check_length, resolve

    data = monthly_csv(tmp_path / "m.csv", 204)
    profile = profile_csv(data.read_bytes())
    settings = resolve([], timestamps=profile.timestamps, observations=profile.observations).settings
    assert (settings.data.freq, settings.data.season_length, settings.data.horizon) == ("MS", 12.0, 12)
    assert settings.min_observations() <= 204 and settings.cv.window == 96
    profile = profile_csv(monthly_csv(tmp_path / "short.csv", 60).read_bytes())
    short = resolve([], timestamps=profile.timestamps, observations=profile.observations).settings
    assert short.cv.window == 36  # never below max(3 seasons, 24)
    with pytest.raises(ValueError, match=r"60 observations; it needs at least 81 observations: CV window 36"):
        check_length(short, profile.observations)


SMALL = Settings.from_dict({"data": {"horizon": 8}, "cv": {"window": 100}, "gate": {"eval_origins": 6}})
SPEC = {"use_counterfactual_data": 0, "detrend": 0, "deseasonalize": 0, "fourier_k": 3}


def _stages(tmp_path: Path, rows: int, settings: Settings, evaluate_with: Settings | None = None) -> dict:
    source = tmp_path / "raw" / "data.csv"
    source.parent.mkdir(parents=True)
    lines = BUNDLED.read_text().splitlines()
    source.write_text("\n".join([lines[0], *lines[-rows:]]) + "\n")
    run_processing(source.parent, tmp_path / "processed", settings)
    run_training(tmp_path / "processed" / "train", tmp_path / "processed" / "test", SPEC, tmp_path / "model", settings)
    return run_evaluation(tmp_path / "processed" / "train", tmp_path / "processed" / "test", tmp_path / "model",
                          None, tmp_path / "evaluation", evaluate_with or settings)


def test_the_minimum_length_is_exactly_what_evaluation_needs(tmp_path):
    """One rule: at the minimum every stage runs; one row fewer is refused up front, naming the rule."""
    minimum = SMALL.min_observations()
    assert minimum == 100 + 2 * 8 + 6 + 13
    evaluation = _stages(tmp_path / "ok", minimum, SMALL)
    assert evaluation["backtest"]["origins"] == 6
    from pipeline_code.engine.dataset import DataValidationError

    with pytest.raises(DataValidationError, match=rf"{minimum - 1} observations; at least {minimum} are needed; "
                                                  r"the run settings need at least .* CV window 100"):
        _stages(tmp_path / "short", minimum - 1, SMALL)
    # The rule is tight: one row fewer than it asks for, and the evaluation cannot calibrate its first origin.
    fewer = replace(SMALL, gate=replace(SMALL.gate, eval_origins=5))
    assert fewer.min_observations() == minimum - 1
    with pytest.raises(ValueError, match="too few earlier errors to calibrate"):
        _stages(tmp_path / "tight", minimum - 1, fewer, evaluate_with=SMALL)
    # With a CV step of 2 the error scale needs twice the periods.
    stepped = replace(SMALL, cv=replace(SMALL.cv, step=2))
    assert stepped.min_observations() == minimum + 14
    _stages(tmp_path / "stepped", stepped.min_observations(), stepped)


def test_every_job_reads_the_frequency_from_the_document(tmp_path):
    """A monthly run's model forecasts monthly dates (the frequency reaches training)."""
    data = monthly_csv(tmp_path / "raw" / "m.csv", 204)
    settings = Settings.from_dict({"data": {"freq": "MS", "season_length": 12, "horizon": 12},
                                   "cv": {"window": 96}, "gate": {"eval_origins": 20}})
    (tmp_path / SETTINGS_FILE).write_text(settings.to_json())
    document = Settings.from_file(tmp_path / SETTINGS_FILE)
    run_processing(data.parent, tmp_path / "processed", document)
    run_training(tmp_path / "processed" / "train", tmp_path / "processed" / "test",
                 {**SPEC, "fourier_k": 2}, tmp_path / "model", document)
    forecast = Forecaster.load(tmp_path / "model").predict(3, 0.9)
    assert [str(day) for day in forecast.timestamps] == ["2012-01-01", "2012-02-01", "2012-03-01"]


def test_the_family_names_of_the_run_document_are_the_registrys():
    from pipeline_code.engine.families.registry import FAMILIES
    from pipeline_code.engine.settings import FAMILY_NAMES

    assert set(FAMILIES) == set(FAMILY_NAMES)
    assert set(Settings().search.families) <= set(FAMILY_NAMES)


@pytest.mark.parametrize("document, expected", [
    ({"search": {"families": ["prophet"]}}, "search.families: must be distinct names"),
    ({"search": {"histories": ["recent"]}}, "search.histories: must be a non-empty subset"),
    ({"search": {"window_only": ["arima", "arima"]}}, "search.window_only: must be distinct family names of"),
    ({"preprocess": {"break_start": "2020-03-01", "break_end": "2020-01-01"}},
     "preprocess.break_end: 2020-01-01 is before preprocess.break_start 2020-03-01"),
    ({"search": {"scales": ["log", "log"]}}, "search.scales: must be a non-empty subset of ['log', 'raw'], no repeats"),
    ({"search": {"detrend": [0, 0]}}, "search.detrend: must be a non-empty subset of [0, 1], no repeats"),
    ({"data": {"max_rows": 100}}, "data.max_rows: 100 rows are used at most, but these settings need at least 508 "
                                  "observations: CV window 417"),
    ({"series": {"tune_cutoffs": 0}}, "series.tune_cutoffs: must be in 1..52, got 0"),
    ({"series": {"tune_cutoffs": 53}}, "series.tune_cutoffs: must be in 1..52, got 53"),
    ({"search": {"serve": "best"}}, "search.serve: must be one of ['equal_top', 'lowest']"),
    ({"search": {"serve_top": 1}}, "search.serve_top: must be >= 2"),
])
def test_search_and_row_settings_are_validated(document, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        Settings.from_dict(document)


def test_the_tuning_cutoffs_bounds_are_accepted():
    assert [Settings.from_dict({"series": {"tune_cutoffs": k}}).series.tune_cutoffs for k in (1, 52)] == [1, 52]


def test_the_serve_rules_and_the_smallest_top_are_accepted():
    assert Settings.from_dict({"search": {"serve": "lowest"}}).search.serve == "lowest"
    assert Settings.from_dict({"search": {"serve_top": 2}}).search.serve_top == 2


def test_the_tuning_ranges_name_the_documents_families():
    settings = Settings.from_dict({"data": {"freq": "MS", "season_length": 12, "horizon": 12},
                                   "cv": {"window": 96}, "gate": {"eval_origins": 20},
                                   "search": {"families": ["ets", "theta"]}})
    categorical = {r["Name"]: r["Values"] for r in settings.parameter_ranges()["CategoricalParameterRanges"]}
    assert categorical == {"family": ["ets", "theta"]}


def test_processing_refuses_a_search_whose_families_offer_no_model_before_reading_the_data(tmp_path):
    source = tmp_path / "raw" / "sales.csv"
    source.parent.mkdir()
    source.write_text("not,even,a,series\n")  # never read: the settings are refused first
    weekly = Settings.from_dict({"search": {"families": ["thief"]}}, "test")
    with pytest.raises(SettingsError, match=r"search.families: no family offers a model .*'thief'"):
        run_processing(source.parent, tmp_path / "processed", weekly)
    assert not (tmp_path / "processed").exists()


def test_a_settings_file_with_a_utf8_byte_order_mark_reads_as_without():
    from pipeline_code.engine.settings import parse_document

    body = json.dumps({"data": {"horizon": 12}}).encode()
    assert parse_document(b"\xef\xbb\xbf" + body) == parse_document(body) == {"data": {"horizon": 12}}


def test_a_given_season_longer_than_a_third_of_the_series_is_refused_naming_it():
    from pipeline_code.engine.settings import resolve

    months = [date(2000 + k // 12, k % 12 + 1, 1) for k in range(180)]
    with pytest.raises(SettingsError, match=re.escape(
            "data.season_length: 1e+300 periods is too long for the series: its 180 observations hold fewer than 3")):
        resolve([("s.json", {"data": {"season_length": 1e300}})], timestamps=months, observations=180)
    assert resolve([("s.json", {"data": {"season_length": 60}})], timestamps=months, observations=180).settings


def test_quarters_on_their_last_month_are_inferred_and_a_wrong_freq_names_them(tmp_path, capsys):
    """fpp2 prisonLF's dates (2005-03-01, 2005-06-01, ...): QS-DEC from the data; --freq QS is refused
    before anything runs, naming what the data follows."""
    from pipeline_code.engine.profile import profile_csv
    from pipeline_code.engine.settings import resolve

    quarters = [date(2005 + k // 4, 3 * (k % 4) + 3, 1) for k in range(60)]
    data = tmp_path / "prison.csv"
    data.write_text("timestamp,value\n" + "".join(f"{d},{100 + k % 4 + k}\n" for k, d in enumerate(quarters)))
    profile = profile_csv(data.read_bytes())
    settings = resolve([], timestamps=profile.timestamps, observations=profile.observations).settings
    assert (settings.data.freq, settings.data.season_length, settings.data.horizon) == ("QS-DEC", 4.0, 4)
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--freq", "QS",
                 "--no-serve", "--quiet"]) == 2
    assert "2005-03-01 (line 2) is not a QS timestamp; the data looks like QS-DEC" in capsys.readouterr().err
    assert not workdir.exists()


def test_when_no_date_is_read_the_printed_settings_say_they_follow_the_default_frequency(tmp_path, capsys):
    """Dates that are not yyyy-MM-dd: nothing is inferred, so the weekly defaults are not "from the data"."""
    data = tmp_path / "souvenirs.csv"
    data.write_text("timestamp,value\n" + "".join(f"1987 M{k:02d},{1000 + k}\n" for k in range(1, 80)))
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(tmp_path / "work"),
                 "--no-serve", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "[timestamp] (line 2) '1987 M01' is not an ISO date" in captured.err
    assert "(from the data)" not in captured.out
    assert "data.freq = W-FRI (the default: no yyyy-MM-dd timestamp was found" in captured.out
    assert "data.horizon = 26 (from the default frequency W-FRI" in captured.out


def _weekly(path: Path, days: list[date]) -> Path:
    path.write_text("timestamp,value\n" + "".join(f"{d},{100 + k % 52}\n" for k, d in enumerate(days)))
    return path


WEEKS = [date(2005, 1, 7) + timedelta(weeks=k) for k in range(300)]


@pytest.mark.parametrize("case", ["newest first", "a date moved", "business days"])
def test_messy_uploads_are_refused_before_anything_runs_naming_the_rule_and_the_line(tmp_path, capsys, case):
    """Rows newest-first: the order rule, not a frequency inferred from file order; one date moved by a
    holiday: that date, its line and the date expected; --freq B: the recipe for business days."""
    moved = list(WEEKS)
    moved[150] -= timedelta(days=1)
    days, flags, expected = {
        "newest first": (WEEKS[::-1], [], "[order] (line 3) 2010-09-24 comes after 2010-10-01; sort rows by timestamp"),
        "a date moved": (moved, [], "2007-11-22 (line 152) is not a W-FRI timestamp (expected 2007-11-23, one period"
                                    " after 2007-11-16); correct that date, or set data.freq"),
        "business days": (WEEKS, ["--freq", "B"], "business days are daily data whose weekends are gaps: use D and"
                                                  " set data.max_gap_periods"),
    }[case]
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(_weekly(tmp_path / "w.csv", days)), "--workdir", str(workdir),
                 *flags, "--no-serve", "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert not workdir.exists()
