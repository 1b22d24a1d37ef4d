"""Interval calibration on the selection validation suite: how often the served model's intervals cover
the actuals on 51 public monthly and quarterly series that are not the accuracy benchmark's.

Run from the repository root, after ``bench.selection_validation_bench`` has filled its cache::

    .venv/bin/python -m bench.calibration_validation_bench --jobs 2

Per series: the model the engine serves by default (the cache's ``engine_choice``: the tune's pick on
the data before the first origin), backtested at the suite's origins as the accuracy benchmark backtests
ours (``engine.evaluation.backtest_candidate``: re-fitted at every origin, each origin's intervals
calibrated as the model served from there would be, on CV errors whose targets precede it). The
coverage of each level in ``gate.coverage_levels`` is the share of the test points inside the interval.
Writes ``bench/results/calibration_validation.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline_code.engine.evaluation import backtest_candidate, backtest_origins
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.preprocess import preprocess

from .accuracy_bench import machine, versions
from .selection_validation_bench import RESULTS, SERIES, _cached, load

COMMAND = ".venv/bin/python -m bench.calibration_validation_bench"


def coverage_of(name: str, cache: Path) -> dict:
    """The default choice's backtest coverage (and MASE) on one series of the suite."""
    meta, _ = _cached(cache, name)
    series, settings, _ = load(name)
    origins = backtest_origins(len(series), horizon=settings.data.horizon, origins=SERIES[name][3])
    target = preprocess(series, settings.data.season_length, settings.preprocess).counterfactual
    started = time.perf_counter()
    result = backtest_candidate({False: series.values, True: target}, target, meta["engine_choice"],
                                Context.from_settings(settings, jobs=1), origins=origins,
                                levels=settings.gate.coverage_levels, name=name, step=settings.cv.step)
    return {"series": name, "freq": settings.data.freq, "origins": int(origins.size),
            "points": int(result.actual.size), "seconds": time.perf_counter() - started, **result.metrics()}


def markdown(rows: list[dict], levels: list[str], command: str) -> str:
    lines = [
        "# Interval calibration on the selection validation suite",
        "",
        f"- Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Command: `{command}` (from the repository root)",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        "- Protocol: see the module docstring of `bench/calibration_validation_bench.py` (the engine's default"
        " choice per series, backtested with its calibrated intervals at the suite's test origins).",
        "",
        "## Summary",
        "",
        "| level | mean coverage | pooled coverage | median | series below nominal - 0.05 | above nominal + 0.03 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    points = np.array([r["points"] for r in rows], float)
    for key in levels:
        nominal = int(key.rsplit("_", 1)[1]) / 100
        values = np.array([r[key] for r in rows])
        lines.append(f"| {nominal:.2f} | {values.mean():.3f} | {np.average(values, weights=points):.3f} | "
                     f"{np.median(values):.3f} | {int((values < nominal - 0.05).sum())} of {len(rows)} | "
                     f"{int((values > nominal + 0.03).sum())} of {len(rows)} |")
    lines += ["", "## Per series", "", "| series | freq | origins | MASE | " + " | ".join(
        f"cover {k.rsplit('_', 1)[1]}%" for k in levels) + " | seconds |",
        "|---|---|---:|---:|" + "---:|" * len(levels) + "---:|"]
    for r in rows:
        lines.append(f"| {r['series']} | {r['freq']} | {r['origins']} | {r['mase']:.4f} | "
                     + " | ".join(f"{r[k]:.3f}" for k in levels) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/selection_validation"),
                        help="the selection validation bench's cache (its --cache)")
    parser.add_argument("--jobs", type=int, default=2, help="series backtested at once")
    parser.add_argument("--series", nargs="*", default=list(SERIES))
    parser.add_argument("--name", default="calibration_validation")
    args = parser.parse_args(argv)
    missing = [name for name in args.series if not (args.cache / f"{name}.json").is_file()]
    if missing:
        parser.error(f"no cached choice of {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} under"
                     f" {args.cache}: run `python -m bench.selection_validation_bench --cache {args.cache}` first")
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(coverage_of, args.series, [args.cache] * len(args.series)))
    for r in rows:
        print(f"{r['series']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("coverage")),
              file=sys.stderr)
    levels = sorted(k for k in rows[0] if k.startswith("coverage_"))
    command = COMMAND + (f" --jobs {args.jobs}" if args.jobs != 2 else "")
    (RESULTS / f"{args.name}.md").write_text(markdown(rows, levels, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
