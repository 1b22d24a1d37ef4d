"""The local gateway: POST /forecast behind x-api-key, revocation, per-key rate limit (429)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from pipeline_code.serving.gateway import KeyStore, UsagePlan

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
    # /invocations (the container contract) has no key and no limit.
    assert post_json(f"{gateway.url}/invocations", BODY)[0] == 200


def test_usage_plan_burst_and_rate():
    plan = UsagePlan(rate=0.05, burst=2)
    assert plan.hit("a") is None and plan.hit("a") is None
    # The 3rd is refused within the same second (burst 2), the 4th in any case (3 per minute).
    plan.hit("a")
    fourth = plan.hit("a")
    assert fourth is not None and fourth >= 1
    assert plan.hit("b") is None
    with pytest.raises(ValueError):
        UsagePlan(rate=0, burst=1)


def test_forecast_route_only_with_a_key_file(server, model_dir, tmp_path):
    srv = start_server(["serve", "--model", str(model_dir)], tmp_path)
    try:
        srv.wait_ready()
        assert http("POST", f"{srv.url}/forecast", b"{}", {"content-type": "application/json"})[0] == 404
    finally:
        srv.stop()
