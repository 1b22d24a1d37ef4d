"""Fixtures for the serving tests: one real model artifact per session and real uvicorn processes."""

from __future__ import annotations

import contextlib

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import BUNDLED, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A real artifact: fitted on the bundled series (the small window keeps it fast)."""
    from pipeline_code.engine.dataset import load_series
    from pipeline_code.engine.estimator import HarmonicArimaForecaster
    from pipeline_code.engine.core.spec import ModelSpec

    folder = tmp_path_factory.mktemp("model") / "model"
    series = load_series(BUNDLED, freq="W-FRI")
    HarmonicArimaForecaster(ModelSpec(fourier_k=3), window=200, horizon=26).fit(series).artifact.save(folder)
    return folder


def http(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib request: (status, lower-cased headers, body); HTTP errors are returned, not raised."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def raw_request(port: int, method: str, path: str, headers: list[tuple[str, str | bytes]] = (),
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request as sent, with repeated headers and no redirects followed: (status, lower-cased
    headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def post_json(url: str, document, headers: dict[str, str] | None = None):
    status, hdrs, body = http("POST", url, json.dumps(document),
                              {"content-type": "application/json", **(headers or {})})
    return status, hdrs, json.loads(body) if body else None


@dataclass
class Server:
    """A uvicorn process running the serving CLI on a free loopback port."""

    process: subprocess.Popen
    port: int
    log_path: Path
    out_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ping(self) -> int | None:
        try:
            return http("GET", f"{self.url}/ping", timeout=2)[0]
        except OSError:
            return None

    def wait_until(self, predicate, what: str, deadline: float = 60.0) -> None:
        """Poll until predicate() holds (a deadline against hangs, not a timing assertion)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited ({self.process.returncode}) before {what}:\n{self.logs()}")
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.logs()}")

    def wait_listening(self) -> None:
        self.wait_until(lambda: self.ping() is not None, "the server to listen")

    def wait_ready(self) -> None:
        self.wait_until(lambda: self.ping() == 200, "/ping 200")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict]:
        records = []
        for line in self.logs().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        return records


def start_server(args: list[str], tmp: Path, env: dict[str, str] | None = None,
                 module: str = "pipeline_code.serving.cli") -> Server:
    port = free_port()
    log_path, out_path = tmp / f"server-{port}.log", tmp / f"server-{port}.out"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                **{k: v.replace("{port}", str(port)) for k, v in (env or {}).items()}}
    command = [sys.executable, "-m", module, *[a.replace("{port}", str(port)) for a in args]]
    if module == "pipeline_code.serving.cli":
        command += ["--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=full_env,
                               stdout=out_path.open("w"), stderr=log_path.open("w"))
    return Server(process, port, log_path, out_path)


@contextlib.contextmanager
def gateway_server(model_dir: Path, key_file: Path, tmp: Path, *, rate: str, burst: str):
    """`serve` with the API-key gateway on ``key_file``, ready; stopped on exit."""
    srv = start_server(["serve", "--model", str(model_dir), "--api-key-file", str(key_file),
                        "--rate-limit", rate, "--burst", burst], tmp)
    try:
        srv.wait_ready()
        srv.extra["key_file"] = key_file
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def open_server(model_dir, tmp_path_factory):
    """The app on the session's model without API keys: the container's contract (/invocations open)."""
    tmp = tmp_path_factory.mktemp("open-server")
    srv = start_server(["serve", "--model", str(model_dir)], tmp)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    """The app on the session's model, with the API-key gateway (1000 req/s so tests never hit it)."""
    tmp = tmp_path_factory.mktemp("server")
    with gateway_server(model_dir, tmp / "keys.json", tmp, rate="1000", burst="1000") as srv:
        yield srv
