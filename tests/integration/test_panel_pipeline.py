"""A panel (many series in one upload) through `pipeline run`: one registered version holding every
series, the exports with item_id, the reports, Amazon Forecast's layout with fills, a second run gated
against the approved panel, and each bad-input rule refusing the upload with nothing registered."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.cli.main import main
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.panel_artifact import PanelModel, is_panel
from pipeline_code.pipeline.registry import LocalRegistry

# Cheap families and one history keep a run to seconds per fit (the engine's tests cover the rest).
FAST_PANEL = {"data": {"horizon": 6},
              "series": {"families": ["seasonal_naive", "theta"], "cutoffs": 3, "tune_cutoffs": 3},
              "search": {"histories": ["window"], "scales": ["log"]}}
MONTHLY = parse_freq("MS")
END = date(2023, 12, 1)
# item -> length; "flat" is constant, "short" too short for any CV split of the families.
LENGTHS = {"north": 120, "south": 108, "east": 96, "west": 132, "flat": 100, "short": 14}


def panel_rows(lengths: dict[str, int] = LENGTHS, seed: int = 3) -> list[list[str]]:
    """Monthly seasonal series ending on END, of the given lengths (rows grouped by item)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, (item, n) in enumerate(lengths.items()):
        stamps = MONTHLY.future(MONTHLY.shift(END, -n), n)
        t = np.arange(n)
        values = np.exp(4 + 0.3 * k + 0.25 * np.sin(2 * np.pi * t / 12) + 0.002 * t + rng.normal(0, 0.04, n))
        if item == "flat":
            values[:] = 50.0
        rows += [[item, stamp.isoformat(), f"{v:.3f}"] for stamp, v in zip(stamps, values)]
    return rows


