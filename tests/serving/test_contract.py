"""The serving container's HTTP contract, against a real uvicorn process on loopback."""

from __future__ import annotations

import http.client as httpclient
import signal
import json
import math
import shutil

import pytest

from pipeline_code.serving.request import MAX_BODY_BYTES

from .conftest import http, post_json, raw_request, start_server

MAX_PERIODS = 104


def invoke(open_server, document, headers=None):
    return post_json(f"{open_server.url}/invocations", document, headers)


def test_ping_ok_and_model_metadata(open_server):
    status, _, body = http("GET", f"{open_server.url}/ping")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_forecast_shape(open_server, model_dir):
    status, headers, doc = invoke(open_server, {"periods": 26, "conf": 0.9})
    assert status == 200, doc
    assert headers["content-type"] == "application/json"
    assert set(doc) == {"model", "conf", "forecasts"}
    assert doc["conf"] == 0.9
    model = doc["model"]
    for key in ("name", "version", "trained_at", "metrics"):
        assert key in model
    assert model["name"] == "harmonic-arima" and "cv_mse" in model["metrics"]
    rows = doc["forecasts"]
    assert len(rows) == 26
    # The first forecast is the first period after the last observation (2017-01-20, a Friday).
    last = json.loads((model_dir / "model.json").read_text())["last_timestamp"]
    assert last == "2017-01-20" and rows[0]["timestamp"] == "2017-01-27" and rows[1]["timestamp"] == "2017-02-03"
    for row in rows:
        assert set(row) == {"timestamp", "mean", "lower", "upper"}
        assert row["lower"] < row["upper"]
        assert all(math.isfinite(row[k]) for k in ("mean", "lower", "upper"))


def test_history_extension(open_server):
    status, _, doc = invoke(open_server, {"periods": 2, "conf": 0.8, "history": 10})
    assert status == 200
    assert len(doc["history"]) == 10
    assert doc["history"][-1]["timestamp"] == "2017-01-20"
    assert doc["history"][0]["timestamp"] < doc["history"][-1]["timestamp"]
    status, _, doc = invoke(open_server, {"periods": 2, "conf": 0.8, "history": 0})
    assert status == 200 and "history" not in doc
    assert invoke(open_server, {"periods": 2, "conf": 0.8, "history": 157})[0] == 400


@pytest.mark.parametrize(
    ("periods", "expected"),
    [(0, 400), (1, 200), (MAX_PERIODS, 200), (MAX_PERIODS + 1, 400), (-1, 400), ("26", 200), ("0", 400),
     ("105", 400), ("026", 400), (" 26", 400), ("26.0", 400), (26.0, 200), (26.5, 400), (True, 400),
     (None, 400), ([26], 400), ({"n": 1}, 400), (10**30, 400), ("1e1", 400)],
)
def test_periods(open_server, periods, expected):
    status, _, doc = invoke(open_server, {"periods": periods, "conf": 0.9})
    assert status == expected, doc
    if expected == 200:
        assert len(doc["forecasts"]) == int(periods)
    else:
        assert "periods" in doc["error"]


@pytest.mark.parametrize(
    ("conf", "expected"),
    [(0, 400), (1, 400), (0.5, 200), (1e-9, 200), (0.0, 400), (1.0, 400), (-0.1, 400), (1.5, 400),
     ("0.9", 200), (".95", 200), ("0", 400), ("0.0", 400), ("1", 400), ("1e-9", 400), ("0.9 ", 400),
     (False, 400), (None, 400), (math.nextafter(1.0, 0.0), 200), (5e-324, 200), ("abc", 400)],
)
def test_conf(open_server, conf, expected):
    status, _, doc = invoke(open_server, {"periods": 3, "conf": conf})
    assert status == expected, doc
    if expected == 200:
        assert doc["conf"] == float(conf)
        assert all(r["lower"] <= r["upper"] for r in doc["forecasts"])
    else:
        assert "conf" in doc["error"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"   ", b"[]", b"null", b"26", b'"x"', b'{"periods": 3, "conf": NaN}',
     b'{"periods": 3, "conf": Infinity}', b'{"periods": 3, "conf": -Infinity}', b'{"periods": 3, "conf": 1e400}',
     b'{"periods": 3, "conf": 0.9, "periods": 4}', b'{"periods": 3}', b'{"conf": 0.9}', b"\xff\xfe",
     b'{"periods": 3, "conf": 0.9}garbage', b"[" * 5000 + b"]" * 5000, b'{"periods": 1' + b"0" * 5000 + b', "conf": 0.9}'],
)
def test_malformed_bodies_are_400(open_server, raw):
    status, headers, body = http("POST", f"{open_server.url}/invocations", raw, {"content-type": "application/json"})
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error"}


