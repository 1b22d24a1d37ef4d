"""The local pipeline end to end, after install: `forecast-mlops demo --once` in a fresh work folder
(validate, preprocess, the full tuning over every model family, evaluate, gate, register, serve, one
forecast through the API-key gateway), timed as a whole and per stage, with each family's cost per
CV split (from the run's tuning report).

Run: python -m bench.pipeline_bench [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .machine import header, write_table

COMMAND = "python -m bench.pipeline_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run() -> tuple[float, dict[str, float], dict[str, float]]:
    workdir = Path(tempfile.mkdtemp(prefix="fm-bench-"))
    try:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pipeline_code.cli.main", "demo", "--once", "--quiet",
             "--workdir", str(workdir), "--port", str(free_port())],
            check=True, capture_output=True, text=True, timeout=1800,
        )
        total = time.perf_counter() - started
        run_json = next((workdir / "runs").glob("*/run.json"))
        tuning = json.loads((run_json.parent / "reports" / "tuning.json").read_text())
        return total, json.loads(run_json.read_text())["timings"], tuning["seconds_per_split"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [one_run() for _ in range(args.runs)]
    totals = [t for t, _, _ in results]
    stages = list(results[0][1])
    lines = [header("Local pipeline, end to end", COMMAND), "",
             "`forecast-mlops demo --once` on the bundled series (1355 weeks): every stage, then the"
             " approved model served on localhost and one forecast requested through the API-key"
             " gateway. Python start-up and imports included.", "",
             "| measure | median | runs | goal |", "| --- | --- | --- | --- |",
             f"| whole demo, wall time | {np.median(totals):.1f} s | {', '.join(f'{t:.1f}' for t in totals)}"
             " | <= 180 s |"]
    for stage in stages:
        values = [timings[stage] for _, timings, _ in results]
        lines.append(f"| stage `{stage}` | {np.median(values):.2f} s | {', '.join(f'{v:.2f}' for v in values)} | |")
    lines += ["", "Cost per CV split of each family during tuning (one worker; a candidate's seconds / its"
              " splits, averaged over the family's candidates):", "",
              "| family | seconds per split (median over runs) |", "| --- | --- |"]
    for family in results[0][2]:
        lines.append(f"| {family} | {np.median([r[2][family] for r in results]):.4f} |")
    write_table("pipeline.md", lines)


if __name__ == "__main__":
    main()