def write_panel(path: Path, rows: list[list[str]], header: list[str] | None = ("item_id", "timestamp", "value"),
                settings: dict | None = None) -> Path:
    """The CSV, and its settings file beside it (the run document's upload layer)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    document = json.loads(json.dumps(FAST_PANEL))
    for section, values in (settings or {}).items():
        document.setdefault(section, {}).update(values)
    path.with_name(path.name[:-4] + ".settings.json").write_text(json.dumps(document))
    return path


def pipeline(data: Path, workdir: Path) -> int:
    return main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--quiet", "--no-serve",
                 "--jobs", "2"])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("panel")
    workdir = root / "work"
    data = write_panel(root / "stores.csv", panel_rows())
    assert pipeline(data, workdir) == 0
    return root, workdir


def test_one_version_holds_every_series(first_run):
    _, workdir = first_run
    approved = LocalRegistry(workdir / "registry").approved()
    assert approved.name == "v0001" and approved.status == "Approved"
    assert is_panel(approved.model_dir) and not (approved.model_dir / "model.json").exists()
    model = PanelModel.load(approved.model_dir)
    assert model.items == sorted(LENGTHS)
    assert model.metadata["version"] == "v0001" and model.metadata["name"].startswith("panel-")
    path = model.forecaster("north").predict(6, 0.9)
    assert path.timestamps[0] == MONTHLY.shift(END, 1) and np.all(path.lower < path.upper)


def test_pipeline_run_shows_a_served_forecast_of_the_first_item(first_run):
    from pipeline_code.cli.main import _first_item

    _, workdir = first_run
    assert _first_item(workdir / "registry") == ["--item", sorted(LENGTHS)[0]]
    assert _first_item(workdir / "no-registry") == []


def test_exports_carry_item_id(first_run):
    _, workdir = first_run
    latest = workdir / "forecasts" / "latest"
    forecast = read_csv(latest / "forecast.csv")
    assert list(forecast[0])[:3] == ["item_id", "timestamp", "mean"]
    assert {"lower_80", "upper_80", "lower_95", "upper_95"} <= set(forecast[0])
    assert sorted({r["item_id"] for r in forecast}) == sorted(LENGTHS)
    assert len(forecast) == 6 * len(LENGTHS)
    assert [r["timestamp"] for r in forecast if r["item_id"] == "west"][0] == "2024-01-01"
    backtest = read_csv(latest / "backtest.csv")
    assert list(backtest[0])[:2] == ["item_id", "cutoff"] and {"actual", "forecast", "step"} <= set(backtest[0])
    assert {"north", "west"} <= {r["item_id"] for r in backtest}
    assert len({r["cutoff"] for r in backtest}) == 3
    run_id = LocalRegistry(workdir / "registry").approved().record["run_id"]
    assert (workdir / "forecasts" / run_id / "backtest.csv").read_text() == (latest / "backtest.csv").read_text()


def test_reports_name_constant_short_and_per_item_results(first_run):
    _, workdir = first_run
    run_dir = workdir / "runs" / LocalRegistry(workdir / "registry").approved().record["run_id"]
    processing = json.loads((run_dir / "processed" / "report" / "processing.json").read_text())
    assert processing["panel"] and processing["series"] == len(LENGTHS)
    assert [c["item"] for c in processing["constant"]] == ["flat"]
    assert processing["constant"][0]["rule"] == "constant" and processing["constant"][0]["line"] > 1
    assert processing["rules_skipped"]["flat"] == "constant" and "short" in processing["rules_skipped"]
    assert processing["longest"] == 132 and processing["shortest"] == 14
    fit = json.loads((run_dir / "reports" / "panel_fit.json").read_text(),
                     parse_constant=lambda name: pytest.fail(f"panel_fit.json holds {name}, which is not JSON"))
    assert set(fit["fallbacks"]) >= {"flat", "short"}
    tuning = json.loads((run_dir / "reports" / "tuning.json").read_text())
    families = {c["hyperparameters"]["family"] for c in tuning["candidates"]}
    assert families == {"per_series", "seasonal_naive", "theta", "combination"}
    assert tuning["cv_mase"] == min(c["cv_mase"] for c in tuning["candidates"])
    from pipeline_code.cli.local_ops import LocalOps

    _, trials = LocalOps(workdir).trials(run_dir.name)  # `forecast-mlops runs tuning`
    assert [t.status for t in trials] == ["Completed"] * 4 and trials[0].objective == tuning["candidates"][0]["cv_mase"]
    evaluation = json.loads((run_dir / "reports" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["panel"] and evaluation["gate"]["passed"]
    for name in ("challenger", "seasonal_naive"):
        assert {"mase", "wape", "coverage_80", "coverage_95", "interval_score"} <= set(evaluation[name])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["state"] == "promoted"


def test_second_run_is_gated_against_the_approved_panel(first_run):
    root, workdir = first_run
    data = write_panel(root / "stores-again.csv", panel_rows(seed=4))
    assert pipeline(data, workdir) == 0
    registry = LocalRegistry(workdir / "registry")
    v2 = registry.get("v0002")
    evaluation = json.loads((workdir / "runs" / v2.record["run_id"] / "reports" / "evaluation"
                             / "evaluation.json").read_text())
    assert evaluation["champion"] is not None and evaluation["champion_version"] == "v0001"
    assert registry.approved().name == ("v0002" if evaluation["gate"]["passed"] else "v0001")


def test_amazon_forecast_layout_with_fills(tmp_path):
    """No header, target_value's place in series.columns, 'yyyy-MM-dd 00:00:00' timestamps, a missing
    value cell filled in the middle, and a series ending early filled to the panel's end."""
    rows = [[item, f"{stamp} 00:00:00", value] for item, stamp, value in panel_rows({"a": 60, "b": 72, "c": 48})]
    rows = [r for r in rows if not (r[0] == "c" and r[1] >= "2023-11-01")]  # c ends 2 periods early
    missing = next(i for i, r in enumerate(rows) if r[0] == "b" and r[1].startswith("2020-05-01"))
    rows[missing][2] = "NA"
    rows = [[timestamp, value, item] for item, timestamp, value in rows]
    data = write_panel(tmp_path / "amazon.csv", rows, header=None, settings={"series": {
        "columns": ["timestamp", "target_value", "item_id"], "fill_middle": "interpolate", "fill_end": "median"}})
    workdir = tmp_path / "work"
    assert pipeline(data, workdir) == 0
    run_dir = next((workdir / "runs").iterdir())
    processing = json.loads((run_dir / "processed" / "report" / "processing.json").read_text())
    assert processing["fills"] == {"b": {"middle": 1, "end": 0}, "c": {"middle": 0, "end": 2}}
    assert processing["filled_points"] == {"middle": 1, "end": 2}
    forecast = read_csv(workdir / "forecasts" / "latest" / "forecast.csv")
    assert sorted({r["item_id"] for r in forecast}) == ["a", "b", "c"]