def test_unknown_fields_rejected(open_server):
    status, _, doc = invoke(open_server, {"periods": 3, "conf": 0.9, "horizon": 5})
    assert status == 400 and "unknown field" in doc["error"] and "horizon" in doc["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          "application/json; charset=latin-1", "multipart/form-data"])
def test_wrong_content_type_is_415(open_server, content_type):
    status, _, body = http("POST", f"{open_server.url}/invocations", b'{"periods": 3, "conf": 0.9}',
                           {"content-type": content_type})
    assert status == 415
    assert "application/json" in json.loads(body)["error"] or "charset" in json.loads(body)["error"]


@pytest.mark.parametrize("content_type", [None, "application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8"])
def test_json_content_types_accepted(open_server, content_type):
    # http.client, because urllib adds a form content type when there is none.
    conn = httpclient.HTTPConnection("127.0.0.1", open_server.port, timeout=10)
    conn.request("POST", "/invocations", body=b'{"periods": 3, "conf": 0.9}',
                 headers={"content-type": content_type} if content_type else {})
    response = conn.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["forecasts"]) == 3
    conn.close()


def test_oversize_body_is_413(open_server):
    raw = json.dumps({"periods": 3, "conf": 0.9, "pad": "x" * MAX_BODY_BYTES}).encode()
    status, _, body = http("POST", f"{open_server.url}/invocations", raw, {"content-type": "application/json"})
    assert status == 413 and "exceeds" in json.loads(body)["error"]


