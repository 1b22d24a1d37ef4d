"""Soak benchmark: the local gateway (`forecast-mlops serve --api-key-file`) under a mix of valid clients,
invalid requests and slow or half-open connections, for ``--seconds`` (default 600) on loopback.

    python -m bench.soak_bench [--seconds 600] [--out bench/results/soak.md]

The server runs with its default limits (10 s request timeout, 16 KiB heads, 1,000 connections) and a
usage plan of 20 requests/s with a burst of 40 per key. The load, from this process (asyncio):

* valid: 4 keep-alive clients on ``POST /forecast`` (10 requests/s each) and 2 clients opening a
  connection per ``POST /invocations`` (5/s each), each with its own key, under its plan, and 1
  ``GET /ping`` client (1/s); every answer must be a 200 with the requested number of forecasts
  (anything else is an error);
* invalid: bad JSON, out-of-range fields, wrong/missing/duplicate keys, a 20 KiB body, a wrong
  content type, unknown routes, a garbage request line, and one key sending past its plan (429);
  each must get its 4xx, never a 5xx;
* hostile: 500 slowloris connections (a head trickled a header every 2 s), 600 silent connections
  (1,100 together, past the connection cap, as the issue's attack), connections that send half a
  request and then FIN or RST, and 64 KiB heads; all reconnect when the server drops them. The
  attackers open their connections over the first 5 s; the other clients start 2 s later.

Every ``--sample`` seconds the server's RSS, open descriptors, CPU and log size are sampled. Results:
bench/results/soak.md (table) and soak.json (every sample). Goals: 0 errors for valid clients; RSS
flat within 10% after the warm-up (the first quarter of the run, at most 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.serving_bench import free_port, stop, wait_ping

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.md"
DATA = ROOT / "pipeline_code" / "data" / "us_gasoline.csv"
RATE, BURST = 20, 40  # the usage plan, per key
SLOWLORIS, SILENT = 500, 600
RAMP_UP = 5.0  # seconds over which the attackers open their connections; the other clients start after
REPLY_TIMEOUT = 15.0  # a valid request's answer must come within this (else an error)


# --- the server ---------------------------------------------------------------------------------------

def start_server(model: Path, key_file: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipeline_code.serving.cli", "serve", "--model", str(model),
               "--api-key-file", str(key_file), "--rate-limit", str(RATE), "--burst", str(BURST), "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def sample(pid: int, log: Path, began: float) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {"t": round(time.monotonic() - began, 1), "rss_mb": round(rss_kb / 1024, 1),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": round(cpu, 2), "log_bytes": log.stat().st_size}


# --- HTTP on raw streams --------------------------------------------------------------------------------

def request(method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: soak"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def forecast_request(path: str, key: str, periods: int, conf: float) -> bytes:
    body = json.dumps({"periods": periods, "conf": conf}).encode()
    return request("POST", path, body, (("content-type", "application/json"), ("x-api-key", key)))


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return status, await reader.readexactly(length)


async def open_connection(port: int):
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), REPLY_TIMEOUT)


def close(writer) -> None:
    if writer is not None:
        writer.close()


class Tally:
    """Counts per category: requests, errors (with the first few reasons), statuses, latencies."""

    def __init__(self) -> None:
        self.requests = collections.Counter()
        self.errors = collections.Counter()
        self.reasons: dict[str, list[str]] = collections.defaultdict(list)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latencies: list[float] = []
        self.events = collections.Counter()

    def record(self, category: str, ok: bool, status: int | str, reason: str = "") -> None:
        self.requests[category] += 1
        self.statuses[category][str(status)] += 1
        if not ok:
            self.errors[category] += 1
            if len(self.reasons[category]) < 5:
                self.reasons[category].append(reason or str(status))


# --- valid clients ---------------------------------------------------------------------------------------

async def valid_keep_alive(port: int, key: str, tally: Tally, stop: asyncio.Event, seed: int) -> None:
    rng, reader, writer = random.Random(seed), None, None
    while not stop.is_set():
        periods, conf = rng.randint(1, 104), rng.choice((0.5, 0.8, 0.9, 0.95, 0.99))
        began = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await open_connection(port)
            status, body = await asyncio.wait_for(
                exchange(reader, writer, forecast_request("/forecast", key, periods, conf)), REPLY_TIMEOUT)
            ok = status == 200 and len(json.loads(body)["forecasts"]) == periods
            tally.record("valid: POST /forecast, keep-alive", ok, status, body[:120].decode(errors="replace"))
            tally.latencies.append(time.perf_counter() - began)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
            tally.record("valid: POST /forecast, keep-alive", False, type(err).__name__, repr(err))
            close(writer)
            reader = writer = None
        await asyncio.sleep(0.1)
    close(writer)


async def valid_new_connections(port: int, key: str, tally: Tally, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        periods = rng.randint(1, 104)
        writer = None
        began = time.perf_counter()
        try:
            reader, writer = await open_connection(port)
            status, body = await asyncio.wait_for(
                exchange(reader, writer, forecast_request("/invocations", key, periods, 0.9)), REPLY_TIMEOUT)
            ok = status == 200 and len(json.loads(body)["forecasts"]) == periods
            tally.record("valid: POST /invocations, a connection each", ok, status, body[:120].decode(errors="replace"))
            tally.latencies.append(time.perf_counter() - began)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
            tally.record("valid: POST /invocations, a connection each", False, type(err).__name__, repr(err))
        finally:
            close(writer)
        await asyncio.sleep(0.2)


async def valid_ping(port: int, tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await open_connection(port)
            status, body = await asyncio.wait_for(exchange(reader, writer, request("GET", "/ping")), REPLY_TIMEOUT)
            tally.record("valid: GET /ping", status == 200, status, body[:120].decode(errors="replace"))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
            tally.record("valid: GET /ping", False, type(err).__name__, repr(err))
        finally:
            close(writer)
        await asyncio.sleep(1.0)


# --- invalid requests --------------------------------------------------------------------------------------

def invalid_requests(key: str) -> list[tuple[str, bytes, set[int]]]:
    json_type = ("content-type", "application/json")
    good = json.dumps({"periods": 3, "conf": 0.9}).encode()
    return [
        ("bad JSON", request("POST", "/forecast", b"{periods: 3", (json_type, ("x-api-key", key))), {400}),
        ("periods 0", request("POST", "/forecast", b'{"periods": 0, "conf": 0.9}', (json_type, ("x-api-key", key))),
         {400}),
        ("conf 1.5", request("POST", "/forecast", b'{"periods": 3, "conf": 1.5}', (json_type, ("x-api-key", key))),
         {400}),
        ("unknown field", request("POST", "/forecast", b'{"periods": 3, "conf": 0.9, "x": 1}',
                                  (json_type, ("x-api-key", key))), {400}),
        ("20 KiB body", request("POST", "/forecast", b" " * 20480 + good, (json_type, ("x-api-key", key))), {413}),
        ("text/plain", request("POST", "/forecast", good, (("content-type", "text/plain"), ("x-api-key", key))),
         {415}),
        ("no key", request("POST", "/forecast", good, (json_type,)), {403}),
        ("wrong key", request("POST", "/invocations", good, (json_type, ("x-api-key", "fmk_wrong"))), {403}),
        ("two keys", request("POST", "/forecast", good, (json_type, ("x-api-key", key), ("x-api-key", key))),
         {400}),
        ("unknown route", request("GET", "/admin"), {404}),
        ("wrong method", request("GET", "/forecast"), {405}),
        ("garbage request line", b"\x16\x03\x01 nonsense\r\n\r\n", {400}),
    ]


async def invalid_client(port: int, key: str, tally: Tally, stop: asyncio.Event, seed: int) -> None:
    rng, cases = random.Random(seed), invalid_requests(key)
    while not stop.is_set():
        name, raw, expected = rng.choice(cases)
        writer = None
        try:
            reader, writer = await open_connection(port)
            status, _ = await asyncio.wait_for(exchange(reader, writer, raw), REPLY_TIMEOUT)
            tally.record("invalid requests", status in expected, status, f"{name}: {status}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
            tally.record("invalid requests", False, type(err).__name__, f"{name}: {err!r}")
        finally:
            close(writer)
        await asyncio.sleep(0.05)


async def over_the_plan(port: int, key: str, tally: Tally, stop: asyncio.Event) -> None:
    """One key sending ~50 requests/s against its plan of 20/s: the excess gets 429."""
    reader = writer = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await open_connection(port)
            status, _ = await asyncio.wait_for(
                exchange(reader, writer, forecast_request("/forecast", key, 3, 0.9)), REPLY_TIMEOUT)
            tally.record("over the plan (one key, ~50/s)", status in (200, 429), status)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
            tally.record("over the plan (one key, ~50/s)", False, type(err).__name__, repr(err))
            close(writer)
            reader = writer = None
        await asyncio.sleep(0.02)
    close(writer)


# --- hostile connections -------------------------------------------------------------------------------------

async def until_dropped(reader: asyncio.StreamReader, tally: Tally, kind: str, trickle=None) -> None:
    """Wait until the server answers or drops the connection, trickling bytes every 2 s if asked."""
    while True:
        try:
            data = await asyncio.wait_for(reader.read(4096), 2.0)
        except asyncio.TimeoutError:
            if trickle is not None:
                trickle.write(b"x-slow: 1\r\n")
            continue
        except OSError:
            tally.events[f"{kind}: reset by the server (shed at the cap)"] += 1
            return
        if data.startswith(b"HTTP/1.1 "):
            tally.events[f"{kind}: answered {data[9:12].decode()}"] += 1
        else:
            tally.events[f"{kind}: closed by the server"] += 1
        return


async def hold(port: int, tally: Tally, stop: asyncio.Event, kind: str, seed: int) -> None:
    """One attacker connection, reopened (after 0.5-1.5 s) whenever the server drops it."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, RAMP_UP))
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await open_connection(port)
            tally.events[f"{kind}: opened"] += 1
            if kind == "slowloris":
                writer.write(b"POST /forecast HTTP/1.1\r\nhost: soak\r\n")
            await until_dropped(reader, tally, kind, writer if kind == "slowloris" else None)
        except (OSError, asyncio.TimeoutError):
            tally.events[f"{kind}: connect failed"] += 1
        finally:
            close(writer)
        await asyncio.sleep(rng.uniform(0.5, 1.5))


