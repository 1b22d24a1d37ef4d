"""The forecast request: parsing and validation with the standard library only (no FastAPI, no pydantic).

Shared by the serving app's ``POST /invocations`` and the local gateway's ``POST /forecast``; the
invoke Lambda carries a self-contained copy of the same rules (``lambdas/invoke/app.py``), and a test
checks both agree on a table of cases.

Rules (the contract in docs/serving.md):

* the body is a JSON object (UTF-8, at most ``MAX_BODY_BYTES``), no duplicate keys, no unknown keys,
  no ``NaN``/``Infinity`` literals;
* the ``Content-Type`` is ``application/json`` (an optional ``charset`` must be UTF-8); a missing
  header is read as JSON, any other media type is refused with 415;
* ``periods``: an integer from 1 to ``max_periods``, as a JSON number (``26`` or ``26.0``) or a
  decimal string without sign, spaces or leading zeros (``"26"``);
* ``conf``: a number strictly between 0 and 1, as a JSON number (``0.9``, ``1e-9``) or a decimal
  string ``"0.9"`` / ``".9"`` (no exponent);
* ``history`` (optional, default 0): an integer from 0 to ``MAX_HISTORY`` (same forms as
  ``periods``): how many recent observations to return with the forecast, for plots;
* booleans are not numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline_code.engine.settings import ServeSettings

DEFAULT_MAX_PERIODS = ServeSettings().max_periods
MAX_HISTORY = 156
MAX_BODY_BYTES = 16 * 1024
# The largest conf the engine can turn into finite quantiles (1 - 2**-53 rounds 1 - alpha/2 to 1.0).
CONF_CEILING = 1.0 - 2.0**-52

# Numeric strings accepted for integers ("26") and for conf ("0.9", ".9"); the API Gateway model uses them too.
INT_PATTERN = r"0|[1-9][0-9]{0,17}"
CONF_PATTERN = r"0?\.[0-9]*[1-9][0-9]*"
_INT_STRING = re.compile(INT_PATTERN)
_CONF_STRING = re.compile(CONF_PATTERN)
_MAX_STRING = 64
FIELDS = ("periods", "conf", "history")


class RequestError(ValueError):
    """An invalid request: ``status`` is the HTTP status to answer with, ``message`` the reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ForecastRequest:
    """A validated request."""

    periods: int
    conf: float
    history: int = 0

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"periods": self.periods, "conf": self.conf}
        if self.history:
            document["history"] = self.history
        return document


def check_content_type(value: str | None) -> None:
    """Accept ``application/json`` (optionally ``; charset=utf-8``) or no header at all."""
    if value is None or not value.strip():
        return
    media, _, params = value.partition(";")
    if media.strip().lower() != "application/json":
        raise RequestError(f"Content-Type must be application/json, got {_show(value)}", 415)
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(f"charset must be utf-8, got {_show(val.strip())}", 415)