def bad(rows: list[list[str]], line: int, replace: list[str] | None = None, append: list[list[str]] = ()):
    """The panel with row ``line`` (file line, header = 1) replaced, and rows appended."""
    rows = [list(r) for r in rows]
    if replace is not None:
        rows[line - 2] = replace
    return rows + [list(r) for r in append]


ROWS = panel_rows()
NORTH_LAST = len([r for r in ROWS if r[0] == "north"]) + 1  # the file line of north's last row
BAD_INPUTS = {
    "empty-item": (bad(ROWS, 5, ["", ROWS[3][1], ROWS[3][2]]), {}, "[item_id] (line 5)", "empty"),
    "long-item": (bad(ROWS, 5, ["x" * 257, ROWS[3][1], ROWS[3][2]]), {}, "[item_id] (line 5, item", "257"),
    "control-item": (bad(ROWS, 5, ["bad\x07item", ROWS[3][1], ROWS[3][2]]), {}, "[item_id] (line 5, item",
                     "control"),
    "duplicate": (bad(ROWS, 0, append=[ROWS[10]]), {}, f"[duplicate] (line {len(ROWS) + 2}, item 'north')", ""),
    "max-series": (ROWS, {"series": {"max_series": 3}}, "[max-series] (line", "series.max_series"),
    "frequency": (bad(ROWS, 0, append=[["quarterly", f"{y}-{m:02d}-01", "10"] for y in (2022, 2023)
                                       for m in (1, 4, 7, 10)]), {}, "[frequency] (line", "'quarterly'"),
    "gap": ([r for r in ROWS if not (r[0] == "south" and r[1] == "2020-06-01")], {}, "[gap] (line", "'south'"),
    "missing-end": ([r for r in ROWS if not (r[0] == "east" and r[1] == END.isoformat())], {},
                    "[missing] (line", "'east'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_panel_is_refused_and_nothing_changes(first_run, tmp_path, capsys, case):
    _, workdir = first_run
    rows, settings, where, detail = BAD_INPUTS[case]
    data = write_panel(tmp_path / f"{case}.csv", rows, settings=settings)
    before = (workdir / "registry" / "approved.json").read_text()
    versions = len(LocalRegistry(workdir / "registry").versions())
    uploads = sorted((workdir / "raw").iterdir())
    assert pipeline(data, workdir) == 2
    err = capsys.readouterr().err
    assert where in err and detail in err and "Traceback" not in err, err
    assert "nothing was registered" in err
    assert (workdir / "registry" / "approved.json").read_text() == before
    assert len(LocalRegistry(workdir / "registry").versions()) == versions
    assert sorted((workdir / "raw").iterdir()) == uploads


def test_oversize_panel_is_refused_before_it_is_read(first_run, tmp_path, capsys):
    _, workdir = first_run
    before = (workdir / "registry" / "approved.json").read_text()
    data = write_panel(tmp_path / "big.csv", ROWS, settings={"data": {"max_file_bytes": 2048}})
    assert pipeline(data, workdir) == 2
    err = capsys.readouterr().err
    assert f"the upload is {data.stat().st_size} bytes; data.max_file_bytes is 2048" in err
    assert (workdir / "registry" / "approved.json").read_text() == before


def test_one_series_after_a_panel_faces_seasonal_naive_only(first_run, tmp_path):
    """The approved panel holds no model of a single series: the series is gated like a first run, and
    a promoted single series leaves no panel backtest in forecasts/latest/."""
    from tests.integration.test_local_pipeline import FAST, rows, write

    _, workdir = first_run
    data = write(tmp_path / "one.csv", rows(700))
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), *FAST]) == 0
    registry = LocalRegistry(workdir / "registry")
    latest = registry.versions()[-1]
    assert "the approved model is a panel" in latest.record["gate"]["reason"]
    assert latest.record["gate"]["passed"] and registry.approved().name == latest.name
    assert (latest.model_dir / "model.json").is_file()
    assert not (workdir / "forecasts" / "latest" / "backtest.csv").exists()
    assert read_csv(workdir / "forecasts" / "latest" / "forecast.csv")[0].keys() >= {"timestamp", "mean"}


