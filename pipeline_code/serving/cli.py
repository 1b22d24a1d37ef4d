"""The ``serve`` and ``forecast`` subcommands (wired into ``forecast-mlops`` by pipeline_code/cli/main.py).

Heavy imports (FastAPI, uvicorn, httpx, boto3, matplotlib) happen inside the run functions, so
``forecast-mlops --help`` stays fast. ``python -m pipeline_code.serving.cli serve|forecast ...`` works
on its own too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from pipeline_code.engine.settings import DEFAULT_PORT, MAX_PERIODS_LIMIT, max_periods_from_env
from pipeline_code.serving.connections import ConnectionLimits
from pipeline_code.serving.gateway import DEFAULT_BURST, DEFAULT_RATE, default_key_file
from pipeline_code.serving.request import MAX_ITEMS, MAX_LIST_LIMIT


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def periods_limit(text: str) -> int:
    """--max-periods: the range FORECAST_MAX_PERIODS and the run document allow."""
    value = int(text) if text.strip().isdigit() else 0
    if not 1 <= value <= MAX_PERIODS_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_PERIODS_LIMIT}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


# What --plot writes (matplotlib picks the format by the file's suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def plot_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name such as forecast.png")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"give a file name ending in {', '.join(PLOT_SUFFIXES)}; got {text!r}")
    return path


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number 0..65535")
    return value


DEFAULT_HOST = "127.0.0.1"


def check_port_free(port: int, host: str = DEFAULT_HOST) -> None:
    """Refuse a port that is already taken on ``host`` (default the server's default bind address)."""
    import socket

    # as uvicorn binds: an IPv6 socket for an address with a colon, SO_REUSEADDR (a port left in
    # TIME_WAIT by a stopped server is free, a listening one is not)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            reason = (err.strerror or str(err)).lower()
            raise RuntimeError(f"cannot serve on {host}:{port}: {reason} (is port {port} free? see --port)") from None


# --- serve ----------------------------------------------------------------------------------------

def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path,
                        help="a model artifact folder (with model.json) or a registry folder (serves its "
                             "approved version)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--max-periods", type=periods_limit, default=None,
                        help="largest accepted 'periods' (default $FORECAST_MAX_PERIODS or 104)")
    defaults = ConnectionLimits()
    guard = parser.add_argument_group("limits against slow or hostile clients")
    guard.add_argument("--request-timeout", type=positive_float, default=defaults.request_timeout, metavar="S",
                       help=f"seconds a client has to send a whole request, head and body (default "
                            f"{defaults.request_timeout:g}; then 408 and close)")
    guard.add_argument("--max-header-bytes", type=positive_int, default=defaults.max_header_bytes, metavar="N",
                       help=f"largest request line + headers (default {defaults.max_header_bytes}; then 431 and close)")
    guard.add_argument("--max-connections", type=positive_int, default=defaults.max_connections, metavar="N",
                       help=f"open connections; past it the oldest waiting or idle one is closed "
                            f"(default {defaults.max_connections})")
    guard.add_argument("--backlog", type=positive_int, default=defaults.backlog, metavar="N",
                       help=f"listen queue, and connections accepted at once (default {defaults.backlog})")
    keys = parser.add_argument_group("API key gateway (POST /forecast and /invocations behind x-api-key)")
    keys.add_argument("--api-key-file", type=Path, nargs="?", const=default_key_file(), default=None,
                      metavar="FILE",
                      help=f"enable POST /forecast, and put POST /invocations behind the key too, with the keys in FILE (created with a new key, mode 0600, "
                           f"when absent; without FILE: {default_key_file()})")
    keys.add_argument("--rate-limit", type=float, default=DEFAULT_RATE,
                      help=f"per-key steady rate, requests/second (default {DEFAULT_RATE:g})")
    keys.add_argument("--burst", type=positive_int, default=DEFAULT_BURST,
                      help=f"per-key burst, the token bucket's size (default {DEFAULT_BURST})")
    admin = keys.add_mutually_exclusive_group()
    admin.add_argument("--issue-key", action="store_true", help="add a new key to the key file, print it, exit")
    admin.add_argument("--revoke-key", metavar="KEY_ID", help="revoke a key (by id or value), exit")
    admin.add_argument("--list-keys", action="store_true", help="list key ids and status, exit")


