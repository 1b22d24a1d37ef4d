"""The ``forecast-mlops`` command line: demo, pipeline run, tune, backtest, serve, forecast, registry."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from pipeline_code.cli.doctor import add_doctor_command
from pipeline_code.cli.ops import add_ops_commands
from pipeline_code.engine.settings import DEFAULT_PORT, NOTHING_REGISTERED, SettingsError
from pipeline_code.pipeline.settings_args import (
    FLAGS_LAYER, add_settings_arguments, frequency_given, settings_for_data, settings_layers,
)
from pipeline_code.serving.cli import check_port_free, port_number, positive_int

BUNDLED_DATA = "us_gasoline.csv"
DEFAULT_DEMO_DIR = Path(".local") / "demo"


def bundled_data() -> Path:
    """The bundled weekly US gasoline series (US EIA via the fpp3 data sets)."""
    return Path(str(resources.files("pipeline_code") / "data" / BUNDLED_DATA))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecast-mlops",
        description="Time-series forecasting pipeline: preprocess, tune, evaluate, register, serve.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the local pipeline on the bundled data, then serve a forecast")
    demo.add_argument("--workdir", type=Path, default=DEFAULT_DEMO_DIR, help="default: .local/demo")
    _pipeline_options(demo)
    demo.add_argument("--once", action="store_true", help="show one served forecast, then stop serving")
    add_settings_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    pipeline = sub.add_parser("pipeline", help="run every stage locally, as the state machine would")
    psub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    run = psub.add_parser("run", help="validate, preprocess, tune, evaluate, gate, register (and serve)")
    run.add_argument("--data", type=Path, required=True, help="input CSV (timestamp,value)")
    run.add_argument("--workdir", type=Path, required=True, help="folder laid out like the bucket")
    run.add_argument("--no-serve", action="store_true", help="stop after registration")
    run.add_argument("--once", action="store_true", help="show one served forecast, then stop serving")
    _pipeline_options(run)
    add_settings_arguments(run)
    run.set_defaults(func=cmd_pipeline_run)

    tune = sub.add_parser("tune", help="the hyperparameter search alone; writes tuning.json")
    tune.add_argument("--data", type=Path, required=True)
    tune.add_argument("--out", type=Path, required=True)
    tune.add_argument("--jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    add_settings_arguments(tune)
    tune.set_defaults(func=cmd_tune)

    backtest = sub.add_parser("backtest", help="rolling-origin evaluation; writes backtest.json")
    backtest.add_argument("--data", type=Path, required=True)
    backtest.add_argument("--out", type=Path, required=True)
    backtest.add_argument("--origins", type=positive_int, default=52, help="number of forecast origins (default 52)")
    backtest.add_argument("--baselines", action="store_true",
                          help="also statsforecast AutoTheta, AutoTBATS, MSTL, AutoARIMA+Fourier")
    backtest.add_argument("--jobs", type=positive_int, default=None)
    add_settings_arguments(backtest)
    backtest.set_defaults(func=cmd_backtest)

    _add_serving_commands(sub)
    add_ops_commands(sub)
    add_doctor_command(sub)
    return parser


def _pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=positive_int, default=None, help="tuning workers (default: all cores)")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"local serving port (default {DEFAULT_PORT})")
    parser.add_argument("--manual-approval", action="store_true",
                        help="register as PendingManualApproval even past the gate")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_serving_commands(sub) -> None:
    from pipeline_code.serving import cli as serving_cli

    serve = sub.add_parser("serve", help="serve a model (or a registry's approved model) over HTTP")
    serving_cli.add_serve_arguments(serve)
    serve.set_defaults(func=serving_cli.run_serve)
    forecast = sub.add_parser("forecast", help="ask the local or the deployed API for a forecast")
    serving_cli.add_forecast_arguments(forecast)
    forecast.set_defaults(func=serving_cli.run_forecast)


# --- commands ---------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    args.data = bundled_data()
    args.no_serve = False
    print(f"forecast-mlops demo: weekly US gasoline product supplied (US EIA), {args.data.name}")
    return cmd_pipeline_run(args)


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    from pipeline_code.pipeline.runner import run_pipeline

    try:
        resolved = settings_for_data(args)
    except SettingsError as err:  # the first look: nothing has started
        print(f"error: {err}\nno run started: {NOTHING_REGISTERED}", file=sys.stderr)
        return 2
    settings = resolved.settings
    if not args.no_serve:
        check_port_free(args.port)  # before the pipeline's minutes, not after
    for layer, document in settings_layers(args, args.data):
        given = [f"{section}.{key}" for section, keys in document.items() if isinstance(keys, dict) for key in keys]
        if given and layer != FLAGS_LAYER:
            print(f"  settings from {layer}: {', '.join(given)}")
    source = "(from the data)"
    if "data.freq" not in resolved.derived and not frequency_given(args):
        print(f"  data.freq = {settings.data.freq} (the default: no yyyy-MM-dd timestamp was found where the header"
              " or series.columns puts it, so the frequency is not inferred)")
        source = f"(from the default frequency {settings.data.freq} and the data's length)"
    for key, value in resolved.derived.items():
        print(f"  {key} = {value:g}" if isinstance(value, float) else f"  {key} = {value}", source)
    started = time.perf_counter()
    result = run_pipeline(
        args.data, args.workdir, settings, jobs=args.jobs, progress=not args.quiet,
        manual_approval=args.manual_approval, derived=resolved.derived,
    )
    print(f"pipeline finished in {time.perf_counter() - started:.1f}s: run {result.run_id},"
          f" version {result.version.name} ({result.version.status})")
    print(f"  reports: {result.run_dir / 'reports'}")
    if args.no_serve:
        return 0
    return serve_and_show(args.workdir, port=args.port, once=args.once, horizon=settings.data.horizon)


def serve_and_show(workdir: Path, *, port: int, once: bool, horizon: int) -> int:
    """Serve the registry's approved model behind the API key and show a forecast from it."""
    registry = workdir / "registry"
    key_file = workdir / "api-keys.json"
    server_log = workdir / "serve.log"  # the server's JSON request logs
    command = [sys.executable, "-m", "pipeline_code.cli.main", "serve", "--model", str(registry),
               "--port", str(port), "--api-key-file", str(key_file)]
    with server_log.open("ab") as log_file:
        server = subprocess.Popen(command, stderr=log_file)
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_ping(url, server)
        except NoModelServed as err:
            raise RuntimeError(f"{err} (see {server_log})") from None
        except RuntimeError as err:
            lines = server_log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if '"level":"error"' in line] or lines[-5:]
            raise RuntimeError("\n".join([f"{err} (is port {port} free? see --port)", *errors])) from None
        forecast_args = ["forecast", "--url", f"{url}/forecast", "--api-key-file", str(key_file),
                         "--periods", str(horizon), "--conf", "0.9",
                         "--plot", str(workdir / "forecast.png"), *_first_item(registry)]
        code = main(forecast_args)
        if once or code:
            return code
        print(f"\nServing on {url} (POST /forecast with x-api-key from {key_file}; request logs in"
              f" {server_log}). Ctrl-C stops.")
        server.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=15)