def test_a_panel_of_series_too_short_to_score_still_serves_the_fallback(tmp_path):
    """Every series shorter than two seasons plus a horizon: no global choice scores, yet the first
    upload ends with every series on the fallback, approved and served (the tuning says why)."""
    data = write_panel(tmp_path / "young.csv", panel_rows({"a": 30, "b": 28, "c": 26}))
    workdir = tmp_path / "work"
    assert pipeline(data, workdir) == 0
    approved = LocalRegistry(workdir / "registry").approved()
    run_dir = workdir / "runs" / approved.record["run_id"]
    tuning = json.loads((run_dir / "reports" / "tuning.json").read_text())
    assert "every series gets series.fallback (seasonal_naive)" in tuning["unscored"]
    assert tuning["hyperparameters"]["family"] == "per_series"
    fit = json.loads((run_dir / "reports" / "panel_fit.json").read_text(),
                     parse_constant=lambda name: pytest.fail(f"panel_fit.json holds {name}, which is not JSON"))
    assert set(fit["fallbacks"]) >= {"b", "c"}  # "a" has one split once its last horizon is in the fit
    model = PanelModel.load(approved.model_dir)
    assert model.items == ["a", "b", "c"]


def test_the_approved_panel_is_backtested_as_it_was_fitted(tmp_path, monkeypatch):
    """A later run with other panel settings (here ETS's model) scores the approved panel under the
    settings it was fitted with, not its own: otherwise the gate compares with a model that never served."""
    import pipeline_code.engine.panel_fit as panel_fit
    from pipeline_code.engine.core.panel_artifact import PanelModel

    workdir = tmp_path / "work"
    first = write_panel(tmp_path / "stores.csv", panel_rows(), settings={"series": {"ets_model": "ZZZ"}})
    assert pipeline(first, workdir) == 0
    approved = PanelModel.load(LocalRegistry(workdir / "registry").approved().model_dir).metadata
    assert approved["model_settings"]["series"]["ets_model"] == "ZZZ"
    scored: list[tuple[dict, str]] = []
    backtest = panel_fit.backtest_panel

    def spy(panel, settings, *, choice=None, cutoffs, jobs=1):
        scored.append((choice, settings.series.ets_model))
        return backtest(panel, settings, choice=choice, cutoffs=cutoffs, jobs=jobs)

    monkeypatch.setattr(panel_fit, "backtest_panel", spy)
    (tmp_path / "later").mkdir()
    later = write_panel(tmp_path / "later" / "stores.csv", panel_rows(), settings={"series": {"ets_model": "AAN"}})
    assert pipeline(later, workdir) == 0
    assert (approved["hyperparameters"], "ZZZ") in scored  # the approved panel, as it was fitted
    assert any(model == "AAN" for _, model in scored)  # the challenger, as this run fits it


def test_quarters_on_their_last_month_under_a_mixed_case_header_run_and_serve_on_their_calendar(tmp_path, capsys):
    """fpp2 prisonLF's layout (quarters dated on the first day of their last month) with an
    `Item_ID,Timestamp,Value` header: a panel on QS-DEC, inferred, forecast and served on that calendar;
    with --no-serve the run does not claim to be serving."""
    quarters = parse_freq("QS-DEC")
    end = date(2016, 12, 1)
    rows = [[row[0], quarters.shift(end, -47 + k % 48).isoformat(), row[2]]  # 48 rows an item, in order
            for k, row in enumerate(panel_rows({"act": 48, "nsw": 48, "vic": 48}))]
    data = write_panel(tmp_path / "prison.csv", rows, header=["Item_ID", "Timestamp", "Value"])
    workdir = tmp_path / "work"
    assert pipeline(data, workdir) == 0
    out = capsys.readouterr().out
    assert "data.freq = QS-DEC (from the data)" in out and "now serving" not in out
    assert f"registered v0001 as Approved (the model `forecast-mlops serve --model {workdir / 'registry'}`" in out
    forecast = read_csv(workdir / "forecasts" / "latest" / "forecast.csv")
    assert [r["timestamp"] for r in forecast if r["item_id"] == "vic"] == [
        "2017-03-01", "2017-06-01", "2017-09-01", "2017-12-01", "2018-03-01", "2018-06-01"]
    model = PanelModel.load(LocalRegistry(workdir / "registry").approved().model_dir)
    assert model.forecaster("act").predict(3, 0.9).timestamps == [date(2017, 3, 1), date(2017, 6, 1), date(2017, 9, 1)]
