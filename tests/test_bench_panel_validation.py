"""The validation panels' data and table (bench/panel_validation_bench.py)."""

from __future__ import annotations

import math

import numpy as np

from bench import panel_validation_bench as bench
from pipeline_code.engine.core.calendar import parse_freq


def test_validation_panels_are_regular_positive_series_of_their_frequency():
    found = {name: (freq, season, series) for name, freq, season, series in bench.panels()}
    assert {name: len(s) for name, (_, _, s) in found.items()} == {
        "visnights": 20, "departures": 5, "arrivals": 4, "aus_accommodation": 8}
    for name, (freq, season, series) in found.items():
        calendar = parse_freq(freq)
        assert season == {"QS": 4, "MS": 12}[freq]
        for item, (stamps, values) in series.items():
            assert len(stamps) == values.size > season * (bench.CUTOFFS + 2), (name, item)
            assert all(calendar.shift(a, 1) == b for a, b in zip(stamps, stamps[1:])), (name, item)
            assert np.all(np.isfinite(values)) and np.all(values > 0), (name, item)


def test_the_table_has_each_variant_and_their_geometric_mean():
    metrics = {"a": {"x": 0.5, "y": 2.0}, "b": {"x": 2.0, "y": 2.0}}
    results = {name: {"series": 3, "freq": "QS",
                      "variants": {v: {"mase": m, "coverage_95": 0.9} for v, m in ms.items()}}
               for name, ms in metrics.items()}
    lines = bench.markdown(results, "all history", "cmd")
    assert "| a (QS) | 3 | 0.5000 (0.90) | 2.0000 (0.90) |" in lines
    assert lines[-1] == "| geometric mean | | 1.0000 | 2.0000 |"
