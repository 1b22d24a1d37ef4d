"""Cost of `forecast-mlops pipeline run` against the length of the input: a 1,355-row and a
5,000-row synthetic weekly series: CPU time (the run and its workers: steady on a busy machine, unlike
wall time), wall time, and peak memory of the whole process tree (summed RSS sampled every 0.1 s from
/proc; Linux only).

Run: python -m bench.rows_bench [--rows 1355 5000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .machine import header, write_table

COMMAND = "python -m bench.rows_bench"
LAST = date(2025, 1, 3)  # a Friday: the series ends here, whatever its length


def synthetic_weekly(path: Path, rows: int, seed: int = 7) -> Path:
    """A gasoline-like weekly series: trend, a yearly season, AR(1) noise, no break."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    noise = np.zeros(rows)
    for i in range(1, rows):
        noise[i] = 0.6 * noise[i - 1] + rng.normal(0, 0.02)
    values = 8000 * np.exp(0.00005 * t + 0.05 * np.sin(2 * np.pi * t / (365.25 / 7)) + noise)
    first = LAST - timedelta(weeks=rows - 1)
    path.write_text("timestamp,value\n" + "".join(
        f"{first + timedelta(weeks=i)},{v:.2f}\n" for i, v in enumerate(values)))
    return path


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(rows: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="fm-rows-"))
    try:
        data = synthetic_weekly(root / f"weekly-{rows}.csv", rows)
        command = [sys.executable, "-m", "pipeline_code.cli.main", "pipeline", "run", "--data", str(data),
                   "--workdir", str(root / "work"), "--no-serve", "--quiet"]
        cpu_before = _children_cpu()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = [0]

        def sample() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], _tree_rss(process.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, err = process.communicate(timeout=1800)
        seconds = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before  # the run and its workers (each waited for by its parent)
        sampler.join()
        if process.returncode:
            raise RuntimeError(f"pipeline run on {rows} rows failed: {err.decode()[-2000:]}")
        run = json.loads(next((root / "work" / "runs").glob("*/run.json")).read_text())
        tuning = json.loads(next((root / "work" / "runs").glob("*/reports/tuning.json")).read_text())
        return {"rows": rows, "seconds": seconds, "cpu": cpu, "peak_mb": peak[0] / 2**20,
                "tune_seconds": run["timings"]["tune"], "splits": tuning["splits_per_candidate"]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1355, 5000])
    args = parser.parse_args()
    results = [one_run(rows) for rows in args.rows]
    lines = [header("Pipeline run cost against input length", COMMAND), "",
             "`forecast-mlops pipeline run --no-serve --quiet` with default settings on synthetic weekly"
             " series (trend, yearly season, AR(1) noise). Peak memory: the run and its tuning workers"
             " together.", "",
             "| rows | CPU time | wall time | stage `tune` | CV splits per candidate | peak memory |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['rows']} | {r['cpu']:.1f} s | {r['seconds']:.1f} s | {r['tune_seconds']:.1f} s |"
              f" {r['splits']} | {r['peak_mb']:.0f} MB |" for r in results]
    write_table("rows.md", lines)


if __name__ == "__main__":
    main()
