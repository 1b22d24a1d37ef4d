"""POST /forecast (API Gateway REST, Lambda proxy) -> SageMaker InvokeEndpoint on ENDPOINT_NAME.

The request rules are the serving app's own (``pipeline_code`` here links to the package; the CDK
asset follows the link and keeps only its standard-library modules, ``serving/request.py`` and the run
document's), so the Lambda and the container cannot disagree on what is valid, nor on the periods limit. Error mapping, always ``{"error": ..., "request_id": ...}`` and never a stack trace:

* invalid request -> 400 (413 oversize body, 415 non-JSON content type or a compressed body), as is an
  event that is not a proxy event (a body that is not a string, ...), without calling the endpoint;
* ``ModelError`` (the container answered 4xx) -> that status (400, or 404 for an unknown item of a
  panel model) with the container's message;
  ``ModelError`` with a 5xx (or no) status from the container -> 502;
* ``ValidationError`` -> 400 with the message (ARNs and account ids redacted), except "endpoint ... not
  found" -> 503 (not deployed yet; the message, which names the account, is not passed on);
* ``ThrottlingException`` and other throttling codes -> 429 (with Retry-After);
* ``ModelNotReadyException``, ``ServiceUnavailable``, connection failures and timeouts -> 503;
* any other endpoint or SDK failure -> 502; a bug here -> 500.

Serverless endpoints have no data capture, so every request logs a one-line summary of the request and
the response (Powertools Logger, JSON) and publishes EMF metrics (Powertools Metrics).

Environment: ``ENDPOINT_NAME`` (required), ``INVOKE_CONNECT_TIMEOUT`` (s, default 2),
``INVOKE_READ_TIMEOUT`` (s, default 24), ``INVOKE_MAX_ATTEMPTS`` (total attempts incl. retries,
default 1), ``FORECAST_MAX_PERIODS`` (the run document's ``serve.max_periods``; read once, at a cold start:
a bad value answers every request 503 with the reason, never a 500). The stack sets the first three from one budget
(stacks/serving_api.py): one attempt of 2 + 24 s ends inside the Lambda's 28 s timeout, which ends
before API Gateway's 29 s integration timeout, so a slow serverless cold start is answered with this
Lambda's 503 + Retry-After rather than the gateway's 504. One attempt: a retried read timeout would
double the wait past the limit.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from pipeline_code.engine.settings import SettingsError, json_kind, max_periods_from_env
from pipeline_code.serving.request import RequestError, check_content_encoding, check_content_type, parse_request

logger = Logger(service="forecast-invoke")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ForecastMlops"), service="invoke")

THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
UNAVAILABLE = {"ModelNotReadyException", "ServiceUnavailable", "ServiceUnavailableException"}
# What a container answer holds: one series' forecasts, several items' (item_ids), or a page of item ids.
ANSWERS = ("forecasts", "items", "item_ids")
# Seconds a client should wait: a throttle clears fast; a 503 is usually a serverless cold start.
RETRY_AFTER = {429: "1", 503: "10"}
# The container's 4xx passed on as they are (an unknown item); others are 400.
PASSED_ON = {404}
# The request as forwarded: compact UTF-8, never longer than the body the Lambda accepted (the container
# refuses more than MAX_BODY_BYTES too; ASCII escapes of non-ASCII item ids would grow it 6-12 times).
FORWARDED_JSON = {"ensure_ascii": False, "separators": (",", ":")}

# --- the endpoint call ----------------------------------------------------------------------------

class EndpointFailure(Exception):
    """A mapped failure: HTTP status, client-facing message, error code for the logs."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@functools.lru_cache(maxsize=1)
def runtime_client():
    config = Config(
        connect_timeout=float(os.environ.get("INVOKE_CONNECT_TIMEOUT", "2")),
        read_timeout=float(os.environ.get("INVOKE_READ_TIMEOUT", "24")),
        retries={"total_max_attempts": int(os.environ.get("INVOKE_MAX_ATTEMPTS", "1")), "mode": "standard"},
    )
    return boto3.client("sagemaker-runtime", config=config)


def invoke(request: dict[str, Any], request_id: str) -> dict[str, Any]:
    """Call the endpoint; the decoded JSON response, or EndpointFailure."""
    try:
        response = runtime_client().invoke_endpoint(
            EndpointName=os.environ["ENDPOINT_NAME"],
            Body=json.dumps(request, **FORWARDED_JSON).encode(),
            ContentType="application/json",
            Accept="application/json",
            CustomAttributes=f"request-id={request_id}",
        )
        raw = response["Body"].read()
    except ClientError as err:
        raise _map_client_error(err) from None
    except (ConnectTimeoutError, ReadTimeoutError, EndpointConnectionError, ConnectionClosedError) as err:
        raise EndpointFailure(503, "the model endpoint did not answer in time; retry later", type(err).__name__) from None
    except BotoCoreError as err:
        raise EndpointFailure(502, "calling the model endpoint failed", type(err).__name__) from None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict) or not any(isinstance(document.get(k), list) for k in ANSWERS):
        raise EndpointFailure(502, "the model endpoint returned an invalid response", "InvalidEndpointResponse")
    return document


def _map_client_error(err: ClientError) -> EndpointFailure:
    error = err.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", ""))
    if code == "ModelError":
        original = err.response.get("OriginalStatusCode") or error.get("OriginalStatusCode")
        try:
            original = int(original)
        except (TypeError, ValueError):
            original = None
        if original is not None and 400 <= original < 500:
            status = original if original in PASSED_ON else 400
            return EndpointFailure(status, _container_message(err, message), code)
        return EndpointFailure(502, "the model failed to produce a forecast", code)
    if code == "ValidationError":
        if "not found" in message.lower():
            return EndpointFailure(503, "the model endpoint is not available (not deployed yet?)", code)
        return EndpointFailure(400, _without_account(message)[:500] or "invalid request", code)
    if code in THROTTLING:
        return EndpointFailure(429, "too many requests to the model endpoint; retry later", code)
    if code in UNAVAILABLE:
        return EndpointFailure(503, "the model endpoint is starting or unavailable; retry later", code)
    return EndpointFailure(502, "the model endpoint failed", code)


