"""The series and run documents the emulated cloud tests use, and the local pipeline's answer for them.

Each run document keeps the run small: few CV splits, few evaluation origins, and a small search (one
model family unless said otherwise). The tuning job is a Grid, one trial per family (one series: the Select
job merges them as the local tune does, pipeline_code/pipeline/trials.py) or per history and scale (a
panel: the sharded fit takes the trials' best choice, pipeline_code/pipeline/panel_tuning.py).
"""

from __future__ import annotations

import csv
import io
import math
import random
import tempfile
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipeline_code.engine.settings import SearchSpace, resolve

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "pipeline_code" / "data" / "us_gasoline.csv"
ONE_FAMILY = {"families": ["harmonic_arima"], "histories": ["window"], "scales": ["log"], "combination_sizes": [],
              "selection_splits": 10}


def search(**space: Any) -> dict[str, Any]:
    """A search section: `space` plus the one-family limits this engine version knows of."""
    known = {f.name for f in fields(SearchSpace)}
    return {k: v for k, v in {**ONE_FAMILY, **space}.items() if k in known}


def document(*, freq: str, season_length: float, horizon: int, window: int, step: int,
             deseasonalize: list[int], fourier_k: list[int]) -> dict[str, Any]:
    """A run document with at most 4 tuning candidates (two each below; the cloud tests upload a series
    some twenty times between them)."""
    return {
        "data": {"freq": freq, "season_length": season_length, "horizon": horizon},
        "cv": {"window": window, "step": step},
        "gate": {"eval_origins": 4},
        "search": search(use_counterfactual_data=[1], detrend=[0], deseasonalize=deseasonalize, fourier_k=fourier_k),
    }


def synthetic_csv(start: date, periods: int, step: timedelta | str, season: float, seed: int) -> bytes:
    """Trend + seasonality + noise (seeded); `step` "month" for month starts."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "value"])
    day = start
    for t in range(periods):
        value = 100 + 0.05 * t + 10 * math.sin(2 * math.pi * t / season) + 3 * math.cos(4 * math.pi * t / season)
        writer.writerow([day.isoformat(), f"{value + rng.gauss(0, 1.5):.3f}"])
        if step == "month":
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        else:
            day = day + step
    return out.getvalue().encode()


WEEKLY = {"name": "gasoline.csv", "data": BUNDLED.read_bytes(),
          "settings": document(freq="W-FRI", season_length=365.25 / 7, horizon=26, window=417, step=26,
                               deseasonalize=[0, 1], fourier_k=[3])}
MONTHLY_PERIODS = 240


def monthly_data(periods: int = MONTHLY_PERIODS) -> bytes:
    """The monthly series (longer: the same history plus newer months)."""
    return synthetic_csv(date(2004, 1, 1), periods, "month", 12, seed=12)


MONTHLY = {"name": "monthly.csv", "data": monthly_data(),
           "settings": document(freq="MS", season_length=12, horizon=12, window=96, step=4,
                                deseasonalize=[0, 1], fourier_k=[2])}
DAILY = {"name": "daily.csv", "data": synthetic_csv(date(2023, 1, 2), 3 * 365, timedelta(days=1), 7, seed=7),
         "settings": document(freq="D", season_length=7, horizon=14, window=365, step=21,
                              deseasonalize=[0, 1], fourier_k=[2])}
# Four families of one candidate each (the tuning job's 4 trials, one per family): both paths serve equal
# weights of the best 3 (search.serve's default), fitted by the cloud's Select job.
COMBINED_FAMILIES = ["harmonic_arima", "seasonal_naive", "mstl", "theta"]
COMBINED = {"name": "combined.csv", "data": monthly_data(),
            "settings": {**MONTHLY["settings"],
                         "search": search(families=COMBINED_FAMILIES, use_counterfactual_data=[1], detrend=[0],
                                          deseasonalize=[1], fourier_k=[2])}}
# The monthly series appears searched over four families (its one-family run is in test_paths.py and others).
SERIES = {"weekly": WEEKLY, "daily": DAILY, "combined": COMBINED}


def panel_csv(items: dict[str, tuple[date, int]], seed: int) -> bytes:
    """A long ``item_id,timestamp,value`` file: each item's monthly series (its start, its length)."""
    lines = [b"item_id,timestamp,value"]
    for index, (item, (start, periods)) in enumerate(items.items()):
        rows = synthetic_csv(start, periods, "month", 12, seed=seed + index).decode().splitlines()[1:]
        lines += [f"{item},{row}".encode() for row in rows]
    return b"\n".join(lines) + b"\n"


# Six small monthly series of different lengths and starts, ending together, three per shard of two;
# two NumPy families and one history: four global choices, all of which the tuning job scores.
PANEL_ITEMS = {f"sku-{n}": (date(2010 + n % 3, 1, 1), 168 - 12 * (n % 3)) for n in range(1, 7)}
PANEL = {"name": "skus.csv", "data": panel_csv(PANEL_ITEMS, seed=40),
         "settings": {"data": {"freq": "MS", "season_length": 12, "horizon": 12},
                      "gate": {"eval_origins": 4}, "search": {"histories": ["window"], "scales": ["log"]},
                      "series": {"instances": 2, "families": ["seasonal_naive", "harmonic_arima"], "cutoffs": 2,
                                 "tune_cutoffs": 2}},
         "request": {"item_id": "sku-4", "periods": 12, "conf": 0.8}}


def local_run(series: dict[str, Any]):
    """The local pipeline (pipeline_code.pipeline.runner.run_pipeline) on the same data and document."""
    from pipeline_code.engine.profile import profile_csv
    from pipeline_code.pipeline.runner import run_pipeline

    workdir = Path(tempfile.mkdtemp(prefix="forecast-local-"))
    data = workdir / "upload" / series["name"]
    data.parent.mkdir()
    data.write_bytes(series["data"])
    profile = profile_csv(series["data"])  # what the data implies, as the starter resolves it
    resolved = resolve([("test run document", series["settings"])], timestamps=profile.timestamps,
                       observations=profile.observations)
    return run_pipeline(data, workdir / "work", resolved.settings, progress=False, log=lambda _: None,
                        derived=resolved.derived)
