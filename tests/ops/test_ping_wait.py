"""`pipeline run` / `demo` waiting for the local server: a server that refused the approved model says why
at once (its /ping 503 carries the reason), instead of a 30 s wait ending in "is the port free?"."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline_code.cli.main import NoModelServed, _wait_for_ping
from pipeline_code.serving.app import NOT_LOADED_YET


def _server(body: dict) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            payload = json.dumps(body).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def process():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_a_refused_model_is_reported_at_once_with_the_servers_reason(process):
    server = _server({"status": "unavailable", "error": "model refused: its upper forecast is not finite"})
    try:
        started = time.monotonic()
        with pytest.raises(NoModelServed, match="no model to serve: model refused: its upper forecast"):
            _wait_for_ping(f"http://127.0.0.1:{server.server_port}", process, timeout=10)
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()


@pytest.mark.parametrize("reason", [None, NOT_LOADED_YET])
def test_a_server_still_loading_is_waited_for(process, reason):
    server = _server({"status": "unavailable", "error": reason})
    try:
        with pytest.raises(RuntimeError, match="did not answer /ping within 1s") as info:
            _wait_for_ping(f"http://127.0.0.1:{server.server_port}", process, timeout=1)
        assert not isinstance(info.value, NoModelServed)
    finally:
        server.shutdown()
