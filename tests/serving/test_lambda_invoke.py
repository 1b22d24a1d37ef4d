"""The invoke Lambda: request rules shared with the app, the InvokeEndpoint call and its error mapping."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from types import SimpleNamespace

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from pipeline_code.serving import request as app_rules

from .conftest import ROOT

ENDPOINT = "forecast-endpoint"
CONTEXT = SimpleNamespace(function_name="invoke", memory_limit_in_mb=256, aws_request_id="lambda-req-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:invoke")


@pytest.fixture
def lam(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ForecastMlopsTest")
    monkeypatch.syspath_prepend(str(ROOT / "lambdas" / "invoke"))  # the Lambda's task root
    spec = importlib.util.spec_from_file_location("invoke_lambda_app", ROOT / "lambdas" / "invoke" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.runtime_client.cache_clear()
    return module


def event(body, content_type="application/json", base64_encoded=False, request_id="apigw-req-1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if base64_encoded:
        body = base64.b64encode(body.encode()).decode()
    headers = {"Content-Type": content_type} if content_type else {}
    return {"resource": "/forecast", "path": "/forecast", "httpMethod": "POST", "headers": headers,
            "body": body, "isBase64Encoded": base64_encoded,
            "requestContext": {"requestId": request_id, "stage": "prod"}}


def call(lam, evt):
    response = lam.handler(evt, CONTEXT)
    assert "Traceback" not in response["body"]
    return response["statusCode"], response["headers"], json.loads(response["body"])


SERVED = {"model": {"name": "harmonic-arima", "version": "v0003", "trained_at": "2026-11-25T00:00:00+00:00",
                    "metrics": {"cv_mse": 1.0}}, "conf": 0.9,
          "forecasts": [{"timestamp": "2017-01-27", "mean": 1.0, "lower": 0.5, "upper": 1.5}]}


# --- with moto's sagemaker-runtime -----------------------------------------------------------------

def queue_results(*bodies: str) -> None:
    import requests

    results = [{"Body": b, "ContentType": "application/json", "InvokedProductionVariant": "AllTraffic",
                "CustomAttributes": ""} for b in bodies]
    response = requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
                             json={"results": results})
    assert response.status_code == 201


def test_success_through_moto(lam, capsys, caplog):
    from moto import mock_aws

    with mock_aws():
        queue_results(json.dumps(SERVED))
        status, headers, doc = call(lam, event({"periods": "1", "conf": "0.9"}))
    assert status == 200 and doc == SERVED and headers["x-request-id"] == "apigw-req-1"
    # Powertools Metrics prints one EMF document with the request counter.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any("_aws" in line and "Requests" in line for line in lines)
    # One summary line per request (serverless endpoints have no data capture).
    summaries = [r for r in caplog.records if r.getMessage() == "forecast request"]
    assert len(summaries) == 1
    summary = summaries[0].__dict__
    assert summary["periods"] == 1 and summary["conf"] == 0.9 and summary["status"] == 200
    assert summary["forecasts"] == 1 and summary["model_version"] == "v0003" and "endpoint_ms" in summary


def test_invalid_endpoint_response_is_502_through_moto(lam):
    from moto import mock_aws

    with mock_aws():
        queue_results("this is not json")
        status, _, doc = call(lam, event({"periods": 2, "conf": 0.9}))
    assert status == 502 and doc["request_id"] == "apigw-req-1" and "invalid response" in doc["error"]


# --- errors moto cannot produce: botocore's Stubber -------------------------------------------------

def stubbed(lam):
    client = lam.runtime_client()
    return client, Stubber(client)


@pytest.mark.parametrize(
    ("code", "http_status", "message", "modeled", "expected", "fragment"),
    [
        ("ModelError", 424, 'Received client error (400) from primary with message "{"error": "periods bad"}"',
         {"OriginalStatusCode": 400, "OriginalMessage": '{"error": "periods bad"}'}, 400, "periods bad"),
        ("ModelError", 424, "Received client error (415) from primary with message \"plain text\"",
         {"OriginalStatusCode": 415, "OriginalMessage": "plain text"}, 400, "plain text"),
        ("ModelError", 424, "Received client error (404) from primary with message \"...\"",
         {"OriginalStatusCode": 404, "OriginalMessage": '{"error": "unknown item \'Z\'"}'}, 404, "unknown item 'Z'"),
        ("ModelError", 424, "Received server error (500) from primary with message \"boom\"",
         {"OriginalStatusCode": 500, "OriginalMessage": "boom"}, 502, "failed to produce"),
        ("ValidationError", 400, "Endpoint forecast-endpoint of account 123456789012 not found.", None, 503,
         "not available"),
        ("ValidationError", 400, "Body size exceeds the limit", None, 400, "Body size"),
        ("ValidationError", 400, "Request to arn:aws:sagemaker:eu-west-1:123456789012:endpoint/e is invalid", None,
         400, "Request to <redacted> is invalid"),
        ("ValidationError", 400, "Account 123456789012 may not", None, 400, "Account <redacted> may not"),
        ("ThrottlingException", 400, "Rate exceeded", None, 429, "too many requests"),
        ("ModelNotReadyException", 429, "Model not ready", None, 503, "starting or unavailable"),
        ("ServiceUnavailable", 503, "Service unavailable", None, 503, "unavailable"),
        ("InternalFailure", 500, "Internal failure", None, 502, "failed"),
        ("InternalDependencyException", 530, "Dependency", None, 502, "failed"),
    ],
)
def test_endpoint_error_mapping(lam, code, http_status, message, modeled, expected, fragment):
    _, stubber = stubbed(lam)
    stubber.add_client_error("invoke_endpoint", service_error_code=code, service_message=message,
                             http_status_code=http_status, modeled_fields=modeled)
    with stubber:
        status, headers, doc = call(lam, event({"periods": 2, "conf": 0.9}))
    assert status == expected and fragment in doc["error"], doc
    assert doc["request_id"] == "apigw-req-1" and headers["x-request-id"] == "apigw-req-1"
    assert "123456789012" not in doc["error"]
    if expected == 429:
        assert headers["Retry-After"] == "1"
    if expected == 503:  # a cold start (or no endpoint yet): the client retries later, not at once
        assert headers["Retry-After"] == "10"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(ReadTimeoutError(endpoint_url="https://runtime.sagemaker"), 503),
     (ConnectTimeoutError(endpoint_url="https://runtime.sagemaker"), 503),
     (EndpointConnectionError(endpoint_url="https://runtime.sagemaker"), 503),
     (RuntimeError("a bug"), 500)],
)
def test_transport_failures_and_bugs(lam, monkeypatch, exc, expected):
    client = lam.runtime_client()

    def fail(**kwargs):
        raise exc

    monkeypatch.setattr(client, "invoke_endpoint", fail)
    status, _, doc = call(lam, event({"periods": 2, "conf": 0.9}))
    assert status == expected and doc["request_id"] == "apigw-req-1"
    assert "a bug" not in doc["error"]


PANEL_ITEMS = {"model": SERVED["model"], "quantiles": [0.1, 0.9],
               "items": [{"item_id": "A", "forecasts": [{"timestamp": "2017-01-27", "mean": 1.0, "p10": 0.5,
                                                         "p90": 1.5}]}]}
PANEL_PAGE = {"model": SERVED["model"], "total": 1, "offset": 0, "limit": 10, "item_ids": ["A"], "next_offset": None}


@pytest.mark.parametrize(("sent", "forwarded", "served"), [
    ({"periods": "26", "conf": 0.9, "history": 5}, {"periods": 26, "conf": 0.9, "history": 5}, SERVED),
    ({"item_id": "A", "periods": 2, "quantiles": [0.9, 0.1]}, {"periods": 2, "quantiles": [0.1, 0.9], "item_id": "A"},
     {**SERVED, "item_id": "A"}),
    ({"item_ids": ["A"], "periods": 1, "quantiles": [0.1, 0.9]},
     {"periods": 1, "quantiles": [0.1, 0.9], "item_ids": ["A"]}, PANEL_ITEMS),
    ({"list_items": True, "limit": "10"}, {"list_items": True, "offset": 0, "limit": 10}, PANEL_PAGE),
])
def test_request_sent_to_the_endpoint(lam, sent, forwarded, served):
    _, stubber = stubbed(lam)
    expected = {"EndpointName": ENDPOINT, "Body": json.dumps(forwarded, separators=(",", ":")).encode(),
                "ContentType": "application/json", "Accept": "application/json",
                "CustomAttributes": "request-id=apigw-req-1"}
    stubber.add_response("invoke_endpoint", {"Body": io.BytesIO(json.dumps(served).encode()),
                                             "ContentType": "application/json"}, expected)
    with stubber:
        status, _, doc = call(lam, event(sent, base64_encoded=True))
        stubber.assert_no_pending_responses()
    assert status == 200 and doc == served


def test_non_ascii_item_ids_are_forwarded_as_compact_utf8_within_the_containers_limit(lam, monkeypatch):
    """100 ids of 200 "ü" are 40,631 bytes as UTF-8; with \\u escapes (ensure_ascii) they were forwarded as
    120,631 bytes, which the container refused (413) for a request the Lambda accepted."""
    ids = [f"{i:03d}" + "\u00fc" * 200 for i in range(100)]
    sent = json.dumps({"item_ids": ids, "periods": 1, "conf": 0.9}, ensure_ascii=False)
    assert len(sent.encode()) <= app_rules.MAX_BODY_BYTES
    forwarded = []

    def endpoint(**kwargs):
        forwarded.append(kwargs["Body"])
        items = [{"item_id": i, "forecasts": SERVED["forecasts"]} for i in ids]
        return {"Body": io.BytesIO(json.dumps({**PANEL_ITEMS, "items": items}).encode())}

    monkeypatch.setattr(lam.runtime_client(), "invoke_endpoint", endpoint)
    status, _, doc = call(lam, event(sent))
    assert status == 200 and len(doc["items"]) == 100
    assert len(forwarded[0]) <= len(sent.encode())  # what the Lambda accepted, the container accepts
    assert app_rules.parse_request(forwarded[0]).item_ids == tuple(ids)


@pytest.mark.parametrize(
    ("evt", "expected"),
    [(event({"periods": 0, "conf": 0.9}), 400), (event({"periods": 2, "conf": 1}), 400),
     (event("{"), 400), (event(None), 400), (event({"periods": 2, "conf": 0.9}, "text/plain"), 415),
     (event({"periods": 2, "conf": 0.9, "pad": "x" * app_rules.MAX_BODY_BYTES}), 413), (event({"periods": 2, "conf": 0.9, "x": 1}), 400),
     ({**event({"periods": 2, "conf": 0.9}), "headers": {"Content-Type": "application/json",
                                                         "Content-Encoding": "gzip"}}, 415)],
)
def test_invalid_requests_never_reach_the_endpoint(lam, evt, expected):
    _, stubber = stubbed(lam)  # no responses queued: a call would fail the test
    with stubber:
        status, _, doc = call(lam, evt)
    assert status == expected and doc["request_id"] == "apigw-req-1"


def test_client_timeouts_and_bounded_retries(lam, monkeypatch):
    monkeypatch.setenv("INVOKE_READ_TIMEOUT", "7")
    lam.runtime_client.cache_clear()
    config = lam.runtime_client().meta.config
    assert config.connect_timeout == 2 and config.read_timeout == 7
    # One attempt: a retried read timeout would run past API Gateway's 29 s (stacks/serving_api.py).
    assert config.retries["total_max_attempts"] == 1 and config.retries["mode"] == "standard"


# --- the Lambda enforces the serving app's own rules ---------------------------------------------

def test_the_lambda_shares_the_serving_apps_request_module(lam):
    link = ROOT / "lambdas" / "invoke" / "pipeline_code"
    assert link.is_symlink() and link.resolve() == (ROOT / "pipeline_code").resolve()
    assert lam.parse_request is app_rules.parse_request


@pytest.mark.parametrize("value", ["0", "abc", "-5", "10001", "1e3"])
def test_a_bad_periods_limit_is_a_clear_503_not_a_500(lam, monkeypatch, value):
    """FORECAST_MAX_PERIODS is read once, by the one function every server uses."""
    monkeypatch.setenv("FORECAST_MAX_PERIODS", value)
    lam.configured_max_periods.cache_clear()
    status, _, body = call(lam, event({"periods": 3, "conf": 0.9}))
    assert status == 503 and "FORECAST_MAX_PERIODS" in body["error"] and body["request_id"] == "apigw-req-1"


def test_the_periods_limit_comes_from_the_environment(lam, monkeypatch):
    monkeypatch.setenv("FORECAST_MAX_PERIODS", "12")
    lam.configured_max_periods.cache_clear()
    status, _, body = call(lam, event({"periods": 13, "conf": 0.9}))
    assert status == 400 and "periods" in body["error"]


AGREEMENT_CASES = [
    (b'{"periods": 0, "conf": 0.9}', "application/json"),
    (b'{"periods": 105, "conf": 0.9}', "application/json"),
    (b'{"periods": 1, "conf": 1}', "application/json"),
    (b'{"periods": 1, "conf": 0}', "application/json"),
    (b'{"periods": true, "conf": 0.9}', "application/json"),
    (b'{"periods": 1, "conf": NaN}', "application/json"),
    (b'{"periods": 1, "conf": 1e999}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "periods": 2}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "extra": 2}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "history": 157}', "application/json"),
    (b'{"periods": "026", "conf": "1e-1"}', "application/json"),
    (b'{"periods": 1}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "quantiles": [0.5]}', "application/json"),
    (b'{"periods": 1, "quantiles": []}', "application/json"),
    (b'{"periods": 1, "quantiles": [0.5, 0.5]}', "application/json"),
    (b'{"periods": 1, "quantiles": [0.0005]}', "application/json"),
    (b'{"periods": 1, "quantiles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]}', "application/json"),
    (b'{"periods": 1, "quantiles": ["0.5"]}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_id": ""}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_id": "a\\u0007"}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_id": 7}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_id": "A", "item_ids": ["B"]}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_ids": []}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "item_ids": ["A", "A"]}', "application/json"),
    (json.dumps({"periods": 1, "conf": 0.9, "item_ids": [str(i) for i in range(101)]}).encode(), "application/json"),
    (json.dumps({"periods": 1, "conf": 0.9, "item_id": "x" * 257}).encode(), "application/json"),
    (b'{"list_items": false}', "application/json"),
    (b'{"list_items": true, "periods": 1}', "application/json"),
    (b'{"list_items": true, "limit": 1001}', "application/json"),
    (b'{"list_items": true, "offset": -1}', "application/json"),
    (b'{"periods": 1, "conf": 0.9, "offset": 3}', "application/json"),
    (b"[]", "application/json"),
    (b"{", "application/json"),
    (b"", "application/json"),
    (b'{"periods": 1, "conf": 0.9}', "text/plain"),
    (b'{"periods": 1, "conf": 0.9}', "application/json; charset=iso-8859-1"),
    (b"x" * (app_rules.MAX_BODY_BYTES + 1), "application/json"),
]


def outcome_app(raw: bytes, content_type: str | None):
    try:
        app_rules.check_content_type(content_type)
        app_rules.parse_request(raw)
    except app_rules.RequestError as err:
        return err.status, err.message
    raise AssertionError("every case here is invalid")


@pytest.mark.parametrize(("raw", "content_type"), AGREEMENT_CASES)
def test_the_handler_refuses_what_the_app_refuses_with_the_same_status_and_message(lam, raw, content_type):
    evt = event(raw.decode("latin-1"), content_type=content_type)
    if raw == b"\xff":
        evt = event(base64.b64encode(raw).decode(), content_type=content_type)
    status, _, body = call(lam, evt)
    assert (status, body["error"]) == outcome_app(raw, content_type)


# --- events that are not API Gateway proxy events: 400, never a 500 or an exception ----------------

@pytest.mark.parametrize(("change", "fragment"), [
    ({"body": {"periods": 2, "conf": 0.9}}, "the event's body must be a string, got an object"),
    ({"body": 7}, "the event's body must be a string, got a number"),
    ({"requestContext": "req-1"}, "the event's requestContext must be an object, got a string"),
    ({"headers": ["content-type"]}, "the event's headers must be an object, got an array"),
    ({"headers": {"content-type": 3}}, "the event's headers must map names to strings"),
    ({"isBase64Encoded": "yes"}, "the event's isBase64Encoded must be true or false, got a string"),
])
def test_a_malformed_event_is_a_400(lam, change, fragment):
    evt = {**event({"periods": 2, "conf": 0.9}), **change}
    _, stubber = stubbed(lam)  # no responses queued: a call would fail the test
    with stubber:
        status, headers, doc = call(lam, evt)
    assert status == 400 and doc["error"] == fragment
    expected_id = "lambda-req-1" if "requestContext" in change else "apigw-req-1"
    assert doc["request_id"] == headers["x-request-id"] == expected_id


def test_a_surrogate_item_id_is_a_400_and_the_request_is_logged(lam, caplog):
    """A lone surrogate ("\\ud800" in JSON) is no Unicode scalar value: refused, and the summary line
    (which could not be encoded as UTF-8 with it) is written."""
    _, stubber = stubbed(lam)  # no responses queued: a call would fail the test
    with stubber:
        status, _, doc = call(lam, event('{"item_id": "\\ud800", "periods": 2, "conf": 0.9}'))
    assert status == 400 and "item_id: an item id must be valid Unicode" in doc["error"]
    assert "U+D800" in doc["error"]
    summary = next(r for r in caplog.records if r.getMessage() == "forecast request")
    assert summary.status == 400
    lam.logger.registered_formatter.format(summary).encode("utf-8")  # the line as the Lambda writes it
