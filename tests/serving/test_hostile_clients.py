"""Clients that attack the connection layer, with real sockets on loopback: heads or bodies that never
end, heads too large, more connections than file descriptors; and the log rate limit. Bounded counts; every wait
has a deadline against hangs, none is a timing assertion."""

from __future__ import annotations

import json
import logging
import select
import socket
import time

import pytest

from pipeline_code.serving.logs import RateLimitFilter, configure_logging

from .conftest import http, start_server

PARTIAL_HEAD = b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
BODY = b'{"periods": 3, "conf": 0.9}'
FULL_REQUEST = PARTIAL_HEAD + b"content-length: %d\r\n\r\n" % len(BODY) + BODY


@pytest.fixture
def guarded(model_dir, tmp_path):
    srv = start_server(["serve", "--model", str(model_dir), "--request-timeout", "1", "--max-connections", "40"],
                       tmp_path)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def read_until_closed(sock: socket.socket, deadline: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (an AssertionError past the deadline)."""
    sock.settimeout(deadline)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except socket.timeout:
        raise AssertionError(f"the server kept the connection open for {deadline} s; got {data[:200]!r}") from None
    except ConnectionResetError:
        pass
    return data


def test_a_head_that_never_ends_gets_408_and_is_closed(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(PARTIAL_HEAD)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request not received within 1 s" in answer


def test_a_body_that_never_ends_gets_408_and_is_closed(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(PARTIAL_HEAD + b"content-length: 100\r\n\r\n" + b'{"periods": 3')
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_a_silent_connection_is_closed(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_the_deadline_applies_to_every_request_on_a_keep_alive_connection(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(FULL_REQUEST)
        sock.settimeout(30)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(PARTIAL_HEAD)  # the next request's head never ends
        assert b"HTTP/1.1 408 " in read_until_closed(sock)


def test_an_oversized_head_gets_431_without_buffering_it(guarded):
    """1 MiB of headers, sent as an attacker paces them: refused at the 16 KiB cap with 431."""
    answer = b""
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nhost: x\r\n")
        line = b"x-filler: " + b"a" * 4000 + b"\r\n"
        for _ in range(256):
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.02)[0]:
                break
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"16384 bytes" in answer
    assert http("GET", f"{guarded.url}/ping")[0] == 200


def exchange(port: int, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``parts`` as separate writes (a short pause between them, so they tend to arrive as separate
    reads; the outcome must not depend on it) and parse the answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for i, part in enumerate(parts):
            if i:
                time.sleep(0.05)
            sock.sendall(part)
        answer = read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


JSON = "application/json"


def ping_head(*headers: bytes) -> bytes:
    return b"GET /ping HTTP/1.1\r\nhost: x\r\n" + b"".join(headers) + b"connection: close\r\n\r\n"


ONE_LARGE_HEADER = ping_head(b"x-filler: " + b"a" * 17_000 + b"\r\n")
MANY_SMALL_HEADERS = ping_head(*(b"x-filler-%d: %s\r\n" % (i, b"a" * 40) for i in range(400)))


@pytest.mark.parametrize("parts", [
    (ONE_LARGE_HEADER,),
    (MANY_SMALL_HEADERS,),
    (ONE_LARGE_HEADER[:9000], ONE_LARGE_HEADER[9000:]),  # the limit is crossed by the read that ends the head
    (ONE_LARGE_HEADER[:17000], ONE_LARGE_HEADER[17000:]),  # by a read before it
    (b"\r\n\r\n" + ONE_LARGE_HEADER,),  # after empty lines (which parsers skip)
], ids=["one-send", "many-small-headers", "split-ending-read", "split-earlier-read", "empty-lines"])
def test_a_head_over_the_limit_gets_431_however_it_arrives(open_server, parts):
    status, headers, body = exchange(open_server.port, *parts)
    assert status == 431 and headers["content-type"] == JSON and len(headers["x-request-id"]) == 32
    assert json.loads(body) == {"error": "request line and headers exceed 16384 bytes"}


@pytest.mark.parametrize("split", [None, -2], ids=["one-send", "end-of-head-split"])
def test_a_head_under_the_limit_with_a_body_in_the_same_read_is_served(open_server, split):
    """Only the head counts: a 15 KiB head and a body that brings the read past 16 KiB, also when the
    blank line that ends the head is split across reads."""
    body = json.dumps({"periods": 3, "conf": 0.9, "history": 0}).encode() + b" " * 4000
    head = (b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-filler: " + b"a" * 15_000 + b"\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body))
    assert len(head) < 16 * 1024 < len(head + body)
    parts = (head + body,) if split is None else (head[:split], head[split:] + body)
    status, _, answer = exchange(open_server.port, *parts)
    assert status == 200 and len(json.loads(answer)["forecasts"]) == 3
    assert exchange(open_server.port, ping_head())[0] == 200


MALFORMED = {
    "unknown-method": b"FOO /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    "bad-chunk-size": b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "length-and-chunked": b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                          b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "negative-length": b"POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_gets_a_json_400(open_server, request_bytes):
    status, headers, body = exchange(open_server.port, request_bytes)
    assert status == 400 and headers["content-type"] == JSON and len(headers["x-request-id"]) == 32
    assert json.loads(body) == {"error": "invalid HTTP request"}


def test_more_connections_than_file_descriptors(model_dir, tmp_path):
    """An open-file limit of 128 and 300 connections that never send a byte: the server caps its
    connections below the limit by shedding the oldest silent ones, keeps answering valid clients, and
    every silent connection is closed in the end."""
    srv = start_server(["128", "serve", "--model", str(model_dir), "--request-timeout", "2", "--port", "{port}"],
                       tmp_path, module="tests.serving.serve_with_fd_limit")
    silent: list[socket.socket] = []
    try:
        srv.wait_ready()
        for _ in range(300):
            silent.append(socket.create_connection(("127.0.0.1", srv.port)))
        statuses = [http("POST", f"{srv.url}/invocations", BODY, {"content-type": "application/json"})[0]
                    for _ in range(5)]
        assert statuses == [200] * 5
        for sock in silent:
            read_until_closed(sock)
        shed = [r for r in srv.log_records() if r.get("event") == "connection_shed"]
        lowered = [r for r in srv.log_records() if r.get("event") == "connection_cap_lowered"]
        assert shed and lowered and lowered[0]["max_connections"] < 128
        assert srv.ping() == 200 and "Traceback" not in srv.logs()
    finally:
        for sock in silent:
            sock.close()
        srv.stop()


def test_the_log_rate_limit_drops_floods_and_counts_them():
    now = [0.0]
    limiter = RateLimitFilter(rate=10, burst=5, clock=lambda: now[0])

    def record(message: str, status: int | None = None) -> logging.LogRecord:
        rec = logging.LogRecord("forecast_mlops.serving", logging.WARNING, __file__, 1, message, None, None)
        if status is not None:
            rec.status = status
        return rec

    passed = [limiter.filter(record("request head refused")) for _ in range(100)]
    assert passed == [True] * 5 + [False] * 95
    assert limiter.filter(record("model loaded"))  # another kind of line has its own bucket
    assert limiter.filter(record("request", 200)) and limiter.filter(record("request", 400))
    now[0] = 0.1  # one token back
    let_through = record("request head refused")
    assert limiter.filter(let_through) and let_through.suppressed == 95
    assert not limiter.filter(record("request head refused"))


def test_every_server_logger_goes_through_the_rate_limit():
    """The app's, uvicorn's and asyncio's lines (asyncio logs each failed accept, with a traceback)."""
    names = ("forecast_mlops.serving", "uvicorn", "uvicorn.error", "asyncio")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    try:
        configure_logging("INFO")
        for name in (*names, "forecast_mlops.serving.connections"):
            logger = logging.getLogger(name)
            while not logger.handlers and logger.parent is not None:
                logger = logger.parent
            assert any(isinstance(f, RateLimitFilter) for h in logger.handlers for f in h.filters), name
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
