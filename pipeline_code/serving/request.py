"""The forecast request: parsing and validation with the standard library only (no FastAPI, no pydantic).

Shared by the serving app's ``POST /invocations`` and the local gateway's ``POST /forecast``; the
invoke Lambda (``lambdas/invoke/app.py``) runs this module too (its asset links the package and keeps
the standard-library modules), and a test checks both answer a table of cases alike.

Rules (the contract in docs/serving.md):

* the body is a JSON object (UTF-8, at most ``MAX_BODY_BYTES``), no duplicate keys, no unknown keys,
  no ``NaN``/``Infinity`` literals, arrays and objects nested at most ``MAX_NESTING`` deep, integers of
  at most Python's digit limit (``sys.get_int_max_str_digits()``);
* the ``Content-Type`` is ``application/json`` (an optional ``charset`` must be UTF-8); a missing
  header is read as JSON, any other media type is refused with 415, as is a ``Content-Encoding`` other
  than ``identity`` (a compressed body);
* a forecast: ``periods`` (required): an integer from 1 to ``max_periods``, as a JSON number (``26``
  or ``26.0``) or a decimal string without sign, spaces or leading zeros (``"26"``);
* and either ``conf``: a number strictly between 0 and 1, as a JSON number (``0.9``, ``1e-9``) or a
  decimal string ``"0.9"`` / ``".9"`` (no exponent), compared as written (``0.99999999999999999`` and
  ``1e-400`` are inside; as doubles they round to 1 and 0, so they are taken as the nearest doubles
  inside, ``CONF_RANGE``), or ``quantiles``: 1 to ``MAX_QUANTILES`` JSON numbers from
  ``QUANTILE_RANGE[0]`` to ``QUANTILE_RANGE[1]``, distinct to 10 significant digits (their response keys);
* ``history`` (optional, default 0): an integer from 0 to ``MAX_HISTORY`` (same forms as
  ``periods``): how many recent observations to return with the forecast, for plots;
* a panel model's series: ``item_id`` (one item id) or ``item_ids`` (1 to ``MAX_ITEMS`` distinct ids),
  item ids as the run document's ``item_id_problem`` says; the model decides whether an item is
  needed (a panel) or refused (one series), so that check is the app's;
* listing a panel's items: ``{"list_items": true}`` with optional ``offset`` (0 to ``MAX_OFFSET``)
  and ``limit`` (1 to ``MAX_LIST_LIMIT``, the default), same integer forms, and nothing else;
* booleans are not numbers.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Any

from pipeline_code.engine.settings import (
    ITEM_ID_INVISIBLE,
    MAX_ITEM_ID_LENGTH,
    ServeSettings,
    item_id_problem,
    json_kind,
)

DEFAULT_MAX_PERIODS = ServeSettings().max_periods
MAX_HISTORY = 156
MAX_ITEMS = 100  # item ids in one request
MAX_QUANTILES = 9
QUANTILE_RANGE = (0.001, 0.999)
MAX_LIST_LIMIT = 1000  # item ids in one listing page
MAX_OFFSET = 10_000_000
# 100 ASCII item ids of 256 characters fit, with room for the rest; multi-byte (UTF-8) or \u-escaped
# ids can exceed it.
MAX_BODY_BYTES = 64 * 1024
# Arrays and objects nested in a body (a request nests 2 deep): deeper is refused by name, well inside
# the recursion limit of Python's JSON parser.
MAX_NESTING = 32
# conf as a double: the nearest doubles to 0 and 1 strictly between them. A conf inside (0, 1) as
# written that rounds to 0 or 1 (1e-400, 0.99999999999999999) is taken as the nearest of these.
CONF_RANGE = (math.ulp(0.0), math.nextafter(1.0, 0.0))

# Numeric strings accepted for integers ("26") and for conf ("0.9", ".9"); the API Gateway model uses them too.
INT_PATTERN = r"0|[1-9][0-9]{0,17}"
CONF_PATTERN = r"0?\.[0-9]*[1-9][0-9]*"
_INT_STRING = re.compile(INT_PATTERN)
_CONF_STRING = re.compile(CONF_PATTERN)
_MAX_STRING = 64
FORECAST_FIELDS = ("periods", "conf", "quantiles", "history", "item_id", "item_ids")
LIST_FIELDS = ("list_items", "offset", "limit")
FIELDS = FORECAST_FIELDS + LIST_FIELDS
# Item ids as a JSON Schema pattern (item_id_problem's characters; its surrogate rule is the server's:
# a JSON body that is UTF-8 cannot carry them, only \\ud800 escapes can).
ITEM_ID_PATTERN = f"^[^{ITEM_ID_INVISIBLE}]+$"


class JsonNumber(float):
    """A JSON number with a fraction or exponent: the nearest double, and ``text`` as sent (its ``repr``,
    so a message names what was sent: ``1e-400``, not ``0.0``)."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> "JsonNumber":
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text


