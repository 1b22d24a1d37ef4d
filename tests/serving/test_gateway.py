"""The local gateway: POST /forecast and /invocations behind x-api-key, revocation, a corrupted key file,
ambiguous keys, and the per-key token bucket (429)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from pipeline_code.serving.gateway import KeyFileError, KeyStore, UsagePlan, exposure_warning

from .conftest import ROOT, gateway_server, http, post_json, start_server

BODY = {"periods": 3, "conf": 0.9}


def key_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_code.serving.cli", "serve", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture
def gateway(model_dir, tmp_path):
    key_file = tmp_path / "keys" / "api-keys.json"
    with gateway_server(model_dir, key_file, tmp_path, rate="0.05", burst="2") as srv:
        yield srv


def test_key_created_once_with_mode_0600_and_printed_once(gateway):
    key_file = gateway.extra["key_file"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = json.loads(key_file.read_text())["keys"][0]
    assert key["key"].startswith("fmk_") and key["revoked"] is False
    assert key["key"] in gateway.out_path.read_text()
    # A second server on the same file does not print the key again.
    listing = key_cli("--api-key-file", str(key_file), "--list-keys")
    assert listing.returncode == 0 and key["id"] in listing.stdout and key["key"] not in listing.stdout


def test_missing_wrong_and_valid_key(gateway):
    store = KeyStore(gateway.extra["key_file"])
    url = f"{gateway.url}/forecast"
    status, _, doc = post_json(url, BODY)
    assert status == 403 and "API key" in doc["error"]
    status, _, doc = post_json(url, BODY, {"x-api-key": "fmk_wrong"})
    assert status == 403
    status, _, doc = post_json(url, BODY, {"x-api-key": store.active_key().key})
    assert status == 200 and len(doc["forecasts"]) == 3
    # Validation still applies behind the key.
    status, _, doc = post_json(url, {"periods": 0, "conf": 0.9}, {"x-api-key": store.active_key().key})
    assert status == 400 and "periods" in doc["error"]


def test_whitespace_around_the_key_is_ignored(server):
    key = KeyStore(server.extra["key_file"]).active_key().key
    for presented in (f" {key}", f"{key} ", f"\t{key}\t "):
        status, _, doc = post_json(f"{server.url}/forecast", BODY, {"x-api-key": presented})
        assert status == 200, (presented, doc)
    assert KeyStore(server.extra["key_file"]).authenticate(f"{key} \t").key == key


def test_revoked_key_is_refused_by_the_running_server(gateway):
    key_file = gateway.extra["key_file"]
    first = KeyStore(key_file).active_key()
    issued = key_cli("--api-key-file", str(key_file), "--issue-key")
    assert issued.returncode == 0
    second = KeyStore(key_file).active_key()
    assert second.id != first.id and second.key in issued.stdout
    revoked = key_cli("--api-key-file", str(key_file), "--revoke-key", first.id)
    assert revoked.returncode == 0, revoked.stderr
    assert post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": first.key})[0] == 403
    assert post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": second.key})[0] == 200
    assert key_cli("--api-key-file", str(key_file), "--revoke-key", "key-nope").returncode == 1
    again = key_cli("--api-key-file", str(key_file), "--revoke-key", first.id)
    assert again.returncode == 0 and f"{first.id} was already revoked at " in again.stdout
    empty = key_cli("--api-key-file", str(key_file), "--revoke-key", "")
    assert empty.returncode == 1 and "no key ''" in empty.stderr


def test_rate_limit_per_key(gateway):
    """burst 2 per second and 0.05/s (3 per minute): the 4th request within a minute is always 429."""
    key_file = gateway.extra["key_file"]
    key = KeyStore(key_file).active_key()
    statuses, retry_after = [], None
    for _ in range(4):
        status, headers, _ = post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": key.key})
        statuses.append(status)
        retry_after = headers.get("retry-after", retry_after)
    assert statuses[:2] == [200, 200] and statuses[3] == 429 and set(statuses) <= {200, 429}
    assert retry_after is not None and int(retry_after) >= 1
    # The limit is per key: a fresh key still gets through.
    other = KeyStore(key_file).issue()
    assert post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": other.key})[0] == 200
    # /invocations shares the key's bucket: the first key is still throttled there.
    assert post_json(f"{gateway.url}/invocations", BODY, {"x-api-key": key.key})[0] == 429


def test_invocations_is_behind_the_key_in_gateway_mode(gateway):
    key = KeyStore(gateway.extra["key_file"]).active_key().key
    status, _, doc = post_json(f"{gateway.url}/invocations", BODY)
    assert status == 403 and "x-api-key" in doc["error"]
    assert post_json(f"{gateway.url}/invocations", BODY, {"x-api-key": "fmk_wrong"})[0] == 403
    status, _, doc = post_json(f"{gateway.url}/invocations", BODY, {"x-api-key": key})
    assert status == 200 and len(doc["forecasts"]) == 3


def test_two_api_key_headers_are_refused(gateway):
    """Two x-api-key headers (even one valid) are ambiguous credentials: 400, on both routes."""
    key = KeyStore(gateway.extra["key_file"]).active_key().key
    body = json.dumps(BODY).encode()
    for path in ("/forecast", "/invocations"):
        for pair in ((key, "fmk_other"), ("fmk_other", key), (key, key)):
            status, doc = raw_post(gateway.port, path, body, [("x-api-key", pair[0]), ("x-api-key", pair[1])])
            assert status == 400 and "x-api-key" in doc["error"] and "exactly one" in doc["error"]


def raw_post(port: int, path: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, dict]:
    """A POST with repeated headers (urllib would merge them)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path)
        for name, value in [("content-type", "application/json"), ("content-length", str(len(body))), *headers]:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_burst_then_rate_as_a_token_bucket(model_dir, tmp_path):
    """burst 5 at ~0 per second: the first 5 pass at once (a bucket of 5), the 6th is 429."""
    key_file = tmp_path / "keys.json"
    with gateway_server(model_dir, key_file, tmp_path, rate="0.0001", burst="5") as srv:
        key = KeyStore(key_file).active_key().key
        statuses = [post_json(f"{srv.url}/forecast", BODY, {"x-api-key": key})[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_usage_plan_is_a_token_bucket():
    """API Gateway's semantics: a bucket of `burst` tokens, refilled at `rate` per second."""
    now = [0.0]
    plan = UsagePlan(rate=2.0, burst=3, clock=lambda: now[0])
    assert [plan.hit("a") for _ in range(3)] == [None, None, None]
    assert plan.hit("a") == 1  # empty: 0.5 s to the next token, rounded up to whole seconds
    assert plan.hit("b") is None  # per key
    now[0] = 0.5
    assert plan.hit("a") is None and plan.hit("a") == 1  # one token back after 1/rate seconds
    now[0] = 100.0
    assert [plan.hit("a") for _ in range(4)] == [None, None, None, 1]  # refilled to `burst`, not more
    # Steady state: `rate` per second, e.g. 20 requests in 10 s at 2/s after the burst is spent.
    now[0], allowed = 200.0, 0
    for step in range(1000):
        now[0] = 200.0 + step / 100
        allowed += plan.hit("a") is None
    assert allowed == 3 + 20 - 1  # burst + rate x 9.99 s, the last token not yet whole
    for rate, burst in ((0, 1), (1, 0), (float("inf"), 1), (float("nan"), 1)):
        with pytest.raises(ValueError):
            UsagePlan(rate=rate, burst=burst)


def test_a_corrupted_key_file_is_a_503_and_a_logged_error(gateway):
    """A key file that turns corrupted: 503 with a message (not a 500 with a traceback), one log line
    naming the file; fixed again: the keys work again."""
    key_file = gateway.extra["key_file"]
    good = key_file.read_text()
    key = KeyStore(key_file).active_key().key
    for broken in (b'{"keys": [{"id": "k"}]}', b"{not json", b"[" * 100000, b'{"keys": 3}', b"\xff\xfe"):
        key_file.write_bytes(broken)  # each a different size, so the server sees a change
        status, _, doc = post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": key})
        assert status == 503 and "API key file" in doc["error"], (broken[:20], doc)
        assert str(key_file) not in doc["error"]
        assert post_json(f"{gateway.url}/invocations", BODY, {"x-api-key": key})[0] == 503
    errors = [r for r in gateway.log_records() if r.get("event") == "key_file_error"]
    assert errors and all(str(key_file) in r["reason"] for r in errors)
    assert "missing field 'key'" in errors[0]["reason"]
    assert "Traceback" not in gateway.logs()
    key_file.write_text(good)
    assert post_json(f"{gateway.url}/forecast", BODY, {"x-api-key": key})[0] == 200


def test_a_corrupted_key_file_stops_start_up_with_a_clear_error(model_dir, tmp_path):
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"keys": [{"key": "fmk_x"}]}')
    with pytest.raises(KeyFileError, match="missing field 'id'"):
        KeyStore(key_file)
    key_file.write_text('{"keys": [{"id": "k1", "key": "fmk_x", "revoked": "false"}]}')  # a string, not false
    with pytest.raises(KeyFileError, match="'revoked' must be true or false, found 'false'"):
        KeyStore(key_file)
    key_file.write_text('{"keys": [{"key": "fmk_x"}]}')
    srv = start_server(["serve", "--model", str(model_dir), "--api-key-file", str(key_file)], tmp_path)
    assert srv.process.wait(timeout=60) == 2
    assert f"serve: API key file {str(key_file)!r} is malformed (missing field 'id')" in srv.logs()
    assert "Traceback" not in srv.logs()


def test_forecast_route_only_with_a_key_file(server, model_dir, tmp_path):
    srv = start_server(["serve", "--model", str(model_dir)], tmp_path)
    try:
        srv.wait_ready()
        assert http("POST", f"{srv.url}/forecast", b"{}", {"content-type": "application/json"})[0] == 404
    finally:
        srv.stop()


def test_a_key_file_others_may_read_is_named_with_the_fix(tmp_path):
    store, _ = KeyStore.open_or_create(tmp_path / "keys.json")
    assert exposure_warning(tmp_path / "keys.json") is None  # written 0600
    (tmp_path / "keys.json").chmod(0o644)
    assert exposure_warning(tmp_path / "keys.json") == (
        f"API key file {tmp_path / 'keys.json'} has mode 0644: other users may read the keys; "
        f"chmod 600 {tmp_path / 'keys.json'}")
