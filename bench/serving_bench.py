"""Serving benchmark: this project's serving container vs the original approach, side by side in one run.

    python -m bench.serving_bench [--runs 5] [--skip-size]

* ours: ``python -m pipeline_code.entrypoints.container serve`` (the serving image's entrypoint) on a
  harmonic-ARIMA artifact (JSON + npz) fitted on the bundled series;
* original: an sktime pipeline (Deseasonalizer -> Detrender -> Fourier features + statsforecast AutoARIMA),
  fitted on the same series, saved with joblib, served by an equivalent minimal FastAPI app (below) that
  joblib-loads it at start-up and answers with ``predict`` + ``predict_interval``.

Measured on loopback, both under uvicorn with the same settings, the load generator in this process:
cold start (process start -> first ``/ping`` 200 with the model loaded; median of ``--runs``), latency of
``POST /invocations`` with periods=26 at 1 and 32 concurrent keep-alive clients (bounded request counts),
requests per second at 32 clients, and the installed size of each serving dependency set (two throwaway
venvs; ``--skip-size`` skips that part, which downloads packages).
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serving.md"
DATA = ROOT / "pipeline_code" / "data" / "us_gasoline.csv"
ORIGINAL_DEPS = ["sktime", "statsforecast", "fastapi", "uvicorn", "joblib"]
PERIODS, CONF = 26, 0.9
TRAIN_POINTS = 400  # the original pipeline's fit window (AutoARIMA on all 1,355 weeks is slow)


# --- the original approach (benchmark-only code) ----------------------------------------------------

def fit_original(path: Path) -> None:
    import warnings

    import joblib
    import pandas as pd
    from sktime.forecasting.compose import ForecastingPipeline, TransformedTargetForecaster
    from sktime.forecasting.statsforecast import StatsForecastAutoARIMA
    from sktime.transformations.series.detrend import Deseasonalizer, Detrender
    from sktime.transformations.series.fourier import FourierFeatures

    warnings.filterwarnings("ignore")
    frame = pd.read_csv(DATA, parse_dates=["timestamp"])
    y = pd.Series(frame["value"].to_numpy(float), index=pd.PeriodIndex(frame["timestamp"], freq="W-FRI"))
    forecaster = TransformedTargetForecaster([
        ("deseasonalize", Deseasonalizer(sp=52)),
        ("detrend", Detrender()),
        ("forecast", ForecastingPipeline([
            ("fourier", FourierFeatures(sp_list=[365.25 / 7], fourier_terms_list=[3], freq="W-FRI")),
            ("arima", StatsForecastAutoARIMA(seasonal=False)),
        ])),
    ])
    forecaster.fit(y.iloc[-TRAIN_POINTS:])
    joblib.dump(forecaster, path)


def original_app(model_path: str):
    """The original serving app: joblib.load at start-up, predict + predict_interval per request."""
    from contextlib import asynccontextmanager

    import joblib
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    state = {}

    @asynccontextmanager
    async def lifespan(app):
        import warnings

        warnings.filterwarnings("ignore")
        state["model"] = joblib.load(model_path)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping():
        return JSONResponse({"status": "ok"} if "model" in state else {}, status_code=200 if "model" in state else 503)

    @app.post("/invocations")
    async def invocations(request: Request):
        body = await request.json()
        periods, conf = int(body["periods"]), float(body["conf"])
        model = state["model"]
        fh = list(range(1, periods + 1))
        mean = model.predict(fh)
        interval = model.predict_interval(fh, coverage=conf)
        lower = interval.iloc[:, 0].to_numpy()
        upper = interval.iloc[:, 1].to_numpy()
        forecasts = [
            {"timestamp": str(ts.end_time.date()), "mean": float(m), "lower": float(lo), "upper": float(hi)}
            for ts, m, lo, hi in zip(mean.index, mean.to_numpy(), lower, upper)
        ]
        return JSONResponse({"conf": conf, "forecasts": forecasts})

    return app


def serve_original(model_path: str, port: int) -> None:
    import uvicorn

    uvicorn.run(original_app(model_path), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="on")


# --- measuring ---------------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(kind: str, model: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kind == "ours":
        command = [sys.executable, "-m", "pipeline_code.entrypoints.container", "serve"]
        env.update(FORECAST_MLOPS_ML_ROOT=str(model.parent), SAGEMAKER_BIND_TO_PORT=str(port))
    else:
        command = [sys.executable, "-m", "bench.serving_bench", "--serve-original", str(model), "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ping(port: int, process: subprocess.Popen, deadline: float = 120.0) -> float:
    """Seconds from now until /ping answers 200."""
    start_time = time.perf_counter()
    while time.perf_counter() - start_time < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - start_time
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("server did not become ready")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cold_start(kind: str, model: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        port = free_port()
        began = time.perf_counter()
        process = start(kind, model, port)
        try:
            wait_ping(port, process)
            times.append(time.perf_counter() - began)
        finally:
            stop(process)
    return times


async def _client(port: int, count: int, latencies: list[float], errors: list[int]) -> None:
    body = json.dumps({"periods": PERIODS, "conf": CONF}).encode()
    request = (b"POST /invocations HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
               b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            began = time.perf_counter()
            status, payload = await round_trip(reader, writer, request)
            latencies.append(time.perf_counter() - began)
            if status != 200 or len(json.loads(payload)["forecasts"]) != PERIODS:
                errors.append(1)
    finally:
        writer.close()


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on a keep-alive connection; the status and the body of its answer."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, concurrency: int, per_client: int, pid: int | None = None) -> dict:
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        began = time.perf_counter()
        await asyncio.gather(*(_client(port, per_client, latencies, errors) for _ in range(concurrency)))
        return time.perf_counter() - began

    cpu_before = cpu_seconds(pid) if pid else 0.0
    wall = asyncio.run(main())
    cpu = (cpu_seconds(pid) - cpu_before) if pid else float("nan")
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {"requests": len(latencies), "errors": len(errors), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "rps": len(latencies) / wall, "server_cpu_ms": cpu / max(1, len(latencies)) * 1000}


def latency(kind: str, model: Path, requests: dict[int, int]) -> dict[int, dict]:
    port = free_port()
    process = start(kind, model, port)
    try:
        wait_ping(port, process)
        load(port, 4, 25)  # warm-up
        return {c: load(port, c, max(1, n // c), process.pid) for c, n in requests.items()}
    finally:
        stop(process)


def site_packages_size(packages: list[str], workdir: Path, name: str) -> tuple[int, list[str]]:
    """Bytes installed by ``packages`` into a fresh venv (its site-packages minus the empty venv's)."""
    venv = workdir / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    base = du(site)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", *packages],
                   check=True)
    frozen = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True)
    return du(site) - base, frozen.stdout.split()


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def serve_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["serve"]]


