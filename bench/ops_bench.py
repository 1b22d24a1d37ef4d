"""Operating it locally (issue 11's figures), each on real processes:

* watch: ``forecast-mlops watch DIR --serve``; a CSV (the bundled series) and its settings file are
  written into DIR; timed from the CSV's close to the new version being served (``/invocations`` answers
  with it), split into close -> run started (settle + detection + start-up), the run itself, and
  approval -> served (the server's reload);
* rollback: ``forecast-mlops models rollback`` against a running ``serve --model <workdir>/registry``;
  timed from the command's start to the earlier version being served (no restart);
* runs list: ``local_runs`` in-process and ``forecast-mlops runs list`` end to end, on a work folder with
  1,000 runs (copies of a real run's record and evaluation report).

The watch runs use a small search (``--search small``: two families, one Fourier order) unless
``--search default``: the figure is about the watch and the reload, not the tuning, whose cost is in
bench/results/pipeline.md and tuning.md. The load average is recorded: the machine may be shared.

Run: python -m bench.ops_bench [--repeats 3] [--search small|default]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from pipeline_code.pipeline.runs import local_runs, parse_time

from .machine import RESULTS, header

COMMAND = "python -m bench.ops_bench"
BUNDLED = Path(__file__).resolve().parents[1] / "pipeline_code" / "data" / "us_gasoline.csv"
SMALL_SEARCH = {
    "cv": {"window": 260, "step": 8},
    "search": {"fourier_k": [2], "use_counterfactual_data": [1], "detrend": [0],
               "families": ["harmonic_arima", "seasonal_naive"], "selection_splits": 10},
    "gate": {"eval_origins": 8},
}
TIMEOUT = 3600.0
RUNS_IN_FOLDER = 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served_version(port: int, key_file: Path | None = None) -> str | None:
    """The version ``/invocations`` answers with (with the key file's active key when the server has one)."""
    headers = {"content-type": "application/json"}
    if key_file is not None:
        from pipeline_code.serving.gateway import KeyStore

        try:
            headers["x-api-key"] = KeyStore(key_file).active_key().key
        except (OSError, ValueError, AttributeError):
            return None
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=b'{"periods": 1, "conf": 0.8}',
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["model"]["version"]
    except OSError:
        return None


def wait_until(condition, what: str, poll: float = 0.02) -> float:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {TIMEOUT:.0f}s")
        time.sleep(poll)
    return time.time()


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline_code.cli.main", *args], **kwargs)


def watch_once(search: str) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="fm-ops-"))
    folder, workdir, port = root / "drop", root / "work", free_port()
    folder.mkdir()
    lines: list[str] = []
    watch = cli("watch", str(folder), "--workdir", str(workdir), "--serve", "--port", str(port), "--quiet",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True).start()
    try:
        wait_until(lambda: any("watching" in line for line in lines), "watch banner")
        if search == "small":
            (folder / "gasoline.settings.json").write_text(json.dumps(SMALL_SEARCH))
        with (folder / "gasoline.csv").open("w") as handle:
            handle.write(BUNDLED.read_text())
        closed = time.time()
        served = wait_until(lambda: served_version(port, workdir / "api-keys.json") == "v0001", "served v0001",
                            poll=0.05)
        [run] = [r for r in local_runs(workdir) if r.state == "promoted"]
        started = run.started_at.timestamp()
        approved = (workdir / "registry" / "approved.json").stat().st_mtime
        return {"close_to_served": served - closed, "close_to_run_start": started - closed,
                "run": approved - started, "approved_to_served": served - approved}
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def rollback_times(workdir: Path, repeats: int) -> list[float]:
    """Rollbacks back and forth between the two versions of ``workdir``'s registry."""
    port = free_port()
    server = cli("serve", "--model", str(workdir / "registry"), "--port", str(port),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    try:
        wait_until(lambda: served_version(port) == "v0002", "served v0002", poll=0.1)
        for i in range(repeats):
            target = "v0001" if i % 2 == 0 else "v0002"
            started = time.time()
            subprocess.run([sys.executable, "-m", "pipeline_code.cli.main", "models", "rollback", target,
                            "--workdir", str(workdir), "--reason", "bench"], check=True, stdout=subprocess.DEVNULL)
            served = wait_until(lambda: served_version(port) == target, f"served {target}")
            times.append(served - started)
        assert server.poll() is None, "the server restarted"
    finally:
        server.terminate()
        server.wait(timeout=15)
    return times


def two_version_workdir(root: Path) -> Path:
    """A work folder with v0001 (superseded) and v0002 (approved), from one real run."""
    workdir, data = root / "work", root / "gasoline.csv"
    data.write_text(BUNDLED.read_text())
    (root / "gasoline.settings.json").write_text(json.dumps(SMALL_SEARCH))
    subprocess.run([sys.executable, "-m", "pipeline_code.cli.main", "pipeline", "run", "--data", str(data),
                    "--workdir", str(workdir), "--quiet", "--no-serve"], check=True, stdout=subprocess.DEVNULL)
    from pipeline_code.pipeline.registry import APPROVED, LocalRegistry

    registry = LocalRegistry(workdir / "registry")
    registry.register(registry.get("v0001").model_dir, status=APPROVED, run_id="bench", evaluation={})
    return workdir


def runs_list_times(workdir: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Fill the work folder up to 1,000 runs with copies of its real run, then time the listing."""
    [real] = [p for p in (workdir / "runs").iterdir() if p.is_dir()]
    record = json.loads((real / "run.json").read_text())
    evaluation = real / "reports" / "evaluation" / "evaluation.json"
    begun = parse_time(record["started_at"])
    for i in range(RUNS_IN_FOLDER - 1):
        run_id = f"{begun:%Y%m%dT%H%M%S}{i:06d}Z-{i:08x}"
        copy = workdir / "runs" / run_id
        (copy / "reports" / "evaluation").mkdir(parents=True)
        shutil.copyfile(evaluation, copy / "reports" / "evaluation" / "evaluation.json")
        (copy / "run.json").write_text(json.dumps({**record, "run_id": run_id}))
    assert len(local_runs(workdir)) == RUNS_IN_FOLDER
    in_process, end_to_end = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        local_runs(workdir)
        in_process.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline_code.cli.main", "runs", "list", "--workdir", str(workdir),
                        "--limit", str(RUNS_IN_FOLDER)], check=True, stdout=subprocess.DEVNULL)
        end_to_end.append(time.perf_counter() - started)
    return in_process, end_to_end


def row(name: str, values: list[float], unit: str = "s") -> str:
    shown = ", ".join(f"{v:.2f}" for v in values)
    return f"| {name} | {statistics.median(values):.2f} {unit} | {shown} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search", choices=("small", "default"), default="small")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    watches = [watch_once(args.search) for _ in range(args.repeats)]
    root = Path(tempfile.mkdtemp(prefix="fm-ops-"))
    try:
        workdir = two_version_workdir(root)
        rollbacks = rollback_times(workdir, max(args.repeats, 4))
        in_process, end_to_end = runs_list_times(workdir, max(args.repeats, 5))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()[0]
    keys = ("close_to_served", "close_to_run_start", "run", "approved_to_served")
    results = {"search": args.search, "load_average": [load_before, load_after],
               "watch": {k: [w[k] for w in watches] for k in keys}, "rollback": rollbacks,
               "runs_list": {"runs": RUNS_IN_FOLDER, "in_process": in_process, "end_to_end": end_to_end}}
    (RESULTS / "ops.json").write_text(json.dumps(results, indent=1))
    lines = [
        header("Operating it locally: watch, rollback, runs list", f"{COMMAND} --repeats {args.repeats}"
               f" --search {args.search}"),
        f"- load average (1 min) before/after: {load_before:.1f} / {load_after:.1f} (shared machine: other"
        " work ran at the same time)\n",
        f"Watch folder, bundled series (1355 weeks), {args.search} search; served = `/invocations` of the"
        " watch's own `serve` answers with the new version.\n",
        "| measure | median | runs |", "| --- | --- | --- |",
        row("watch: file closed -> new version served", results["watch"]["close_to_served"]),
        row("  of which: closed -> run started (settle 1 s, events, start-up)", results["watch"]["close_to_run_start"]),
        row("  of which: the run (validate ... register)", results["watch"]["run"]),
        row("  of which: approved -> served (server reload, polls every 2 s)", results["watch"]["approved_to_served"]),
        row("rollback: `models rollback` started -> earlier version served", rollbacks),
        row(f"runs list, {RUNS_IN_FOLDER} runs: `local_runs` in-process", in_process),
        row(f"runs list, {RUNS_IN_FOLDER} runs: `forecast-mlops runs list` (process start included)", end_to_end),
        "",
    ]
    (RESULTS / "ops.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
