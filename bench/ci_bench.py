"""The README's test command as CI runs it: a fresh clone of the committed HEAD, every environment
built from nothing, then `.ci/run` (`make test`). CI's budget for the whole is 10 minutes on 2 cores.

Timed in two parts, so the table says where the time goes: `make install` (the project's venv with its
bytecode, the pinned CDK CLI, checkov's venv; built side by side), then `bash .ci/run` (which finds
the environments built, compiles the project's own modules and runs pytest). Uncommitted changes are
not in the clone.

Run: python -m bench.ci_bench [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .machine import header, write_table

COMMAND = "python -m bench.ci_bench"
REPO = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 600
_SUMMARY = re.compile(r"=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s")


def pytest_summary(output: str) -> tuple[str, float]:
    """The counts ("1076 passed, 2 skipped") and seconds of pytest's last summary line."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        raise ValueError("no pytest summary line in the output")
    return found[-1]["counts"], float(found[-1]["seconds"])


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-4000:]}")
    return seconds, result.stdout


def one_run(commit: str) -> dict[str, float | str]:
    folder = Path(tempfile.mkdtemp(prefix="fm-ci-bench-"))
    try:
        clone = folder / "ci"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
        install, _ = _timed(["make", "install"], clone)
        run, output = _timed(["bash", ".ci/run"], clone)
        counts, pytest_seconds = pytest_summary(output)
        return {"install": install, "ci_run": run, "pytest": pytest_seconds, "counts": counts}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    runs = [one_run(commit) for _ in range(args.runs)]
    lines = [header("`make test` on a fresh clone, as CI runs it", COMMAND), "",
             f"Commit {commit[:12]}; PYTHONDONTWRITEBYTECODE "
             f"{'set' if os.environ.get('PYTHONDONTWRITEBYTECODE') else 'not set'};"
             f" budget {BUDGET_SECONDS} s for the whole.", "",
             "| run | `make install` | `bash .ci/run` (of which pytest) | total | tests | within budget |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for i, r in enumerate(runs, 1):
        total = r["install"] + r["ci_run"]
        lines.append(f"| {i} | {r['install']:.0f} s | {r['ci_run']:.0f} s ({r['pytest']:.0f} s) | {total:.0f} s"
                     f" | {r['counts']} | {'yes' if total <= BUDGET_SECONDS else '**no**'} |")
    write_table("ci.md", lines)


if __name__ == "__main__":
    main()
