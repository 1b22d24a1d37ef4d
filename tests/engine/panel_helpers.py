"""Small synthetic panels for the panel engine's tests."""

from __future__ import annotations

from datetime import date

import numpy as np

from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.panel_data import Panel
from pipeline_code.engine.settings import Settings

END = date(2020, 12, 1)
CALENDAR = parse_freq("MS")


def monthly(values: np.ndarray, end: date = END) -> Series:
    n = len(values)
    return Series([CALENDAR.shift(end, k - n + 1) for k in range(n)], np.asarray(values, float), "MS")


def synthetic(n_series: int, length: int = 84, seed: int = 0) -> dict[str, np.ndarray]:
    """Seasonal random walks (log scale) of varied level, season, drift and noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_series):
        t = np.arange(length)
        log = (np.log(100) + rng.normal(0, 1) + rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6))
               + rng.normal(0, 0.005) * t + np.cumsum(rng.normal(0, rng.uniform(0.01, 0.04), length))
               + rng.normal(0, rng.uniform(0.01, 0.08), length))
        out[f"s{i:03d}"] = np.exp(log)
    return out


def panel_of(values: dict[str, np.ndarray]) -> Panel:
    return Panel(series={item: monthly(v) for item, v in values.items()}, freq="MS", single=False)


def settings(families=("seasonal_naive", "theta"), **series) -> Settings:
    return Settings.from_dict({
        "data": {"freq": "MS", "season_length": 12, "horizon": 6},
        "cv": {"window": 48},
        "gate": {"eval_origins": 8},
        "series": {"families": list(families), "cutoffs": 3, **series},
    }, "test")