def run_serve(args: argparse.Namespace) -> int:
    from pipeline_code.serving.gateway import ApiKeyGuard, KeyFileError, KeyStore, UsagePlan, exposure_warning

    admin = (getattr(args, "issue_key", False) or getattr(args, "revoke_key", None) is not None
             or getattr(args, "list_keys", False))
    key_file = getattr(args, "api_key_file", None)
    if admin:
        return _key_admin(args, key_file or default_key_file())
    if args.model is None:
        print("serve: --model DIR is required", file=sys.stderr)
        return 2
    try:
        check_port_free(args.port, args.host)  # before a key file is created or a server announced
    except RuntimeError as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    guard = None
    if key_file is not None:
        try:
            store, new_key = KeyStore.open_or_create(key_file)
            plan = UsagePlan(rate=args.rate_limit, burst=args.burst)
        except (KeyFileError, ValueError, OSError) as err:
            print(f"serve: {err}", file=sys.stderr)
            return 2
        if new_key is not None:
            print(f"Created {key_file} (mode 0600) with API key {new_key.id}; the key is shown once:\n"
                  f"  {new_key.key}", flush=True)
        exposed = exposure_warning(key_file)
        if exposed:
            print(f"serve: warning: {exposed}", file=sys.stderr, flush=True)
        active = store.active_key()
        print(f"POST /forecast and /invocations need x-api-key: keys from {key_file} "
              f"(active: {active.id if active else 'none'}; {args.rate_limit:g} req/s, burst {args.burst})",
              flush=True)
        guard = ApiKeyGuard(store, plan)
    from pipeline_code.serving.server import serve

    try:
        limits = ConnectionLimits(args.request_timeout, args.max_header_bytes, args.max_connections, args.backlog)
    except ValueError as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    max_periods = args.max_periods or max_periods_from_env(os.environ)
    print(f"Serving {args.model} on http://{args.host}:{args.port} (GET /ping, POST /invocations"
          f"{', POST /forecast' if guard else ''}); Ctrl-C stops.", flush=True)
    try:
        serve(args.model, host=args.host, port=args.port, max_periods=max_periods, api_keys=guard, limits=limits)
    except KeyboardInterrupt:  # Ctrl-C: the stop the banner offers
        print("stopped", file=sys.stderr)
    return 0


def _key_admin(args: argparse.Namespace, key_file: Path) -> int:
    from pipeline_code.serving.gateway import KeyFileError, KeyStore

    try:
        if args.issue_key:
            store, created = KeyStore.open_or_create(key_file)
            key = created or store.issue()
            print(f"New API key {key.id} in {key_file} (shown once):\n  {key.key}")
            return 0
        store = KeyStore(key_file)
        if args.revoke_key is not None:
            was = {k.id: k.revoked_at for k in store.keys() if k.revoked}
            try:
                key = store.revoke(args.revoke_key)
            except KeyError:
                print(f"serve: no key {args.revoke_key!r} in {key_file}", file=sys.stderr)
                return 1
            print(f"{key.id} was already revoked at {was[key.id]}." if key.id in was
                  else f"Revoked {key.id} (a running server refuses it from its next request).")
            return 0
        for key in store.keys():
            status = f"revoked {key.revoked_at}" if key.revoked else "active"
            print(f"{key.id}  created {key.created}  {status}")
        return 0
    except KeyFileError as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2


# --- forecast -------------------------------------------------------------------------------------

def add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline_code.cli.client import DEFAULT_URL

    parser.add_argument("--periods", type=positive_int, help="periods to forecast (required unless --list-items)")
    parser.add_argument("--conf", type=float, default=0.9, help="prediction interval level in (0, 1) (default 0.9)")
    parser.add_argument("--quantiles", type=_quantiles, metavar="Q,Q,...",
                        help="forecast these quantiles instead of a --conf interval, e.g. 0.1,0.5,0.9 (p10, p50, p90)")
    panel = parser.add_argument_group("a panel model (many series)")
    panel.add_argument("--item", action="append", metavar="ID",
                       help=f"the series to forecast; repeat for several (at most {MAX_ITEMS})")
    panel.add_argument("--list-items", action="store_true", help="list the model's item ids (sorted, by page)")
    panel.add_argument("--offset", type=int, default=0, help="with --list-items: ids to skip (default 0)")
    panel.add_argument("--limit", type=int, default=MAX_LIST_LIMIT,
                       help=f"with --list-items: ids per page (default {MAX_LIST_LIMIT})")
    target = parser.add_argument_group("target (default: the local gateway and the default key file)")
    target.add_argument("--url", help=f"the forecast URL (default {DEFAULT_URL})")
    target.add_argument("--api-key", help="the API key (default: $FORECAST_API_KEY or the key file's active key)")
    target.add_argument("--api-key-file", type=Path, default=None,
                        help=f"read the key from this file (default {default_key_file()})")
    target.add_argument("--stack", help="a deployed CloudFormation stack: URL and key from its ApiUrl/ApiKeyId outputs")
    target.add_argument("--region", help="AWS region of --stack (default: the AWS configuration's)")
    parser.add_argument("--plot", type=plot_file, metavar="FILE",
                        help="save a plot (.png, .svg or .pdf) of history, forecast and interval")
    parser.add_argument("--history", type=int, default=None,
                        help="recent observations to fetch for the plot (default 104 with --plot, else 0)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response instead of a table")
    parser.add_argument("--timeout", type=positive_float, default=30.0, help="request timeout in seconds (default 30)")


def _quantiles(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or not all(math.isfinite(q) for q in levels):
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, such as 0.1,0.5,0.9; got {text!r}")
    return levels


def run_forecast(args: argparse.Namespace) -> int:
    from pipeline_code.cli.client import run

    return run(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_code.serving.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve"))
    add_forecast_arguments(sub.add_parser("forecast"))
    args = parser.parse_args(argv)
    return run_serve(args) if args.command == "serve" else run_forecast(args)


if __name__ == "__main__":
    sys.exit(main())
