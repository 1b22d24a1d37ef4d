"""Structured logs: one JSON object per line on stderr (CloudWatch Logs and `jq` friendly), rate-limited.

A client can make the server log as fast as it can send bad requests; :class:`RateLimitFilter` keeps
each kind of line (logger, message and, for request lines, status) to a token bucket of ``LOG_BURST`` lines refilled at
``LOG_RATE`` per second, and the next line let through carries ``suppressed``: how many were dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Callable

from pipeline_code.serving.throttle import TokenBuckets

LOGGER_NAME = "forecast_mlops.serving"
LOG_RATE = 100.0  # lines per second, per kind of line
LOG_BURST = 1000
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields}``; exceptions as a single string field."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, separators=(",", ":"))


class RateLimitFilter(logging.Filter):
    """A token bucket per (logger, message template, status); a line let through after drops carries
    ``suppressed`` (how many lines of its kind were dropped since the last one)."""

    def __init__(self, rate: float = LOG_RATE, burst: int = LOG_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._buckets = TokenBuckets(rate, burst, clock)
        self._suppressed: dict[tuple, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200], getattr(record, "status", None))
        if self._buckets.take(key) > 0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        dropped = self._suppressed.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


def configure_logging(level: str | int = "INFO") -> None:
    """Route the app's, uvicorn's and asyncio's loggers to one rate-limited JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RateLimitFilter())
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # One line per request comes from our middleware; uvicorn's access log would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(suffix: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if not suffix else f"{LOGGER_NAME}.{suffix}")