class RequestError(ValueError):
    """An invalid request: ``status`` is the HTTP status to answer with, ``message`` the reason."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ForecastRequest:
    """A validated forecast request: ``conf`` or ``quantiles`` (ascending), and the items asked for
    (None: the model's only series; ``many``: asked as a list, ``item_ids``)."""

    periods: int
    conf: float | None
    history: int = 0
    quantiles: tuple[float, ...] | None = None
    item_ids: tuple[str, ...] | None = None
    many: bool = False

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"periods": self.periods}
        if self.quantiles is not None:
            document["quantiles"] = list(self.quantiles)
        else:
            document["conf"] = self.conf
        if self.history:
            document["history"] = self.history
        if self.item_ids is not None:
            if self.many:
                document["item_ids"] = list(self.item_ids)
            else:
                document["item_id"] = self.item_ids[0]
        return document

    def summary(self) -> dict[str, Any]:
        """For a log line: the request without the list of ids (their count instead)."""
        document = self.to_dict()
        if self.many:
            document["item_ids"] = len(self.item_ids)
        return document


@dataclass(frozen=True)
class ItemsRequest:
    """A validated request for a page of a panel model's item ids."""

    offset: int = 0
    limit: int = MAX_LIST_LIMIT

    def to_dict(self) -> dict[str, Any]:
        return {"list_items": True, "offset": self.offset, "limit": self.limit}

    summary = to_dict


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


def check_content_encoding(value: str | None) -> None:
    """Refuse a compressed body (415): only ``identity``, or no ``Content-Encoding`` at all, is read."""
    if any(coding.strip().lower() not in ("", "identity") for coding in (value or "").split(",")):
        raise RequestError(f"unsupported content encoding {_show(value)}; send the body uncompressed", 415)


def parse_request(raw: bytes, *, max_periods: int = DEFAULT_MAX_PERIODS) -> ForecastRequest | ItemsRequest:
    """Parse and validate a request body; raises RequestError."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"request body exceeds {MAX_BODY_BYTES} bytes", 413)
    return validate(parse_json(raw), max_periods=max_periods)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, no duplicate keys, bounded nesting and digits."""
    if not raw.strip():
        raise RequestError("request body is empty; expected a JSON object")
    try:
        text = raw.decode("utf-8")
        _check_nesting(text)
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys,
                          parse_float=JsonNumber, parse_int=_int_literal)
    except RequestError:
        raise
    except UnicodeDecodeError:
        raise RequestError("request body is not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise RequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (ValueError, RecursionError):
        raise RequestError("malformed JSON") from None


def validate(document: Any, *, max_periods: int = DEFAULT_MAX_PERIODS) -> ForecastRequest | ItemsRequest:
    """Validate a parsed JSON document."""
    if not isinstance(document, dict):
        raise RequestError("request body must be a JSON object with 'periods' and 'conf'")
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(_show(k) for k in unknown[:5])}")
    if "list_items" in document:
        return _items_request(document)
    stray = [name for name in LIST_FIELDS if name in document]
    if stray:
        raise RequestError(f"{' and '.join(stray)}: only for listing items ({{\"list_items\": true}})")
    missing = [name for name in ("periods", "conf") if name not in document]
    if "quantiles" in document:
        missing = [name for name in missing if name != "conf"]
    if missing:
        raise RequestError(f"missing field(s): {', '.join(missing)}"
                           + (" (or quantiles)" if "conf" in missing else ""))
    for pair in (("conf", "quantiles"), ("item_id", "item_ids")):
        if all(name in document for name in pair):
            raise RequestError(f"give either {pair[0]} or {pair[1]}, not both")
    periods = _integer("periods", document["periods"], 1, max_periods)
    conf = _conf(document["conf"]) if "conf" in document else None
    quantiles = _quantiles(document["quantiles"]) if "quantiles" in document else None
    history = _integer("history", document.get("history", 0), 0, MAX_HISTORY)
    items = None
    if "item_id" in document:
        items = (_item_id("item_id", document["item_id"]),)
    elif "item_ids" in document:
        items = _item_ids(document["item_ids"])
    return ForecastRequest(periods=periods, conf=conf, history=history, quantiles=quantiles, item_ids=items,
                           many="item_ids" in document)


