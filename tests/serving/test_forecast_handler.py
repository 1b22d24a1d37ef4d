"""The forecast routes in process (no server): ForecastHandler's header rules, conf at the edges of (0, 1),
the OpenAPI schema of the model being served, and `serve` on a busy port."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import socket

import pytest

from pipeline_code.serving import server
from pipeline_code.serving.app import ForecastHandler, ModelHolder, create_app
from pipeline_code.serving.cli import main as serving_main

from .test_stored_periods import STORED, path_copy

BODY = b'{"periods": 3, "conf": 0.9}'
JSON_TYPE = ("content-type", "application/json")


@pytest.fixture(scope="module")
def holder(model_dir):
    loaded = ModelHolder(model_dir, max_periods=104)
    assert loaded.refresh(), loaded.error
    return loaded


def handle(holder, headers, body=BODY):
    """(status, JSON document) of POST /invocations with these header pairs, as the ASGI fast path calls it."""
    async def chunks():
        yield body

    handler = ForecastHandler(holder, max_periods=104, api_keys=None)
    raw_headers = [(name.encode(), value.encode()) for name, value in headers]
    status, raw, _ = asyncio.run(handler("/invocations", raw_headers, chunks()))
    return status, json.loads(raw)


def test_a_compressed_body_is_415_not_invalid_utf8(holder):
    for coding in ("gzip", "GZIP", "identity, gzip"):
        status, doc = handle(holder, [JSON_TYPE, ("content-encoding", coding)], gzip.compress(BODY))
        assert status == 415 and "unsupported content encoding" in doc["error"], doc
    status, doc = handle(holder, [JSON_TYPE, ("content-encoding", "identity")])
    assert status == 200 and len(doc["forecasts"]) == 3


@pytest.mark.parametrize("types", [("text/plain", "application/json"), ("application/json", "application/json")])
def test_two_content_type_headers_are_ambiguous(holder, types):
    """Only the last one counted: text/plain then application/json was read as JSON."""
    status, doc = handle(holder, [("content-type", t) for t in types])
    assert status == 400 and doc["error"] == "ambiguous request: 2 content-type headers; send exactly one"


@pytest.mark.parametrize(("conf", "echoed"), [(b"0.99999999999999999", math.nextafter(1.0, 0.0)),
                                              (b'"0.99999999999999999"', math.nextafter(1.0, 0.0)),
                                              (b"1e-400", math.ulp(0.0))])
def test_a_conf_that_rounds_to_1_or_0_is_served_at_the_nearest_level_inside(holder, conf, echoed):
    status, doc = handle(holder, [JSON_TYPE], b'{"periods": 3, "conf": %s}' % conf)
    assert status == 200 and doc["conf"] == echoed
    assert all(math.isfinite(row[k]) and row["lower"] <= row["mean"] <= row["upper"]
               for row in doc["forecasts"] for k in ("lower", "mean", "upper"))


def _periods_maximum(app) -> int:
    operation = app.openapi()["paths"]["/invocations"]["post"]
    return operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["periods"]["anyOf"][0][
        "maximum"]


def test_the_openapi_schema_publishes_the_models_periods_limit(model_dir, tmp_path):
    """A model that stores its path serves at most its stored periods: the schema says so once it is loaded
    (it was the server's --max-periods, cached on whether the model is a panel only)."""
    app = create_app(path_copy(model_dir, tmp_path / "model"), max_periods=104)
    assert _periods_maximum(app) == 104  # no model yet: the server's limit
    assert app.state.holder.refresh(), app.state.holder.error
    assert _periods_maximum(app) == STORED
    computed = create_app(model_dir, max_periods=104)
    assert computed.state.holder.refresh()
    assert _periods_maximum(computed) == 104


def test_serve_refuses_a_busy_port_before_announcing_or_creating_anything(model_dir, tmp_path, capsys, monkeypatch):
    def must_not_serve(*args, **kwargs):
        raise AssertionError("serve() was called on a busy port")

    monkeypatch.setattr(server, "serve", must_not_serve)
    key_file = tmp_path / "keys.json"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = serving_main(["serve", "--model", str(model_dir), "--port", str(port), "--api-key-file", str(key_file)])
    out, err = capsys.readouterr()
    assert code == 2 and f"serve: cannot serve on 127.0.0.1:{port}" in err and f"is port {port} free?" in err
    assert "Serving" not in out and not key_file.exists()
