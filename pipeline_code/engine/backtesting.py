"""Rolling-origin backtest of the whole procedure: tune (every family, and the combinations) on data
before the first origin only, then forecast from each origin with the chosen candidate re-estimated
on the data before it, next to seasonal naive and (optionally) the statsforecast baselines, all on
the same origins and MASE scales."""

from __future__ import annotations

import json
from dataclasses import replace
import time
from pathlib import Path
from typing import Any

from pipeline_code.engine.dataset import load_series
from pipeline_code.engine.evaluation import backtest_candidate, backtest_origins, backtest_seasonal_naive
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.cleaning import clean
from pipeline_code.engine.settings import Settings
from pipeline_code.engine.tuning import tune

OURS = "forecast-mlops"


def run_backtest(
    data: Path, out: Path, settings: Settings, *, origins: int = 52, baselines: bool = False,
    jobs: int | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Write ``backtest.json`` to ``out`` and return it."""
    horizon, window = settings.data.horizon, settings.cv.window
    series = load_series(
        data, freq=settings.data.freq,
        min_length=replace(settings, gate=replace(settings.gate, eval_origins=origins)).min_observations(),
        max_bytes=settings.data.max_file_bytes, max_gap_periods=settings.data.max_gap_periods,
    )
    pre, _ = clean(series, settings)
    observed, target = series.values, pre.counterfactual
    points = backtest_origins(len(series), horizon=horizon, origins=origins)
    first = int(points[0])
    levels = settings.gate.scored_levels
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    tuning = tune(observed[:first], target[:first], settings, jobs=jobs, progress=progress)
    ctx = Context.from_settings(settings, jobs=jobs or 1)
    ours = backtest_candidate(
        {False: observed, True: target}, target, tuning.best["hyperparameters"], ctx, origins=points,
        levels=levels, name=OURS, step=settings.cv.step, splits=settings.search.selection_splits,
    )
    seconds[OURS] = time.perf_counter() - started
    started = time.perf_counter()
    results = {OURS: ours, "SeasonalNaive": backtest_seasonal_naive(
        target, ctx.period, window=window, horizon=horizon, origins=points, levels=levels)}
    seconds["SeasonalNaive"] = time.perf_counter() - started
    if baselines:
        from pipeline_code.engine.baselines import backtest_baselines

        started = time.perf_counter()
        results.update(backtest_baselines(
            target, season_length=settings.data.season_length, window=window, horizon=horizon,
            origins=points, levels=levels, n_jobs=jobs or 1))
        seconds["baselines"] = time.perf_counter() - started
    report = {
        "data": data.name,
        "origins": int(points.size),
        "first_origin": series.timestamps[first].isoformat(),
        "last_origin": series.timestamps[int(points[-1])].isoformat(),
        "horizon": horizon,
        "window": window,
        "tuned_on": f"{series.timestamps[0].isoformat()}..{series.timestamps[first - 1].isoformat()}",
        "tuned_hyperparameters": tuning.best["hyperparameters"],
        "tuning_seconds": tuning.seconds,
        "seconds": seconds,
        "models": {name: bt.metrics() for name, bt in results.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_text(json.dumps(report, indent=1))
    return report