# A JSON string literal (brackets inside one do not nest).
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def _check_nesting(text: str) -> None:
    """Refuse arrays and objects nested deeper than MAX_NESTING (a RequestError saying so)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return  # too few brackets to nest deeper
    steps = (1 if c in "[{" else -1 for c in _STRING_LITERAL.sub("", text) if c in "[]{}")
    if max(accumulate(steps), default=0) > MAX_NESTING:
        raise RequestError(f"request body nests arrays or objects deeper than {MAX_NESTING} levels")


def _int_literal(text: str) -> int:
    """A JSON integer; one past Python's int digit limit is refused by name, not as malformed JSON."""
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        raise RequestError(f"request body holds a number with more than {limit} digits")
    return int(text)


def _items_request(document: dict[str, Any]) -> ItemsRequest:
    if document["list_items"] is not True:
        raise RequestError(f"list_items must be true, got {_show(document['list_items'])}")
    others = sorted(set(document) - set(LIST_FIELDS))
    if others:
        raise RequestError(f"list_items takes only offset and limit; remove {', '.join(others)}")
    return ItemsRequest(offset=_integer("offset", document.get("offset", 0), 0, MAX_OFFSET),
                        limit=_integer("limit", document.get("limit", MAX_LIST_LIMIT), 1, MAX_LIST_LIMIT))


def _quantiles(value: Any) -> tuple[float, ...]:
    low, high = QUANTILE_RANGE
    problem = f"quantiles must be a list of 1 to {MAX_QUANTILES} distinct numbers from {low} to {high}"
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_QUANTILES:
        raise RequestError(f"{problem}, got {_show(value)}")
    for q in value:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not low <= q <= high:
            raise RequestError(f"{problem}, got {_show(q)}")
    if len({quantile_key(q) for q in value}) != len(value):
        raise RequestError(f"{problem}; {_show(value)} repeats one (to 10 significant digits)")
    return tuple(sorted(float(q) for q in value))


def quantile_key(q: float) -> str:
    """The response key of quantile ``q``, as Amazon Forecast names them: 0.1 -> "p10", 0.025 -> "p2.5"."""
    return f"p{q * 100:.10g}"


def _item_id(name: str, value: Any) -> str:
    problem = item_id_problem(value)
    if problem:
        raise RequestError(f"{name}: {problem}")
    return value


def _item_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_ITEMS:
        raise RequestError(f"item_ids must be a list of 1 to {MAX_ITEMS} item ids, got "
                           f"{json_kind(value) if not isinstance(value, list) else f'{len(value)} ids'}")
    ids = tuple(_item_id(f"item_ids[{i}]", v) for i, v in enumerate(value))
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = next(i for i in ids if i in seen or seen.add(i))
        raise RequestError(f"item_ids repeats {_show(repeated)}")
    return ids


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
        raise RequestError(f"{problem}, got {json_kind(value)}")
    if not low <= number <= high:
        raise RequestError(f"{problem}, got {_show(value)}")
    return number