async def half_open(port: int, tally: Tally, stop: asyncio.Event) -> None:
    """Half a request, then FIN (write side closed) or RST (SO_LINGER 0), never reading the answer."""
    rng = random.Random(7)
    while not stop.is_set():
        writer = None
        try:
            _, writer = await open_connection(port)
            writer.write(b"POST /forecast HTTP/1.1\r\nhost: soak\r\ncontent-length: 100\r\n\r\n{\"periods\"")
            await writer.drain()
            if rng.random() < 0.5:
                writer.write_eof()
                tally.events["half-open: FIN after half a request"] += 1
            else:
                linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends RST
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                tally.events["half-open: RST after half a request"] += 1
        except (OSError, asyncio.TimeoutError):
            tally.events["half-open: connect failed"] += 1
        finally:
            close(writer)
        await asyncio.sleep(0.2)


async def oversized_heads(port: int, tally: Tally, stop: asyncio.Event) -> None:
    line = b"x-filler: " + b"a" * 4000 + b"\r\n"
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await open_connection(port)
            writer.write(b"GET /ping HTTP/1.1\r\nhost: soak\r\n")
            for _ in range(16):  # 64 KiB
                writer.write(line)
                await writer.drain()
            await until_dropped(reader, tally, "64 KiB head")
        except (OSError, asyncio.TimeoutError):
            tally.events["64 KiB head: reset while sending"] += 1
        finally:
            close(writer)
        await asyncio.sleep(1.0)