def parse_request(raw: bytes, *, max_periods: int = DEFAULT_MAX_PERIODS) -> ForecastRequest:
    """Parse and validate a request body; raises RequestError."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"request body exceeds {MAX_BODY_BYTES} bytes", 413)
    return validate(parse_json(raw), max_periods=max_periods)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, no duplicate keys."""
    if not raw.strip():
        raise RequestError("request body is empty; expected a JSON object")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RequestError:
        raise
    except UnicodeDecodeError:
        raise RequestError("request body is not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise RequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (ValueError, RecursionError):
        raise RequestError("malformed JSON") from None


def validate(document: Any, *, max_periods: int = DEFAULT_MAX_PERIODS) -> ForecastRequest:
    """Validate a parsed JSON document."""
    if not isinstance(document, dict):
        raise RequestError("request body must be a JSON object with 'periods' and 'conf'")
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(_show(k) for k in unknown[:5])}")
    missing = [name for name in ("periods", "conf") if name not in document]
    if missing:
        raise RequestError(f"missing field(s): {', '.join(missing)}")
    periods = _integer("periods", document["periods"], 1, max_periods)
    conf = _conf(document["conf"])
    history = _integer("history", document.get("history", 0), 0, MAX_HISTORY)
    return ForecastRequest(periods=periods, conf=conf, history=history)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    problem = f"{name} must be an integer from {low} to {high}"
    if isinstance(value, bool):
        raise RequestError(f"{problem}, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise RequestError(f"{problem}, got {_show(value)}")
        number = int(value)
    elif isinstance(value, str):
        if len(value) > _MAX_STRING or not _INT_STRING.fullmatch(value):
            raise RequestError(f"{problem} (a number or a decimal string such as \"26\"), got {_show(value)}")
        number = int(value)
    else:
        raise RequestError(f"{problem}, got {_type_name(value)}")
    if not low <= number <= high:
        raise RequestError(f"{problem}, got {_show(value)}")
    return number


def _conf(value: Any) -> float:
    problem = "conf must be a number strictly between 0 and 1"
    if isinstance(value, bool):
        raise RequestError(f"{problem}, got a boolean")
    if isinstance(value, int):
        raise RequestError(f"{problem}, got {_show(value)}")
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        if len(value) > _MAX_STRING or not _CONF_STRING.fullmatch(value):
            raise RequestError(f"{problem} (a number or a decimal string such as \"0.9\"), got {_show(value)}")
        number = float(value)
    else:
        raise RequestError(f"{problem}, got {_type_name(value)}")
    if not (math.isfinite(number) and 0.0 < number < 1.0):
        raise RequestError(f"{problem}, got {_show(value)}")
    return number


def _reject_constant(name: str) -> None:
    raise RequestError(f"{name} is not a valid JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise RequestError(f"duplicate field {_show(key)}")
        document[key] = value
    return document


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- JSON Schema (OpenAPI) of the request, exact: what it accepts is what validate() accepts -------

def integer_pattern(low: int, high: int) -> str:
    """A regular expression matching exactly the decimal strings of the integers low..high."""
    if not 0 <= low <= high:
        raise ValueError("need 0 <= low <= high")
    parts: list[str] = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        stop = min(high, 10**digits - 1)
        if start <= stop:
            parts.extend(_same_length(str(start), str(stop)))
    return "^(?:" + "|".join(parts) + ")$"


def _same_length(a: str, b: str) -> list[str]:
    if a == b:
        return [a]
    if len(a) == 1:
        return [f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [a[0] + rest for rest in _same_length(a[1:], b[1:])]
    tail = len(a) - 1
    out = [a[0] + rest for rest in _same_length(a[1:], "9" * tail)]
    lo, hi = int(a[0]) + 1, int(b[0]) - 1
    if lo <= hi:
        head = str(lo) if lo == hi else f"[{lo}-{hi}]"
        out.append(head + f"[0-9]{{{tail}}}")
    out.extend(b[0] + rest for rest in _same_length("0" * tail, b[1:]))
    return out


def request_schema(max_periods: int = DEFAULT_MAX_PERIODS) -> dict[str, Any]:
    """The JSON Schema of a request body."""

    def integer(low: int, high: int, example: int, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "anyOf": [
                {"type": "integer", "minimum": low, "maximum": high},
                {"type": "string", "pattern": integer_pattern(low, high)},
            ],
            "example": example,
        }

    return {
        "title": "ForecastRequest",
        "type": "object",
        "additionalProperties": False,
        "required": ["periods", "conf"],
        "properties": {
            "periods": integer(1, max_periods, 26, "Periods to forecast after the last observation."),
            "conf": {
                "description": "Level of the central prediction interval, strictly between 0 and 1.",
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    {"type": "string", "pattern": "^0?\\.[0-9]*[1-9][0-9]*$", "maxLength": _MAX_STRING},
                ],
                "example": 0.9,
            },
            "history": integer(0, MAX_HISTORY, 0, "Recent observations to return as well (for plots)."),
        },
        "example": {"periods": 26, "conf": 0.9},
    }