def _first_item(registry: Path) -> list[str]:
    """``--item`` and the first item id when the approved model is a panel (docs/panel.md), else nothing."""
    from pipeline_code.engine.core.panel_artifact import PanelModel, is_panel
    from pipeline_code.pipeline.registry import LocalRegistry

    approved = LocalRegistry(registry).approved()
    if approved is None or not is_panel(approved.model_dir):
        return []
    return ["--item", PanelModel.load(approved.model_dir).items[0]]


class NoModelServed(RuntimeError):
    """The server runs but refused the approved model: /ping answers 503 with the reason."""


def _wait_for_ping(url: str, server: subprocess.Popen, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    from pipeline_code.serving.app import NOT_LOADED_YET

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as err:  # 503 with the load's error once it has been tried
            try:
                reason = json.loads(err.read() or b"{}").get("error")
            except (ValueError, AttributeError):
                reason = None
            if reason and reason != NOT_LOADED_YET:
                raise NoModelServed(f"the server has no model to serve: {reason}") from None
            time.sleep(0.1)
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /ping within {timeout:.0f}s")


def _one_series(data: Path, settings, command: str) -> None:
    """``tune`` and ``backtest`` take one series; a panel is named as such (as processing tells them
    apart: ``panel_stages.is_panel_upload``)."""
    from pipeline_code.pipeline.panel_stages import is_panel_upload

    if is_panel_upload(data, settings):
        raise ValueError(f"{data}: {command} takes one series (timestamp,value); this file is a panel (an"
                         " item_id column, or Amazon Forecast's layout): `forecast-mlops pipeline run` tunes and"
                         " backtests a panel")


def _output_folder(path: Path) -> None:
    """``--out`` made (or found) before the work: not after minutes of search."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"--out {path} is a file, not a folder") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"--out {path} is not writable")


def cmd_tune(args: argparse.Namespace) -> int:
    from pipeline_code.engine.dataset import load_series
    from pipeline_code.engine.cleaning import clean
    from pipeline_code.engine.tuning import tune

    settings = settings_for_data(args).settings
    _one_series(args.data, settings, "tune")
    _output_folder(args.out)
    series = load_series(args.data, freq=settings.data.freq,
                         min_length=settings.min_observations(),
                         max_bytes=settings.data.max_file_bytes,
                         max_gap_periods=settings.data.max_gap_periods,
                         max_rows=settings.data.max_rows)
    pre, _ = clean(series, settings)
    result = tune(series.values, pre.counterfactual, settings, jobs=args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    result.write(args.out / "tuning.json")
    best = result.best
    print(f"{result.scope()} in {result.seconds:.1f}s"
          f" on {result.jobs} worker(s); served ({result.serve}) {best['hyperparameters']} CV MASE {best['cv_mase']:.4f}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from pipeline_code.engine.backtesting import run_backtest

    settings = settings_for_data(args).settings
    _one_series(args.data, settings, "backtest")
    _output_folder(args.out)
    report = run_backtest(args.data, args.out, settings, origins=args.origins,
                          baselines=args.baselines, jobs=args.jobs)
    for name, metrics in report["models"].items():
        print(f"{name:>20}: MASE {metrics['mase']:.4f}  coverage80 {metrics.get('coverage_80', float('nan')):.3f}"
              f"  coverage95 {metrics.get('coverage_95', float('nan')):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    # DataValidationError, RegistryError, PipelineError; OSError: a path that is missing, or a file where
    # a folder is expected (or the reverse)
    except (OSError, ValueError, RuntimeError) as err:
        # Only the commands that run stages import the runner (and SciPy): the others start without it.
        runner = sys.modules.get("pipeline_code.pipeline.runner")
        if runner is not None and isinstance(err, runner.PipelineError):
            print(f"error: {err}\n{err.outcome()}", file=sys.stderr)
        else:
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a run's record says where it stopped; workers are gone (engine/workers.py)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