# --- the run -------------------------------------------------------------------------------------------------

async def after_ramp_up(coro):
    """Start a client once the attack is in place (the attackers open their connections over RAMP_UP s)."""
    await asyncio.sleep(RAMP_UP + 2)
    await coro


async def soak(port: int, pid: int, keys: list[str], seconds: float, every: float, log: Path) -> tuple[Tally, list]:
    tally, stop, samples, began = Tally(), asyncio.Event(), [], time.monotonic()
    attack = [
        *(hold(port, tally, stop, "slowloris", i) for i in range(SLOWLORIS)),
        *(hold(port, tally, stop, "silent", SLOWLORIS + i) for i in range(SILENT)),
        half_open(port, tally, stop),
        oversized_heads(port, tally, stop),
    ]
    tasks = [asyncio.create_task(coro) for coro in attack] + [asyncio.create_task(after_ramp_up(coro)) for coro in (
        *(valid_keep_alive(port, keys[i], tally, stop, i) for i in range(4)),
        *(valid_new_connections(port, keys[4 + i], tally, stop, 10 + i) for i in range(2)),
        valid_ping(port, tally, stop),
        *(invalid_client(port, keys[7], tally, stop, 20 + i) for i in range(2)),
        over_the_plan(port, keys[6], tally, stop),
    )]
    while time.monotonic() - began < seconds:
        samples.append(sample(pid, log, began))
        print(json.dumps(samples[-1]), flush=True)
        await asyncio.sleep(min(every, max(0.0, seconds - (time.monotonic() - began))))
    samples.append(sample(pid, log, began))
    stop.set()
    await asyncio.wait(tasks, timeout=REPLY_TIMEOUT + 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally, samples


def log_stats(log: Path) -> dict:
    lines = suppressed = 0
    for line in log.read_text(errors="replace").splitlines():
        lines += 1
        try:
            suppressed += int(json.loads(line).get("suppressed", 0))
        except ValueError:
            pass
    return {"lines": lines, "suppressed": suppressed, "bytes": log.stat().st_size}


def summarize(tally: Tally, samples: list[dict], seconds: float) -> dict:
    warm = min(60.0, seconds / 4)
    after = [s for s in samples if s["t"] >= warm] or samples[-1:]
    baseline = after[0]["rss_mb"]
    peak = max(s["rss_mb"] for s in after)
    valid = {c: n for c, n in tally.requests.items() if c.startswith("valid")}
    ordered = sorted(tally.latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000 if ordered else float("nan")

    return {
        "warm_up_s": warm, "rss_baseline_mb": baseline, "rss_peak_mb": peak, "rss_end_mb": samples[-1]["rss_mb"],
        "rss_growth": peak / baseline - 1, "rss_end_growth": samples[-1]["rss_mb"] / baseline - 1,
        "fds_peak": max(s["fds"] for s in samples), "server_cpu_s": samples[-1]["cpu_s"] - samples[0]["cpu_s"],
        "valid_requests": sum(valid.values()), "valid_errors": sum(tally.errors[c] for c in valid),
        "valid_p50_ms": pct(0.5), "valid_p99_ms": pct(0.99),
        "requests": dict(tally.requests), "errors": dict(tally.errors), "reasons": dict(tally.reasons),
        "statuses": {c: dict(s) for c, s in tally.statuses.items()}, "events": dict(sorted(tally.events.items())),
    }


def table(summary: dict, logs: dict, samples: list[dict], seconds: float, command: str, loads: tuple) -> str:
    from bench.machine import header

    s = summary
    rows = [
        ("valid requests (errors)", f"{s['valid_requests']} ({s['valid_errors']})", "0 errors"),
        ("valid latency p50 / p99 (answer within 15 s, else an error)",
         f"{s['valid_p50_ms']:.1f} / {s['valid_p99_ms']:.1f} ms", ""),
        (f"server RSS after the warm-up ({s['warm_up_s']:.0f} s) / peak / end",
         f"{s['rss_baseline_mb']:.1f} / {s['rss_peak_mb']:.1f} / {s['rss_end_mb']:.1f} MB", ""),
        ("RSS growth after the warm-up: peak / end", f"{s['rss_growth']:+.1%} / {s['rss_end_growth']:+.1%}",
         "within 10%"),
        ("server open descriptors, peak", str(s["fds_peak"]), "below the cap + 2 x backlog + 64 = 1576"),
        ("server CPU", f"{s['server_cpu_s']:.0f} s in {seconds:.0f} s", ""),
        ("server log: lines / bytes / lines suppressed by the rate limit",
         f"{logs['lines']} / {logs['bytes'] / 1e6:.1f} MB / {logs['suppressed']}", ""),
    ]
    out = [header("Soak: the local gateway under valid, invalid and hostile clients", command), ""]
    out.append(f"Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f} on {os.cpu_count()} cores "
               "(other work on the machine competes with the server and this load generator).\n")
    out.append("\n\n".join(__doc__.split("\n\n")[2:4]) + "\n")
    out += ["| measure | value | goal |", "| --- | --- | --- |"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    out += ["", "Requests by client and status (errors: any answer other than the expected one):", "",
            "| client | requests | statuses | errors |", "| --- | --- | --- | --- |"]
    for category in sorted(s["requests"]):
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"][category].items()))
        out.append(f"| {category} | {s['requests'][category]} | {statuses} | {s['errors'].get(category, 0)} |")
    if any(s["reasons"].values()):
        out += ["", "First error reasons: " + json.dumps(s["reasons"])]
    out += ["", "Hostile connections (what the server did to them):", "", "| event | count |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in s["events"].items()]
    step = max(1, len(samples) // 20)
    out += ["", "Server over time (every sample in soak.json):", "", "| t (s) | RSS (MB) | open fds | CPU (s) | log (MB) |",
            "| --- | --- | --- | --- | --- |"]
    for row in [*samples[::step], *([samples[-1]] if (len(samples) - 1) % step else [])]:
        out.append(f"| {row['t']:.0f} | {row['rss_mb']:.1f} | {row['fds']} | {row['cpu_s']:.1f} | "
                   f"{row['log_bytes'] / 1e6:.2f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to soak (default 600)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between server samples (default 10)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the .md table (the .json beside it)")
    args = parser.parse_args(argv)

    from pipeline_code.engine.core.spec import ModelSpec
    from pipeline_code.engine.dataset import load_series
    from pipeline_code.engine.estimator import HarmonicArimaForecaster
    from pipeline_code.serving.gateway import KeyStore

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the attack needs ~1,200 sockets here
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    loads = [os.getloadavg()[0]]
    work = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    process = None
    try:
        model = work / "model"
        HarmonicArimaForecaster(ModelSpec(fourier_k=3), window=200, horizon=26).fit(
            load_series(DATA, freq="W-FRI")).artifact.save(model)
        store, first = KeyStore.open_or_create(work / "keys.json")
        keys = [first.key, *(store.issue().key for _ in range(7))]  # 6 valid, 1 over its plan, 1 invalid
        port, log = free_port(), work / "server.log"
        process = start_server(model, work / "keys.json", port, log)
        wait_ping(port, process)
        tally, samples = asyncio.run(soak(port, process.pid, keys, args.seconds, args.sample, log))
        alive = process.poll() is None
    finally:
        if process is not None:
            stop(process)
    try:
        logs = log_stats(work / "server.log")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    summary = summarize(tally, samples, args.seconds)
    summary["server_alive_at_end"] = alive
    command = "python -m bench.soak_bench" + ("" if args.seconds == 600 else f" --seconds {args.seconds:g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(summary, logs, samples, args.seconds, command, tuple(loads)))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "seconds": args.seconds, "summary": summary, "log": logs, "samples": samples},
        indent=1, default=str) + "\n")
    print(args.out.read_text())
    return 0 if summary["valid_errors"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
