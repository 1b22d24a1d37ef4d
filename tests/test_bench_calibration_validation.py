"""bench/calibration_validation_bench.py: the summary of the per-series coverages."""

import pytest

from bench.calibration_validation_bench import main, markdown

ROWS = [
    {"series": "a", "freq": "MS", "origins": 24, "points": 288, "seconds": 1.0, "mase": 0.5,
     "coverage_80": 0.70, "coverage_95": 0.90},
    {"series": "b", "freq": "QS", "origins": 12, "points": 48, "seconds": 2.0, "mase": 0.9,
     "coverage_80": 0.90, "coverage_95": 1.00},
]


def test_the_summary_counts_each_series_once_and_pools_by_points():
    text = markdown(ROWS, ["coverage_80", "coverage_95"], "cmd")
    # mean over series; pooled weights each series by its scored points; below nominal - 0.05 / above + 0.03
    assert "| 0.80 | 0.800 | 0.729 | 0.800 | 1 of 2 | 1 of 2 |" in text
    assert "| 0.95 | 0.950 | 0.914 | 0.950 | 0 of 2 | 1 of 2 |" in text
    assert "| b | QS | 12 | 0.9000 | 0.900 | 1.000 | 2 |" in text


def test_a_missing_cache_is_named_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--cache", str(tmp_path), "--series", "usmelec"])
    assert stop.value.code == 2
    assert "no cached choice of usmelec" in capsys.readouterr().err