# What identifies the deployment in a service message: ARNs and 12-digit account ids.
_ACCOUNT_DETAILS = re.compile(r"arn:aws[\w-]*:[^\s\"']*|\b\d{12}\b")


def _without_account(message: str) -> str:
    """A service message for the client, without ARNs or account ids."""
    return _ACCOUNT_DETAILS.sub("<redacted>", message)


def _container_message(err: ClientError, fallback: str) -> str:
    """The container's ``{"error": ...}`` from a ModelError, else the service's message."""
    original = err.response.get("OriginalMessage") or err.response.get("Error", {}).get("OriginalMessage")
    if isinstance(original, str) and original:
        try:
            document = json.loads(original)
            if isinstance(document, dict) and isinstance(document.get("error"), str):
                return document["error"][:500]
        except ValueError:
            pass
        return original[:500]
    match = re.search(r'with message "(.*)"', fallback, re.S)
    if match:
        try:
            document = json.loads(match.group(1))
            if isinstance(document, dict) and isinstance(document.get("error"), str):
                return document["error"][:500]
        except ValueError:
            pass
    return fallback[:500] or "invalid request"


# --- the handler ----------------------------------------------------------------------------------

def _respond(status: int, document: dict[str, Any], request_id: str, extra_headers: dict[str, str] | None = None):
    headers = {"Content-Type": "application/json", "x-request-id": request_id, **(extra_headers or {})}
    return {"statusCode": status, "headers": headers, "body": json.dumps(document, separators=(",", ":"))}


@functools.cache
def configured_max_periods() -> int:
    """The periods limit, read once per cold start (a SettingsError names the bad variable)."""
    return max_periods_from_env(os.environ)


# The proxy event's fields this reads, and the JSON types each may have (or be absent or null).
EVENT_FIELDS = {"requestContext": (dict, "an object"), "headers": (dict, "an object"),
                "body": (str, "a string"), "isBase64Encoded": (bool, "true or false")}


def _check_event(event: Any) -> None:
    """Refuse an event that is not an API Gateway proxy event (a RequestError naming the field)."""
    if not isinstance(event, dict):
        raise RequestError("the event must be an API Gateway proxy event (a JSON object)")
    for name, (kind, described) in EVENT_FIELDS.items():
        if event.get(name) is not None and not isinstance(event[name], kind):
            raise RequestError(f"the event's {name} must be {described}, got {json_kind(event[name])}")
    if not all(isinstance(value, str) for value in (event.get("headers") or {}).values()):
        raise RequestError("the event's headers must map names to strings")


def _request_id(event: Any, context: Any) -> str:
    """API Gateway's request id, else the Lambda's."""
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    found = request_context.get("requestId") if isinstance(request_context, dict) else None
    return found if isinstance(found, str) and found else getattr(context, "aws_request_id", "unknown")


def _body_bytes(event: APIGatewayProxyEvent) -> bytes:
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise RequestError("request body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    start = time.perf_counter()
    request_id = _request_id(event, context)
    summary: dict[str, Any] = {"request_id": request_id}
    try:
        try:
            _check_event(event)
            proxy = APIGatewayProxyEvent(event)
            check_content_type(proxy.headers.get("content-type") if proxy.headers else None)
            check_content_encoding(proxy.headers.get("content-encoding") if proxy.headers else None)
            parsed = parse_request(_body_bytes(proxy), max_periods=configured_max_periods())
        except SettingsError as err:
            summary.update(status=503, error=str(err), error_code="Misconfigured")
            return _respond(503, {"error": f"the service is misconfigured: {err}", "request_id": request_id},
                            request_id)
        except RequestError as err:
            summary.update(status=err.status, error=err.message, error_code="InvalidRequest")
            return _respond(err.status, {"error": err.message, "request_id": request_id}, request_id)
        summary.update(parsed.summary())
        endpoint_start = time.perf_counter()
        try:
            document = invoke(parsed.to_dict(), request_id)
        except EndpointFailure as failure:
            summary.update(status=failure.status, error=failure.message, error_code=failure.code)
            headers = {"Retry-After": RETRY_AFTER[failure.status]} if failure.status in RETRY_AFTER else None
            return _respond(failure.status, {"error": failure.message, "request_id": request_id}, request_id, headers)
        finally:
            summary["endpoint_ms"] = round((time.perf_counter() - endpoint_start) * 1000, 1)
        model = document.get("model") if isinstance(document.get("model"), dict) else {}
        summary.update(status=200, model_version=model.get("version"),
                       **{k: len(document[k]) for k in ANSWERS if isinstance(document.get(k), list)})
        return _respond(200, document, request_id)
    except Exception:  # noqa: BLE001 - a bug here must not leak a stack trace to the client
        logger.exception("unhandled error")
        summary.update(status=500, error_code="InternalError")
        return _respond(500, {"error": "internal error", "request_id": request_id}, request_id)
    finally:
        summary["duration_ms"] = round((time.perf_counter() - start) * 1000, 1)
        status = summary.get("status", 500)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        if status >= 500:
            metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        elif status == 429:
            metrics.add_metric(name="Throttled", unit=MetricUnit.Count, value=1)
        elif status >= 400:
            metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        if "endpoint_ms" in summary:
            metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=summary["endpoint_ms"])
        logger.info("forecast request", extra=summary)
