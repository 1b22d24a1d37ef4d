"""The forecast client: the local gateway or a deployed API (``forecast-mlops forecast``).

Target, in order: ``--url``/``--api-key``; ``--stack NAME`` (URL and key from the CloudFormation stack's
``ApiUrl``/``ApiKeyId`` outputs, the key's value from API Gateway); else the local gateway
(``http://127.0.0.1:8080/forecast``) with ``$FORECAST_API_KEY`` or the active key of the key file.
httpx is imported when a request is made, boto3 only for ``--stack``, matplotlib only for ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080/forecast"
PLOT_HISTORY = 104


class ClientError(RuntimeError):
    """A failed request: the API's error message (and status), or why no request could be made."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def request_forecast(url: str, api_key: str | None, periods: int, conf: float, *, history: int = 0,
                     timeout: float = 30.0) -> dict[str, Any]:
    """POST the request and return the decoded response; raises ClientError."""
    import httpx

    body: dict[str, Any] = {"periods": periods, "conf": conf}
    if history:
        body["history"] = history
    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    try:
        response = httpx.post(url, content=json.dumps(body), headers=headers, timeout=timeout)
    except httpx.HTTPError as err:
        raise ClientError(f"cannot reach {url}: {err}") from None
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.status_code != 200:
        message = None
        if isinstance(document, dict):
            message = document.get("error") or document.get("message")
        request_id = document.get("request_id") if isinstance(document, dict) else None
        detail = f" (request id {request_id})" if request_id else ""
        raise ClientError(f"HTTP {response.status_code}: {message or response.text[:200]}{detail}",
                          response.status_code)
    if not isinstance(document, dict) or "forecasts" not in document:
        raise ClientError(f"unexpected response from {url}: {response.text[:200]}")
    return document


def stack_target(stack: str, region: str | None = None) -> tuple[str, str]:
    """(forecast URL, API key) from a deployed stack's ``ApiUrl`` and ``ApiKeyId`` outputs."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError as AwsError

    session = boto3.session.Session(region_name=region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        if "ApiUrl" not in outputs or "ApiKeyId" not in outputs:
            raise ClientError(f"stack {stack!r} has no ApiUrl/ApiKeyId outputs (found: {sorted(outputs)})")
        key = session.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
    except (BotoCoreError, AwsError) as err:
        raise ClientError(f"cannot read stack {stack!r}: {err}") from None
    url = outputs["ApiUrl"].rstrip("/")
    return (url if url.endswith("/forecast") else url + "/forecast"), key


def local_key(key_file: Path | None) -> str | None:
    """$FORECAST_API_KEY, else the newest active key in the key file (None when there is none)."""
    from pipeline_code.serving.gateway import KeyFileError, KeyStore, default_key_file

    if os.environ.get("FORECAST_API_KEY"):
        return os.environ["FORECAST_API_KEY"]
    path = key_file or default_key_file()
    if not path.exists():
        return None
    try:
        active = KeyStore(path).active_key()
    except KeyFileError as err:
        raise ClientError(str(err)) from None
    return active.key if active else None


def format_table(document: dict[str, Any]) -> str:
    model = document.get("model") or {}
    metrics = model.get("metrics") or {}
    headline = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    conf = document.get("conf")
    lines = [
        f"model {model.get('name') or '?'} {model.get('version') or '(unversioned)'}, trained "
        f"{model.get('trained_at') or '?'}" + (f"; {headline}" if headline else ""),
        f"{'timestamp':<12}{'mean':>14}{'lower':>14}{'upper':>14}    ({conf:.0%} interval)"
        if isinstance(conf, (int, float)) else f"{'timestamp':<12}{'mean':>14}{'lower':>14}{'upper':>14}",
    ]
    for row in document["forecasts"]:
        lines.append(f"{row['timestamp']:<12}{row['mean']:>14,.1f}{row['lower']:>14,.1f}{row['upper']:>14,.1f}")
    return "\n".join(lines)


def plot(document: dict[str, Any], path: Path) -> Path:
    """PNG of the recent history, the forecast mean and its interval."""
    from datetime import date

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["forecasts"]
    when = [date.fromisoformat(r["timestamp"]) for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    history = document.get("history") or []
    if history:
        ax.plot([date.fromisoformat(h["timestamp"]) for h in history], [h["value"] for h in history],
                color="black", linewidth=1, label="observed")
    ax.plot(when, [r["mean"] for r in rows], color="tab:blue", label="forecast")
    conf = document.get("conf", 0)
    ax.fill_between(when, [r["lower"] for r in rows], [r["upper"] for r in rows], color="tab:blue", alpha=0.25,
                    label=f"{conf:.0%} interval")
    model = document.get("model") or {}
    ax.set_title(f"{model.get('name') or 'model'} {model.get('version') or ''}".strip())
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    """The ``forecast`` subcommand; returns the exit code."""
    if not 0.0 < args.conf < 1.0:
        print("forecast: --conf must be strictly between 0 and 1", file=sys.stderr)
        return 2
    history = args.history if args.history is not None else (PLOT_HISTORY if args.plot else 0)
    try:
        if args.stack:
            url, key = stack_target(args.stack, args.region)
            url = args.url or url
            key = args.api_key or key
        else:
            url = args.url or DEFAULT_URL
            key = args.api_key or local_key(args.api_key_file)
        try:
            document = request_forecast(url, key, args.periods, args.conf, history=history, timeout=args.timeout)
        except ClientError as err:
            # An API that does not know the optional "history" field: ask again without it.
            if not (history and err.status == 400 and "history" in str(err)):
                raise
            document = request_forecast(url, key, args.periods, args.conf, timeout=args.timeout)
    except ClientError as err:
        print(f"forecast: {err}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=1) if args.json else format_table(document))
    if args.plot:
        print(f"plot: {plot(document, args.plot)}")
    return 0
