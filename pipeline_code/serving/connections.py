"""Connection hygiene for uvicorn: a deadline on receiving each request, a size cap on request heads,
and a connection cap.

uvicorn (0.54, httptools or h11) arms no timer while a request's head or body is arriving, and its
httptools parser buffers a head of any size; ``timeout_keep_alive`` only covers idle time after a
response and ``limit_concurrency`` answers 503 to every new request, valid or not, once slow
connections fill it. So :func:`guarded_protocol` subclasses uvicorn's HTTP protocol:

* **request deadline**: a request (head and body) must have arrived within ``request_timeout``
  seconds of the connection opening, or of the first byte of a later request on a keep-alive
  connection; past it the server answers 408 and closes;
* **head size**: a head (request line and headers, up to the blank line that ends it) of more than
  ``max_header_bytes`` is answered 431 and closed before the parser sees it, however its bytes are
  split into socket reads (memory stays bounded by one socket read, 256 KiB, per connection);
* **malformed requests**: uvicorn's plain-text 400 for what its parser refuses (an unknown method, a
  bad chunk size, Content-Length with Transfer-Encoding, ...) is a JSON ``{"error": ...}`` instead;
* **connection cap**: past ``max_connections`` open connections, a new connection evicts the oldest
  connection that is waiting for its first request head, else the oldest idle keep-alive one; when
  every connection is busy with a request, the new one is closed. Slow or silent clients are shed
  before clients that send whole requests, and the server recovers without a restart.

:func:`raise_open_file_limit` lifts the soft ``RLIMIT_NOFILE`` so the cap is reached before the
process runs out of file descriptors. Out of them, ``accept`` fails and every new client times out;
and asyncio's accept loop (``selector_events._accept_connection``, Python 3.11) then logs the failure,
with a traceback, up to ``backlog`` times per loop tick. asyncio accepts up to ``backlog`` connections
per tick before their protocols run (and can shed anything), so the budget is
``max_connections + 2 * backlog`` plus spare descriptors; when the hard limit is lower, the cap and
the backlog are lowered to fit.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import json
import re
import resource
import termios
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace

from pipeline_code.serving.logs import get_logger

log = get_logger("connections")

# File descriptors kept free of connections: the listening socket, log streams, model files, imports.
SPARE_FILE_DESCRIPTORS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    request_timeout: float = 10.0  # seconds to send a whole request (head and body)
    max_header_bytes: int = 16 * 1024  # request line + headers (h11's default cap, 16 KiB)
    max_connections: int = 1000  # open connections, all clients together
    backlog: int = 256  # listen() queue, and connections asyncio accepts per loop tick

    def __post_init__(self) -> None:
        if not 0 < self.request_timeout < float("inf") or self.max_header_bytes < 1024 \
                or self.max_connections < 1 or self.backlog < 1:
            raise ValueError("request_timeout must be a positive number, max_header_bytes >= 1024, "
                             "max_connections and backlog >= 1")

    @property
    def file_descriptors(self) -> int:
        """Descriptors this needs: open connections, two ticks of accepts, and the spare ones."""
        return self.max_connections + 2 * self.backlog + SPARE_FILE_DESCRIPTORS


def raise_open_file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise the soft open-file limit to fit ``limits``; lower the cap and the backlog when the hard
    limit forbids."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = limits.file_descriptors
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limits
    available = max(3, soft - SPARE_FILE_DESCRIPTORS)
    backlog = min(limits.backlog, max(1, available // 4))
    lowered = replace(limits, backlog=backlog,
                      max_connections=max(1, min(limits.max_connections, available - 2 * backlog)))
    log.warning("open-file limit too low for max_connections; lowering the cap and the backlog",
                extra={"event": "connection_cap_lowered", "open_file_limit": soft,
                       "max_connections": lowered.max_connections, "backlog": lowered.backlog})
    return lowered


def _refusal(status: int, reason: str, message: str, request_id: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-request-id: {request_id}\r\n"
            f"connection: close\r\n\r\n").encode() + body


# The blank line that ends a head (parsers accept bare LF line ends too), and the bytes of it that can
# end one read and start the next.
_HEAD_END = re.compile(rb"\n\r?\n")
_HEAD_END_SPAN = 2


# How many of the oldest waiting connections eviction looks at for one with nothing unread.
EVICTION_SCAN = 64


def _unread_bytes(protocol) -> int:
    """Bytes received by the kernel for this connection that the server has not read yet (FIONREAD)."""
    sock = protocol.transport.get_extra_info("socket")
    try:
        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        return count[0]
    except (OSError, AttributeError, ValueError):
        return 0


class _Pool:
    """The connections of one server that may be evicted, oldest first."""

    def __init__(self) -> None:
        self.fresh: OrderedDict = OrderedDict()  # waiting for their first request head
        self.idle: OrderedDict = OrderedDict()  # served a request, waiting for the next head

    def oldest_evictable(self, spare):
        """The oldest waiting connection with nothing unread (a client whose request is already in the
        socket buffer, as after a burst of accepts, is not waiting on the server), else the oldest."""
        for group in (self.fresh, self.idle):
            fallback = None
            for scanned, protocol in enumerate(group):
                if protocol is spare or protocol.transport.is_closing():
                    continue
                if _unread_bytes(protocol) == 0:
                    return protocol
                fallback = fallback or protocol
                if scanned >= EVICTION_SCAN:
                    break
            if fallback is not None:
                return fallback
        return None

    def discard(self, protocol) -> None:
        self.fresh.pop(protocol, None)
        self.idle.pop(protocol, None)


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools when installed, else h11) with the limits above."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    pool = _Pool()
    timeout = (408, "Request Timeout", f"request not received within {limits.request_timeout:g} s")
    too_large = (431, "Request Header Fields Too Large",
                 f"request line and headers exceed {limits.max_header_bytes} bytes")
    malformed = (400, "Bad Request", "invalid HTTP request")

    class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None  # armed while a request is arriving
        _head_bytes = 0  # of the head arriving, without its end if that has arrived
        _head_tail = b""  # its last bytes, where its end may begin
        _busy = False  # a request head is complete and its response is not

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            pool.fresh[self] = None
            self._start_deadline()
            if len(self.connections) > limits.max_connections:
                victim = pool.oldest_evictable(spare=self)
                log.warning("connection cap reached; closing a connection",
                            extra={"event": "connection_shed", "max_connections": limits.max_connections,
                                   "shed": "new" if victim is None else "oldest waiting"})
                if victim is not None:
                    pool.discard(victim)
                (victim or self).transport.abort()

        def connection_lost(self, exc) -> None:
            pool.discard(self)
            self._cancel_deadline()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self._busy:
                if self._deadline is None:
                    self._start_deadline()
                if self._head_size(data) > limits.max_header_bytes:
                    self._refuse(too_large, "header_too_large")
                    return
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a request head is complete
                self._busy = True
                pool.discard(self)
            if self._busy and not self.cycle.more_body:  # and its body too
                self._cancel_deadline()

        def send_400_response(self, msg: str) -> None:
            """What uvicorn answers when its parser refuses a request: JSON, not plain text."""
            self._refuse(malformed, "invalid_http_request")

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._busy, self._head_bytes, self._head_tail = False, 0, b""
                self._cancel_deadline()  # armed again by the next request's first byte
                pool.idle[self] = None  # the keep-alive timer (timeout_keep_alive) bounds the idle time

        # --- internals -------------------------------------------------------------------------
        def _head_size(self, data: bytes) -> int:
            """The size of the head arriving, with ``data``: up to its end when ``data`` holds it (the
            rest is a body), else all of it. Empty lines before a request line (skipped by the parsers)
            do not count."""
            if not self._head_bytes and not self._head_tail:
                data = data.lstrip(b"\r\n")
            window = self._head_tail + data
            end = _HEAD_END.search(window)
            if end is not None:
                return self._head_bytes + end.end() - len(self._head_tail)
            self._head_bytes += len(data)
            self._head_tail = window[-_HEAD_END_SPAN:]
            return self._head_bytes

        def _start_deadline(self) -> None:
            self._deadline = self.loop.call_later(limits.request_timeout, self._deadline_passed)

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _deadline_passed(self) -> None:
            self._deadline = None
            if not self._busy or (self.cycle.more_body and not self.cycle.response_started):
                self._refuse(timeout, "request_timeout")

        def _refuse(self, refusal: tuple[int, str, str], event: str) -> None:
            """Answer ``refusal`` (status, reason, message) with a new request id, and close."""
            if self.transport.is_closing():
                return
            request_id = uuid.uuid4().hex
            log.warning("request refused", extra={"event": event, "client": self.client, "status": refusal[0],
                                                  "request_id": request_id})
            self.transport.write(_refusal(*refusal, request_id))
            self.transport.close()

    return GuardedHTTPProtocol
