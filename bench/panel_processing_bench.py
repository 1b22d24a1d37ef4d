"""Panel processing: the preprocess stage of a panel upload (``pipeline.panel_stages.process_panel``:
validate, the outlier and break rules per series, the train/test shards and the report) as the number
of series grows, with the per-series rules on and off.

Run from the repository root::

    .venv/bin/python -m bench.panel_processing_bench                       # 250 and 1000 series, 2 jobs
    .venv/bin/python -m bench.panel_processing_bench --sizes 1000 --jobs 1 2

Synthetic monthly panels (``bench/panel_data.py``: 120..240 months per series), the run document as
the local runner resolves it from the file, ``series.instances`` 4. Measured: wall seconds of the
stage, CPU seconds (the process and its workers: the load-independent figure on a shared machine) and
CPU milliseconds per series. Writes ``bench/results/panel_processing.md``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from .machine import header, write_table
from .panel_data import synthetic_rows, write_long_csv

COMMAND = ".venv/bin/python -m bench.panel_processing_bench"


def _cpu() -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def measure(size: int, jobs: int, preprocess: bool, folder: Path) -> dict:
    from pipeline_code.engine.profile import profile_csv
    from pipeline_code.engine.settings import resolve
    from pipeline_code.pipeline.panel_stages import process_panel

    data = write_long_csv(folder / f"panel-{size}.csv", synthetic_rows(size))
    profile = profile_csv(data.read_bytes())
    settings = resolve([("bench", {"series": {"instances": 4, "preprocess": preprocess}})],
                       timestamps=profile.timestamps, observations=profile.observations).settings
    cpu, wall = _cpu(), time.perf_counter()
    report = process_panel(data, folder / f"out-{size}-{jobs}-{preprocess}", settings, jobs=jobs)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {"series": report["series"], "rows": report["observations"], "jobs": jobs, "preprocess": preprocess,
            "wall": wall, "cpu": cpu, "outliers": report["outliers"].get("count", len(report["outliers"]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="panel_processing_bench", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2])
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for jobs in args.jobs:
                for preprocess in (True, False):
                    rows.append(measure(size, jobs, preprocess, Path(tmp)))
    command = COMMAND + (" " + " ".join(argv) if argv else "")
    lines = [header("Panel processing stage (validate, per-series rules, shards, report)", command), "",
             "| series | rows | jobs | per-series rules | wall s | CPU s | CPU ms per series | series with outliers |",
             "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['series']:,} | {r['rows']:,} | {r['jobs']} | {'on' if r['preprocess'] else 'off'} |"
                     f" {r['wall']:.1f} | {r['cpu']:.1f} | {1000 * r['cpu'] / r['series']:.0f} | {r['outliers']} |")
    lines += ["", "CPU seconds include the worker processes (the stage spreads the per-series rules over "
              "`jobs`); with the rules off the stage validates, splits and writes the shards only."]
    write_table("panel_processing.md", lines)


if __name__ == "__main__":
    main()
