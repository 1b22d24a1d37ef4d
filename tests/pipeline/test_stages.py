"""pipeline/stages.py: what processing reports and what the forecast export writes."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np

from pipeline_code.engine.settings import Settings
from pipeline_code.pipeline.panel_stages import export_panel_forecast
from pipeline_code.pipeline.stages import export_forecast, run_processing

from ..conftest import BUNDLED

LEVELS = (0.8, 0.95)
# Values a 6-significant-digit export rounded: 1234567890 came out as 1.23457e+09.
MEANS = np.array([1234567890.0, 1234567890.125, 0.1 + 0.2, 1e-100, 98765.4321])


class Stub:
    """A forecaster whose forecasts are MEANS, its bounds one unit either side."""

    def predict(self, periods: int, level: float):
        stamps = [date(2030, 1, 4) + timedelta(weeks=k) for k in range(periods)]
        return SimpleNamespace(timestamps=stamps, mean=MEANS[:periods], lower=MEANS[:periods] - level,
                               upper=MEANS[:periods] + level)


def read(path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_forecast_export_writes_every_digit(tmp_path):
    """One series and a panel: each value reads back as the float forecast, at any magnitude."""
    rows = read(export_forecast(Stub(), len(MEANS), LEVELS, tmp_path / "one.csv"))
    panel = read(export_panel_forecast(SimpleNamespace(items=["a"], forecaster=lambda item: Stub()), len(MEANS),
                                       LEVELS, tmp_path / "panel.csv"))
    for written in (rows, panel):
        assert written[0]["mean"] == "1234567890"
        np.testing.assert_array_equal([float(row["mean"]) for row in written], MEANS)
        np.testing.assert_array_equal([float(row["upper_95"]) for row in written], MEANS + 0.95)
        np.testing.assert_array_equal([float(row["lower_80"]) for row in written], MEANS - 0.8)


def test_a_single_series_reports_its_filled_points_as_a_panel_does(tmp_path):
    lines = BUNDLED.read_text().splitlines()
    raw = tmp_path / "raw" / "gas.csv"
    raw.parent.mkdir()
    raw.write_text("\n".join(lines[:500] + lines[502:]) + "\n")  # two weeks missing
    settings = Settings().merged({"data": {"max_gap_periods": 2, "horizon": 13}, "cv": {"window": 104},
                                  "gate": {"eval_origins": 8}})
    report = run_processing(raw.parent, tmp_path / "processed", settings)
    assert report["filled_points"] == {"middle": 2, "end": 0}
    assert report["train_observations"] + report["test_observations"] == len(lines) - 1
