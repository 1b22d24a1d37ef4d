"""Machine facts for benchmark tables: cores, CPU model, Python, date."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(title: str, command: str) -> str:
    """The lines every results table starts with."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {title}\n\n"
        f"- machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()},"
        f" {platform.system()} {platform.machine()}\n"
        f"- date: {now}\n"
        f"- command: `{command}`\n"
    )


def write_table(name: str, lines: list[str]) -> None:
    """Close a results table with the load average (a shared machine: seconds are indicative), then
    write it to bench/results/<name> and print it."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    lines = [*lines, "", f"Load average after the runs: {load} (a shared machine: seconds are indicative).", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text("\n".join(lines))
    print("\n".join(lines))
