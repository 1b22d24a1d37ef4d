"""Yearly data (no season) through `pipeline run` with nothing but the data: one series and a panel
each end with an approved model whose forecast the NumPy core serves; a too-short series is refused
naming the minimum length."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from pipeline_code.cli.main import main
from pipeline_code.engine.cleaning import NO_SEASON
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.panel_artifact import PanelModel
from pipeline_code.pipeline.registry import LocalRegistry

# The run's operational options only: every setting is derived from the data.
OPTIONS = ["--quiet", "--no-serve", "--jobs", "2"]


def yearly(n: int, seed: int, start: int = 1970) -> list[tuple[str, float]]:
    rng = np.random.default_rng(seed)
    values = np.exp(2 + 0.04 * np.arange(n) + np.cumsum(rng.normal(0, 0.05, n)))
    return [(f"{start + k}-01-01", float(v)) for k, v in enumerate(values)]


def run(data: Path, workdir: Path) -> int:
    return main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), *OPTIONS])


def run_folder(workdir: Path) -> Path:
    return next((workdir / "runs").iterdir())


def sane(rows: list[dict[str, str]], periods: int) -> None:
    """Finite, positive, each interval ordered around the mean and the 95% one around the 80% one."""
    assert len(rows) == periods
    for row in rows:
        low95, low80, mean, up80, up95 = (float(row[k]) for k in
                                          ("lower_95", "lower_80", "mean", "upper_80", "upper_95"))
        assert 0 < low95 <= low80 <= mean <= up80 <= up95 < np.inf, row


def test_a_yearly_series_runs_with_no_settings_and_is_served(tmp_path):
    data = tmp_path / "yearly.csv"
    data.write_text("timestamp,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in yearly(47, seed=1)))
    workdir = tmp_path / "work"
    assert run(data, workdir) == 0
    folder = run_folder(workdir)
    document = json.loads((folder / "input" / "settings.json").read_text())
    data_settings = document["data"]
    assert (data_settings["freq"], data_settings["season_length"], data_settings["horizon"]) == ("YS", 1, 6)
    processing = json.loads(next(folder.rglob("processing.json")).read_text())
    assert processing["rules_skipped"] == NO_SEASON and processing["outliers"] == 0
    tuning = json.loads((folder / "reports" / "tuning.json").read_text())
    assert "mstl" not in {c["hyperparameters"]["family"] for c in tuning["candidates"]}
    with next((workdir / "forecasts").glob("*/forecast.csv")).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["timestamp"] == "2017-01-01"
    sane(rows, 6)
    served = Forecaster.load(LocalRegistry(workdir / "registry").approved().model_dir).predict(20, 0.9)
    assert np.all(np.isfinite(served.mean)) and np.all(served.lower <= served.mean)
    assert np.all(served.mean <= served.upper) and served.timestamps[-1].isoformat() == "2036-01-01"


def test_a_yearly_series_below_the_minimum_is_refused_naming_it(tmp_path, capsys):
    data = tmp_path / "short.csv"
    data.write_text("timestamp,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in yearly(36, seed=2)))
    assert run(data, tmp_path / "work") == 2
    assert "36 observations; at least 43 are needed" in capsys.readouterr().err
    assert not (tmp_path / "work" / "registry").exists()


def test_a_yearly_panel_runs_with_no_settings_and_is_served(tmp_path):
    """Six series of 40 years and one of 12, too short for a CV split: it gets the fallback (naive)."""
    rows = [(f"item{k}", t, v) for k in range(6) for t, v in yearly(40, seed=10 + k, start=1984)]
    rows += [("short", t, v) for t, v in yearly(12, seed=20, start=2012)]
    data = tmp_path / "panel.csv"
    data.write_text("item_id,timestamp,value\n" + "".join(f"{i},{t},{v:.4f}\n" for i, t, v in rows))
    workdir = tmp_path / "work"
    assert run(data, workdir) == 0
    folder = run_folder(workdir)
    processing = json.loads(next(folder.rglob("processing.json")).read_text())
    assert set(processing["rules_skipped"].values()) == {NO_SEASON}
    assert processing["too_short"]["short"].startswith("12 observations; a CV split needs 16 (10 values")
    fit = json.loads((folder / "reports" / "panel_fit.json").read_text())
    assert list(fit["fallbacks"]) == ["short"] and not fit["failures"]
    with next((workdir / "forecasts").glob("*/forecast.csv")).open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    for item in {r["item_id"] for r in exported}:
        sane([r for r in exported if r["item_id"] == item], 6)
    model = PanelModel.load(LocalRegistry(workdir / "registry").approved().model_dir)
    for item in ("item0", "short"):
        served = model.forecaster(item).predict(10, 0.95)
        assert np.all(np.isfinite(served.mean)) and np.all(served.lower <= served.upper)