def package_size() -> int:
    return sum(p.stat().st_size for p in (ROOT / "pipeline_code").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts)


# --- the table ----------------------------------------------------------------------------------------

def better(ours: float, original: float, lower_is_better: bool = True) -> str:
    """How ours compares, e.g. '12.3x lower' / '2.0x higher'."""
    ratio = original / ours if lower_is_better else ours / original
    word = ("lower" if lower_is_better else "higher") if ratio >= 1 else ("higher" if lower_is_better else "lower")
    return f"{ratio if ratio >= 1 else 1 / ratio:.1f}x {word}"


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per server (median reported)")
    parser.add_argument("--skip-size", action="store_true", help="skip the installed-size measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve-original", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_original:
        serve_original(args.serve_original, args.port)
        return 0

    from bench.machine import header

    from pipeline_code.engine.dataset import load_series
    from pipeline_code.engine.estimator import HarmonicArimaForecaster
    from pipeline_code.engine.core.spec import ModelSpec

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        ours_model = work / "ml" / "model"
        HarmonicArimaForecaster(ModelSpec(fourier_k=3), window=200, horizon=26).fit(
            load_series(DATA, freq="W-FRI")).artifact.save(ours_model)
        original_model = work / "original" / "model.joblib"
        original_model.parent.mkdir()
        print("fitting the original sktime pipeline ...", flush=True)
        fit_original(original_model)

        results: dict[str, dict] = {}
        for kind, model, requests in (("ours", ours_model, {1: 400, 32: 32 * 60}),
                                      ("original", original_model, {1: 100, 32: 32 * 8})):
            print(f"{kind}: cold start x{args.runs} ...", flush=True)
            starts = cold_start(kind, model, args.runs)
            print(f"{kind}: latency ...", flush=True)
            results[kind] = {"cold": starts, "load": latency(kind, model, requests)}
            print(f"  {json.dumps(results[kind], default=lambda x: round(x, 4))}", flush=True)

        sizes = None
        if not args.skip_size:
            print("installed sizes (two throwaway venvs) ...", flush=True)
            ours_size, ours_frozen = site_packages_size(serve_requirements(), work, "venv-serve")
            original_size, original_frozen = site_packages_size(ORIGINAL_DEPS, work, "venv-original")
            sizes = (ours_size + package_size(), original_size, len(ours_frozen), len(original_frozen))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    ours, orig = results["ours"], results["original"]
    cold_o, cold_g = statistics.median(ours["cold"]), statistics.median(orig["cold"])
    rows = [
        ("cold start: process start -> /ping 200, model loaded (median of "
         f"{args.runs})", f"{cold_o:.2f} s", f"{cold_g:.2f} s", f"{cold_g / cold_o:.1f}x faster",
         "<= 1.5 s and >= 5x faster"),
    ]
    for c in (1, 32):
        o, g = ours["load"][c], orig["load"][c]
        rows.append((f"/invocations p50, {c} client{'s' if c > 1 else ''}", f"{o['p50_ms']:.1f} ms",
                     f"{g['p50_ms']:.1f} ms", better(o['p50_ms'], g['p50_ms']), ""))
        rows.append((f"/invocations p99, {c} client{'s' if c > 1 else ''}", f"{o['p99_ms']:.1f} ms",
                     f"{g['p99_ms']:.1f} ms", better(o['p99_ms'], g['p99_ms']),
                     "<= 25 ms" if c == 32 else ""))
        rows.append((f"requests/s, {c} client{'s' if c > 1 else ''}", f"{o['rps']:.0f}", f"{g['rps']:.0f}",
                     better(o['rps'], g['rps'], lower_is_better=False), ""))
        rows.append((f"server CPU per request, {c} client{'s' if c > 1 else ''}", f"{o['server_cpu_ms']:.2f} ms",
                     f"{g['server_cpu_ms']:.2f} ms", better(o['server_cpu_ms'], g['server_cpu_ms']), ""))
        rows.append((f"requests (errors), {c} client{'s' if c > 1 else ''}", f"{o['requests']} ({o['errors']})",
                     f"{g['requests']} ({g['errors']})", "", "0 errors"))
    if sizes:
        rows.append(("serving dependencies installed (site-packages, + our package)", mb(sizes[0]), mb(sizes[1]),
                     f"{sizes[1] / sizes[0]:.1f}x smaller", "<= 300 MB"))
        rows.append(("distributions installed", str(sizes[2]), str(sizes[3]), "", ""))

    lines = [header("Serving: this container vs the original approach", "python -m bench.serving_bench"), ""]
    lines.append(
        "Ours: `python -m pipeline_code.entrypoints.container serve` (the serving image's entrypoint) on the "
        "harmonic-ARIMA artifact (JSON + npz, NumPy forecaster). Original: an sktime "
        "`TransformedTargetForecaster` (Deseasonalizer -> Detrender -> FourierFeatures + statsforecast "
        f"AutoARIMA, fitted on the last {TRAIN_POINTS} weeks), joblib-saved, served by a minimal FastAPI app "
        "that joblib-loads it at start-up and calls `predict` + `predict_interval` (in bench/serving_bench.py). "
        "Both under uvicorn (its default HTTP parser: httptools where installed, as in our serve extra; one process), loopback, keep-alive clients in the benchmark process on the "
        f"same cores; requests `{{\"periods\": {PERIODS}, \"conf\": {CONF}}}`.\n")
    lines.append(f"Load average (1 min) of the machine before / after the run: {load_before:.2f} / {load_after:.2f} "
                 f"on {os.cpu_count()} cores (other work on the machine competes with server and client).\n")
    lines.append("| measure | ours | original | ratio | goal |")
    lines.append("| --- | --- | --- | --- | --- |")
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines.append("")
    lines.append(f"Cold starts (s): ours {', '.join(f'{t:.2f}' for t in ours['cold'])}; "
                 f"original {', '.join(f'{t:.2f}' for t in orig['cold'])}.")
    if sizes:
        lines.append(f"Sizes: `pip install` of the `serve` extra ({', '.join(serve_requirements())}) vs "
                     f"{', '.join(ORIGINAL_DEPS)} (latest releases) into empty Python "
                     f"{sys.version_info.major}.{sys.version_info.minor} venvs; site-packages growth measured "
                     "with `du -sb`; ours adds the pipeline_code package's files.")
    else:
        lines.append("Installed sizes not measured in this run (`--skip-size`).")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