def _conf(value: Any) -> float:
    """conf compared as written (a JSON number's text, a decimal string), as a double inside CONF_RANGE."""
    problem = "conf must be a number strictly between 0 and 1"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(f"{problem}, got {json_kind(value)}")
    if isinstance(value, str) and (len(value) > _MAX_STRING or not _CONF_STRING.fullmatch(value)):
        raise RequestError(f"{problem} (a number or a decimal string such as \"0.9\"), got {_show(value)}")
    exact = Decimal(value.text if isinstance(value, JsonNumber) else value)
    if not (exact.is_finite() and 0 < exact < 1):
        raise RequestError(f"{problem}, got {_show(value)}")
    low, high = CONF_RANGE
    return min(max(float(exact), low), high)


def _reject_constant(name: str) -> None:
    raise RequestError(f"{name} is not a valid JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise RequestError(f"duplicate field {_show(key)}")
        document[key] = value
    return document


def _show(value: Any) -> str:
    """A value for a message: a string quoted, a number as sent, anything else as JSON (true, null, [1])."""
    text = repr(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else (
        json.dumps(value, ensure_ascii=False))
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


def request_schema(max_periods: int = DEFAULT_MAX_PERIODS, *, panel: bool = False) -> dict[str, Any]:
    """The JSON Schema of a request body to a single-series model, or to a panel model (``panel``)."""

    def integer(low: int, high: int, example: int, description: str) -> dict[str, Any]:
        return {
            "description": description,
            "anyOf": [
                {"type": "integer", "minimum": low, "maximum": high},
                {"type": "string", "pattern": integer_pattern(low, high)},
            ],
            "example": example,
        }

    item_id = {"type": "string", "minLength": 1, "maxLength": MAX_ITEM_ID_LENGTH, "pattern": ITEM_ID_PATTERN,
               "description": "A series of the panel model.", "example": "store-1"}
    forecast = {
        "type": "object",
        "additionalProperties": False,
        "required": ["periods"],
        "oneOf": [{"required": ["conf"]}, {"required": ["quantiles"]}],
        "properties": {
            "periods": integer(1, max_periods, 26, "Periods to forecast after the last observation."),
            "conf": {
                "description": "Level of the central prediction interval, strictly between 0 and 1.",
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    {"type": "string", "pattern": f"^{CONF_PATTERN}$", "maxLength": _MAX_STRING},
                ],
                "example": 0.9,
            },
            "quantiles": {
                "description": "Quantiles to forecast instead of an interval (response keys p10, p50, ...), "
                               "distinct to 10 significant digits (their keys): uniqueItems cannot say it.",
                "type": "array", "minItems": 1, "maxItems": MAX_QUANTILES, "uniqueItems": True,
                "items": {"type": "number", "minimum": QUANTILE_RANGE[0], "maximum": QUANTILE_RANGE[1]},
                "example": [0.1, 0.5, 0.9],
            },
            "history": integer(0, MAX_HISTORY, 0, "Recent observations to return as well (for plots)."),
        },
        "example": {"periods": 26, "conf": 0.9},
    }
    if not panel:
        return {"title": "ForecastRequest", **forecast}
    forecast["properties"].update(
        item_id=item_id,
        item_ids={"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "uniqueItems": True, "items": item_id,
                  "description": "Several series of the panel model, answered as a list."},
    )
    forecast["allOf"] = [{"oneOf": [{"required": ["item_id"]}, {"required": ["item_ids"]}]}]
    forecast["example"] = {"item_id": "store-1", "periods": 12, "quantiles": [0.1, 0.5, 0.9]}
    listing = {
        "type": "object",
        "additionalProperties": False,
        "required": ["list_items"],
        "properties": {
            "list_items": {"type": "boolean", "enum": [True], "description": "List the panel's item ids."},
            "offset": integer(0, MAX_OFFSET, 0, "Items to skip (the listing is sorted)."),
            "limit": integer(1, MAX_LIST_LIMIT, MAX_LIST_LIMIT, "Item ids per page."),
        },
        "example": {"list_items": True, "offset": 0, "limit": 100},
    }
    return {"title": "PanelRequest", "oneOf": [forecast, listing]}
