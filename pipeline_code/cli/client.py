"""The forecast client: the local gateway or a deployed API (``forecast-mlops forecast``).

Target, in order: ``--url``/``--api-key``; ``--stack NAME`` (URL and key from the CloudFormation stack's
``ApiUrl``/``ApiKeyId`` outputs, the key's value from API Gateway); else the local gateway
(``http://127.0.0.1:8080/forecast``) with ``$FORECAST_API_KEY`` or the active key of the key file.
httpx is imported when a request is made, boto3 only for ``--stack``, matplotlib only for ``--plot``.

A panel model (many series): ``--item ID`` (repeat it for several, up to the API's limit), ``--list-items``
(with ``--offset``/``--limit``) to see its ids; any model: ``--quantiles 0.1,0.5,0.9`` instead of ``--conf``.
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


# What an answer holds: one series' forecasts, several items' (item_ids), or a page of item ids.
ANSWERS = ("forecasts", "items", "item_ids")


def request_forecast(url: str, api_key: str | None, periods: int, conf: float, *, history: int = 0,
                     timeout: float = 30.0) -> dict[str, Any]:
    """POST a forecast request of the model's one series; raises ClientError."""
    body: dict[str, Any] = {"periods": periods, "conf": conf}
    if history:
        body["history"] = history
    return post(url, api_key, body, timeout=timeout)


def request_body(args: argparse.Namespace, history: int) -> dict[str, Any]:
    """The request of the ``forecast`` subcommand's arguments."""
    if args.list_items:
        return {"list_items": True, "offset": args.offset, "limit": args.limit}
    body: dict[str, Any] = {"periods": args.periods}
    if args.quantiles:
        body["quantiles"] = args.quantiles
    else:
        body["conf"] = args.conf
    if history:
        body["history"] = history
    if args.item and len(args.item) == 1:
        body["item_id"] = args.item[0]
    elif args.item:
        body["item_ids"] = args.item
    return body


def post(url: str, api_key: str | None, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """POST ``body`` and return the decoded answer; raises ClientError."""
    import httpx

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
    if not isinstance(document, dict) or not any(isinstance(document.get(k), list) for k in ANSWERS):
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
    """The answer as text: a table per series (an item's headed by its id), or the page of item ids."""
    model = document.get("model") or {}
    metrics = model.get("metrics") or {}
    headline = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    lines = [f"model {model.get('name') or '?'} {model.get('version') or '(unversioned)'}, trained "
             f"{model.get('trained_at') or '?'}" + (f"; {headline}" if headline else "")]
    if "item_ids" in document:
        lines += document["item_ids"]
        following = document.get("next_offset")
        lines.append(f"({len(document['item_ids'])} of {document.get('total')} items"
                     + (f"; next page: --offset {following})" if following is not None else ")"))
        return "\n".join(lines)
    series = document["items"] if "items" in document else [document]
    for entry in series:
        if "item_id" in entry:
            lines.append(f"item {entry['item_id']}")
        lines += _forecast_table(entry["forecasts"], document.get("conf"), document.get("quantiles"))
    return "\n".join(lines)


def _forecast_table(rows: list[dict[str, Any]], conf: Any, quantiles: Any) -> list[str]:
    bounds = ([k for k in rows[0] if k not in ("timestamp", "mean")] if quantiles and rows
              else ["lower", "upper"])
    note = f"    ({conf:.0%} interval)" if isinstance(conf, (int, float)) else ""
    lines = [f"{'timestamp':<12}{'mean':>14}" + "".join(f"{k:>14}" for k in bounds) + note]
    for row in rows:
        lines.append(f"{row['timestamp']:<12}{row['mean']:>14,.1f}" + "".join(f"{row[k]:>14,.1f}" for k in bounds))
    return lines


def plot(document: dict[str, Any], path: Path) -> Path:
    """PNG of the recent history, the forecast mean and its interval."""
    from datetime import date

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["forecasts"]
    when = [date.fromisoformat(r["timestamp"]) for r in rows]
    quantiles = document.get("quantiles")
    if quantiles:  # the band between the outermost quantiles
        keys = [k for k in rows[0] if k not in ("timestamp", "mean")]
        low, high, label = keys[0], keys[-1], f"{keys[0]}-{keys[-1]}"
    else:
        low, high, label = "lower", "upper", f"{document.get('conf', 0):.0%} interval"
    fig, ax = plt.subplots(figsize=(10, 4.5))
    history = document.get("history") or []
    if history:
        ax.plot([date.fromisoformat(h["timestamp"]) for h in history], [h["value"] for h in history],
                color="black", linewidth=1, label="observed")
    ax.plot(when, [r["mean"] for r in rows], color="tab:blue", label="forecast")
    if not quantiles or len(quantiles) > 1:
        ax.fill_between(when, [r[low] for r in rows], [r[high] for r in rows], color="tab:blue", alpha=0.25,
                        label=label)
    model = document.get("model") or {}
    item = f" {document['item_id']}" if "item_id" in document else ""
    ax.set_title(f"{model.get('name') or 'model'} {model.get('version') or ''}{item}".strip())
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
    problem = _argument_problem(args)
    if problem:
        print(f"forecast: {problem}", file=sys.stderr)
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
            document = post(url, key, request_body(args, history), timeout=args.timeout)
        except ClientError as err:
            # An API that does not know the optional "history" field: ask again without it (unless the
            # user asked for that history: then its refusal is the answer).
            if not (history and args.history is None and err.status == 400 and "history" in str(err)):
                raise
            document = post(url, key, request_body(args, 0), timeout=args.timeout)
    except ClientError as err:
        print(f"forecast: {err}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=1) if args.json else format_table(document))
    if args.plot:
        print(f"plot: {plot(document, args.plot)}")
    return 0


def _argument_problem(args: argparse.Namespace) -> str | None:
    if args.list_items:
        return "--list-items takes no --periods, --item or --plot" if (
            args.periods or args.item or args.plot) else None
    if args.periods is None:
        return "--periods is required (or --list-items)"
    if not 0.0 < args.conf < 1.0:
        return "--conf must be strictly between 0 and 1"
    if args.plot and args.item and len(args.item) > 1:
        return "--plot draws one series: give one --item"
    return None
