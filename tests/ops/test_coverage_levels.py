"""``gate.coverage_levels`` sets the intervals exported with the forecast; evaluation still scores the
recorded levels (80% and 95%) that a model package's metadata carries (the cloud's SeriesMetadata state
reads them), so another choice of levels cannot break a cloud run after Evaluate."""

from __future__ import annotations

import csv
import json

from pipeline_code.cli.main import main
from pipeline_code.engine.settings import RECORDED_LEVELS, coverage_key
from stacks.pipeline_definition import SERIES_METRICS

from .conftest import FAST_SETTINGS, fast_data


def test_other_levels_are_exported_and_the_recorded_ones_still_scored(tmp_path):
    data = fast_data(tmp_path / "data", rows=700)
    settings = {**FAST_SETTINGS, "gate": {**FAST_SETTINGS["gate"], "coverage_levels": [0.9]}}
    data.with_name("gasoline.settings.json").write_text(json.dumps(settings))
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--quiet", "--no-serve",
                 "--jobs", "1"]) == 0
    with (workdir / "forecasts" / "latest" / "forecast.csv").open() as f:
        assert next(csv.reader(f)) == ["timestamp", "mean", "lower_90", "upper_90"]
    evaluation = json.loads(next((workdir / "runs").glob("*/reports/evaluation/evaluation.json")).read_text())
    for level in (0.9, *RECORDED_LEVELS):
        assert 0 <= evaluation["challenger"][coverage_key(level)] <= 1
    assert set(SERIES_METRICS) <= set(evaluation["challenger"])


def test_levels_that_name_the_same_columns_are_refused():
    import pytest

    from pipeline_code.engine.settings import Settings, SettingsError

    for levels in ([0.8, 0.8], [0.8, 0.801]):
        with pytest.raises(SettingsError, match=r"gate.coverage_levels: two levels name the same columns \(coverage_80"):
            Settings().merged({"gate": {"coverage_levels": levels}}, "test")
    assert Settings().merged({"gate": {"coverage_levels": [0.5, 0.9]}}, "test").gate.scored_levels == (0.5, 0.8, 0.9, 0.95)