def test_oversize_chunked_body_is_413(open_server):
    conn = httpclient.HTTPConnection("127.0.0.1", open_server.port, timeout=10)
    chunks = (b"x" * 4096 for _ in range(MAX_BODY_BYTES // 4096 + 2))
    conn.request("POST", "/invocations", body=chunks, headers={"content-type": "application/json"},
                 encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert "exceeds" in json.loads(response.read())["error"]
    conn.close()


def test_errors_for_other_routes_are_json(open_server):
    status, _, body = http("GET", f"{open_server.url}/invocations")
    assert status == 405 and "error" in json.loads(body)
    status, _, body = http("GET", f"{open_server.url}/nope")
    assert status == 404 and "error" in json.loads(body)


def test_request_id_and_one_log_line_per_request(open_server):
    status, headers, _ = invoke(open_server, {"periods": 1, "conf": 0.9}, {"x-request-id": "test-req-123"})
    assert status == 200 and headers["x-request-id"] == "test-req-123"
    status, headers, _ = invoke(open_server, {"periods": 0, "conf": 0.9})
    generated = headers["x-request-id"]
    assert status == 400 and len(generated) == 32

    def logged():
        ids = [r.get("request_id") for r in open_server.log_records() if r.get("event") == "request"]
        return "test-req-123" in ids and generated in ids

    open_server.wait_until(logged, "the request log lines")
    lines = [r for r in open_server.log_records() if r.get("request_id") == "test-req-123"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "POST" and line["path"] == "/invocations" and line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["level"] == "info"
    assert "Traceback" not in open_server.logs()


SAGEMAKER_ID = ("x-amzn-sagemaker-custom-attributes", "trace=1, request-id=from-sagemaker")


@pytest.mark.parametrize(("headers", "expected"), [
    ([("x-request-id", "from-caller"), SAGEMAKER_ID], "from-caller"),
    ([SAGEMAKER_ID, ("x-request-id", "from-caller")], "from-caller"),  # whatever the order
    ([SAGEMAKER_ID], "from-sagemaker"),
    ([("x-request-id", "caf\u00e9"), SAGEMAKER_ID], "from-sagemaker"),  # latin-1 bytes: not ASCII
    ([("x-request-id", "caf\u00e9".encode())], None),  # UTF-8 bytes: not ASCII either
    ([("x-request-id", "x" * 129)], None),
])
def test_request_id_precedence_and_ascii_only(open_server, headers, expected):
    status, answer, _ = raw_request(open_server.port, "GET", "/ping", headers)
    assert status == 200
    if expected is None:  # a new one
        assert len(answer["x-request-id"]) == 32 and answer["x-request-id"].isalnum()
    else:
        assert answer["x-request-id"] == expected


@pytest.mark.parametrize(("method", "path"),
                         [("POST", "/invocations/"), ("GET", "/ping/"), ("POST", "/forecast/")])
def test_a_trailing_slash_is_an_unknown_route_not_a_redirect(server, method, path):
    """No redirect (built from the client's Host header, past the API key check): the JSON 404."""
    status, headers, body = raw_request(server.port, method, path, [("host", "evil.example")],
                                        json.dumps({"periods": 1, "conf": 0.9}).encode())
    assert status == 404 and "location" not in headers and json.loads(body) == {"error": "Not Found"}


def test_head_ping(open_server):
    status, headers, body = raw_request(open_server.port, "HEAD", "/ping")
    assert status == 200 and body == b"" and headers["content-type"] == "application/json"


def test_serve_max_periods_has_the_environment_variables_range(capsys):
    import argparse

    from pipeline_code.serving.cli import add_serve_arguments

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args(["--max-periods", "10000"]).max_periods == 10000
    for bad in ("1000000", "0", "abc"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--max-periods", bad])
        assert f"--max-periods: expected an integer in 1..10000, got '{bad}'" in capsys.readouterr().err


def test_openapi_documents_the_contract(server):
    status, _, body = http("GET", f"{server.url}/openapi.json")
    schema = json.loads(body)
    assert status == 200
    op = schema["paths"]["/invocations"]["post"]
    request = op["requestBody"]["content"]["application/json"]["schema"]
    assert request["additionalProperties"] is False and request["required"] == ["periods"]
    assert request["oneOf"] == [{"required": ["conf"]}, {"required": ["quantiles"]}]
    assert "item_id" not in request["properties"]  # a single-series model; a panel's schema takes items
    assert {"200", "400", "404", "413", "415", "503"} <= set(op["responses"])
    assert "/forecast" in schema["paths"]


def test_ping_503_until_the_model_appears_then_200(model_dir, tmp_path):
    """Start on an empty folder: /ping is 503 (and /invocations 503); copy a real artifact in: 200."""
    folder = tmp_path / "model"
    folder.mkdir()
    srv = start_server(["serve", "--model", str(folder)], tmp_path, env={"FORECAST_MAX_PERIODS": "30"})
    try:
        srv.wait_listening()
        status, _, body = http("GET", f"{srv.url}/ping")
        assert status == 503 and json.loads(body)["status"] == "unavailable"
        assert "model.json" in json.loads(body)["error"]
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 3, "conf": 0.9})
        assert status == 503 and "no model loaded" in doc["error"]
        # A broken artifact keeps it at 503 (loading failed) ...
        (folder / "model.json").write_text("{not json")
        srv.wait_until(lambda: "model.json is not valid JSON" in (http("GET", f"{srv.url}/ping")[2].decode()),
                       "the load failure to be reported")
        assert srv.ping() == 503
        # ... a real one flips it to 200.
        shutil.copy(model_dir / "arrays.npz", folder / "arrays.npz")
        shutil.copy(model_dir / "model.json", folder / "model.json")
        srv.wait_ready()
        # FORECAST_MAX_PERIODS applies.
        assert post_json(f"{srv.url}/invocations", {"periods": 30, "conf": 0.9})[0] == 200
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 31, "conf": 0.9})
        assert status == 400 and "1 to 30" in doc["error"]
    finally:
        srv.stop()


def test_graceful_shutdown_on_sigterm(model_dir, tmp_path):
    srv = start_server(["serve", "--model", str(model_dir)], tmp_path)
    srv.wait_ready()
    assert post_json(f"{srv.url}/invocations", {"periods": 3, "conf": 0.9})[0] == 200
    # uvicorn drains, runs the lifespan exit, then re-raises the captured SIGTERM: exit by signal 15.
    assert srv.stop() in (0, -signal.SIGTERM)
    events = [r.get("event") for r in srv.log_records()]
    assert "model_loaded" in events and events[-1] != "error"
    assert "shutdown" in events
    assert any(r.get("message") == "Application shutdown complete." for r in srv.log_records())
    assert "Traceback" not in srv.logs()
