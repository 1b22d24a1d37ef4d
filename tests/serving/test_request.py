"""The request rules (pipeline_code/serving/request.py) and the exactness of their JSON Schema."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_code.serving.request import (
    MAX_BODY_BYTES,
    ForecastRequest,
    ItemsRequest,
    RequestError,
    check_content_encoding,
    check_content_type,
    integer_pattern,
    parse_request,
    request_schema,
)


def test_valid_forms():
    assert parse_request(b'{"periods": 26, "conf": 0.9}') == ForecastRequest(26, 0.9, 0)
    assert parse_request(b'{"periods": "26", "conf": "0.9", "history": "12"}') == ForecastRequest(26, 0.9, 12)
    assert parse_request(b'{"periods": 26.0, "conf": ".5"}') == ForecastRequest(26, 0.5, 0)
    assert parse_request(b'{"periods": 1, "conf": 1e-9}').conf == 1e-9


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b'{"periods": true, "conf": 0.9}', 400, "boolean"),
        (b'{"periods": 3, "conf": false}', 400, "boolean"),
        (b'{"periods": 3, "conf": NaN}', 400, "NaN"),
        (b'{"periods": 3, "conf": 0.9, "x": 1}', 400, "unknown field"),
        (b'{"periods": 3, "periods": 3, "conf": 0.9}', 400, "duplicate"),
        (b"x" * (MAX_BODY_BYTES + 1), 413, "exceeds"),
        (b'{"periods": 3}', 400, "missing"),
        (b"[1]", 400, "JSON object"),
    ],
)
def test_invalid(raw, status, fragment):
    with pytest.raises(RequestError) as info:
        parse_request(raw)
    assert info.value.status == status and fragment in info.value.message


def test_panel_forms():
    assert parse_request(b'{"item_id": "A", "periods": 3, "quantiles": [0.9, 0.1, 0.5]}') == ForecastRequest(
        3, None, 0, (0.1, 0.5, 0.9), ("A",), False)
    many = parse_request(b'{"item_ids": ["B", "A"], "periods": "3", "conf": ".8", "history": 2}')
    assert many == ForecastRequest(3, 0.8, 2, None, ("B", "A"), True)
    assert many.to_dict() == {"periods": 3, "conf": 0.8, "history": 2, "item_ids": ["B", "A"]}
    assert many.summary()["item_ids"] == 2
    assert parse_request(b'{"list_items": true}') == ItemsRequest(0, 1000)
    assert parse_request(b'{"list_items": true, "offset": "20", "limit": 5}') == ItemsRequest(20, 5)
    assert parse_request(json.dumps({"item_id": "\u00e9" * 256, "periods": 1, "conf": 0.5}).encode()).item_ids
    # A surrogate pair escape is one character (U+1F600), not a lone surrogate.
    pair = parse_request(b'{"item_id": "\\ud83d\\ude00", "periods": 1, "conf": 0.5}')
    assert pair.item_ids == ("\U0001f600",)


@pytest.mark.parametrize(("document", "fragment"), [
    ({"periods": 3}, "missing field(s): conf (or quantiles)"),
    ({"periods": 3, "conf": 0.9, "quantiles": [0.5]}, "either conf or quantiles"),
    ({"periods": 3, "quantiles": [0.5, 0.5]}, "repeats one"),
    ({"periods": 3, "quantiles": [0.1, 1.0]}, "from 0.001 to 0.999"),
    ({"periods": 3, "quantiles": [True]}, "from 0.001 to 0.999"),
    ({"periods": 3, "quantiles": 0.5}, "a list of 1 to 9"),
    ({"periods": 3, "conf": 0.9, "item_id": ""}, "item_id: an item id must not be empty"),
    ({"periods": 3, "conf": 0.9, "item_id": "x" * 257}, "at most 256 characters"),
    ({"periods": 3, "conf": 0.9, "item_id": "a\tb"}, "control or invisible characters"),
    ({"periods": 3, "conf": 0.9, "item_id": "a\u200bb"}, "control or invisible characters"),
    ({"periods": 3, "conf": 0.9, "item_id": "a\ud800"}, "item_id: an item id must be valid Unicode, without"),
    ({"periods": 3, "conf": 0.9, "item_ids": ["a", "\udfff"]}, "item_ids[1]: an item id must be valid"),
    ({"periods": 3, "conf": 0.9, "item_ids": ["a", 3]}, "item_ids[1]: an item id must be a string"),
    ({"periods": 3, "conf": 0.9, "item_ids": ["a", "b", "a"]}, "item_ids repeats 'a'"),
    ({"periods": 3, "conf": 0.9, "item_ids": [str(i) for i in range(101)]}, "1 to 100 item ids, got 101 ids"),
    ({"periods": 3, "conf": 0.9, "item_id": "a", "item_ids": ["b"]}, "either item_id or item_ids"),
    ({"list_items": 1}, "list_items must be true"),
    ({"list_items": True, "item_id": "a"}, "list_items takes only offset and limit; remove item_id"),
    ({"periods": 3, "conf": 0.9, "limit": 3}, "limit: only for listing items"),
])
def test_invalid_panel_requests(document, fragment):
    with pytest.raises(RequestError) as info:
        parse_request(json.dumps(document).encode())
    assert info.value.status == 400 and fragment in info.value.message


def test_content_type():
    for ok in (None, "", "application/json", "application/json; charset=UTF-8", "APPLICATION/JSON"):
        check_content_type(ok)
    for bad in ("text/json", "application/jsonx", "application/json; charset=latin-1", "text/plain"):
        with pytest.raises(RequestError) as info:
            check_content_type(bad)
        assert info.value.status == 415


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400), st.integers(-5, 100_000))
def test_integer_pattern_is_exact(a, b, n):
    low, high = min(a, b), max(a, b)
    assert bool(re.fullmatch(integer_pattern(low, high)[1:-1], str(n))) == (low <= n <= high)


def _schema_accepts(schema: dict, document) -> bool:
    """A tiny validator for the subset of JSON Schema that request_schema() uses."""
    if "anyOf" in schema and not any(_schema_accepts(s, document) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(_schema_accepts(s, document) for s in schema["oneOf"]) != 1:
        return False
    if not all(_schema_accepts(s, document) for s in schema.get("allOf", [])):
        return False
    if "required" in schema and (not isinstance(document, dict) or any(k not in document for k in schema["required"])):
        return False
    if "enum" in schema and not any(type(document) is type(v) and document == v for v in schema["enum"]):
        return False
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "object":
        if not isinstance(document, dict) or set(document) - set(schema["properties"]):
            return False
        return all(_schema_accepts(schema["properties"][k], v) for k, v in document.items())
    if kind == "array":
        if not isinstance(document, list) or not schema["minItems"] <= len(document) <= schema["maxItems"]:
            return False
        if schema.get("uniqueItems") and len({json.dumps(v) for v in document}) != len(document):
            return False
        return all(_schema_accepts(schema["items"], v) for v in document)
    if kind == "boolean":
        return isinstance(document, bool)
    if kind == "integer":
        ok = (isinstance(document, int) and not isinstance(document, bool)) or (
            isinstance(document, float) and math.isfinite(document) and document.is_integer())
        return ok and schema["minimum"] <= document <= schema["maximum"]
    if kind == "number":
        ok = isinstance(document, (int, float)) and not isinstance(document, bool) and math.isfinite(document)
        if not ok:
            return False
        if "exclusiveMinimum" in schema:
            return schema["exclusiveMinimum"] < document < schema["exclusiveMaximum"]
        return schema["minimum"] <= document <= schema["maximum"]
    if kind == "string":
        return (isinstance(document, str) and schema.get("minLength", 0) <= len(document)
                <= schema.get("maxLength", 10**9) and bool(re.search(schema["pattern"], document)))
    raise AssertionError(schema)


values = st.one_of(
    st.integers(-3, 200), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.sampled_from(["26", "0.9", ".5", "0", "0.0", "1", "104", "105", "156", "157", "026", "1e-3", " 1", "abc",
                     "", "a\x07", "é" * 257, "store-1"]),
    st.from_regex(r"[0-9.]{1,6}", fullmatch=True),
    st.lists(st.sampled_from([0.1, 0.5, 0.9, 0.0005, 0.999, 1, "a", "b", "", True, 0.25]), max_size=11),
    st.lists(st.text(max_size=4), max_size=4),
)
FIELD_NAMES = ["periods", "conf", "history", "quantiles", "item_id", "item_ids", "list_items", "offset", "limit",
               "extra"]


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=5), st.booleans())
def test_schema_and_validator_agree(document, panel):
    """What the OpenAPI schema accepts is exactly what the server accepts (schemathesis relies on it):
    a single-series model's schema refuses what its app refuses (items, listings); a panel's needs an item."""
    try:
        parsed = parse_request(json.dumps(document).encode())
        accepted = panel == (isinstance(parsed, ItemsRequest) or parsed.item_ids is not None)
    except RequestError:
        accepted = False
    assert accepted == _schema_accepts(request_schema(panel=panel), document)


# --- conf compared as written; messages in JSON's terms; refusals that name the problem -----------

@pytest.mark.parametrize(("raw", "expected"), [
    # Inside (0, 1) as written, 1 or 0 as doubles: the nearest doubles inside (docs/serving.md).
    (b'"0.99999999999999999"', math.nextafter(1.0, 0.0)),
    (b"0.99999999999999999", math.nextafter(1.0, 0.0)),
    (b"9.9999999999999999e-1", math.nextafter(1.0, 0.0)),
    (b"1e-400", math.ulp(0.0)),
    (b'"0.9"', 0.9),
    (b"0.9999999999999999", 0.9999999999999999),
])
def test_conf_is_compared_as_written_not_as_rounded(raw, expected):
    assert parse_request(b'{"periods": 1, "conf": %s}' % raw).conf == expected


@pytest.mark.parametrize(("raw", "shown"), [
    (b"1e-400", None), (b"1", "got 1"), (b"1.0", "got 1.0"), (b"0.0", "got 0.0"), (b"1e400", "got 1e400"),
    (b"-1e-400", "got -1e-400"), (b"1.00000000000000001", "got 1.00000000000000001"),
    (b'"0.0"', "got '0.0'"), (b"null", "got null"), (b"[0.5]", "got an array"),
])
def test_conf_refusals_name_the_value_as_sent(raw, shown):
    if shown is None:  # accepted: in range as written
        parse_request(b'{"periods": 1, "conf": %s}' % raw)
        return
    with pytest.raises(RequestError) as info:
        parse_request(b'{"periods": 1, "conf": %s}' % raw)
    assert info.value.message.endswith(shown), info.value.message


@pytest.mark.parametrize(("document", "message"), [
    ({"periods": 1, "conf": 0.9, "item_id": None}, "item_id: an item id must be a string, got null"),
    ({"periods": 1, "conf": 0.9, "item_id": 5}, "item_id: an item id must be a string, got a number"),
    ({"periods": 1, "conf": 0.9, "item_id": True}, "item_id: an item id must be a string, got a boolean"),
    ({"periods": 1, "conf": 0.9, "item_ids": [{}]}, "item_ids[0]: an item id must be a string, got an object"),
    ({"periods": 1, "conf": 0.9, "item_ids": "a"}, "item_ids must be a list of 1 to 100 item ids, got a string"),
    ({"list_items": False}, "list_items must be true, got false"),
    ({"list_items": None}, "list_items must be true, got null"),
    ({"list_items": "yes"}, "list_items must be true, got 'yes'"),
    ({"periods": None, "conf": 0.9}, "periods must be an integer from 1 to 104, got null"),
])
def test_messages_name_json_types_not_python_ones(document, message):
    with pytest.raises(RequestError) as info:
        parse_request(json.dumps(document).encode())
    assert info.value.message == message


def test_well_formed_json_past_the_parsers_limits_is_named_not_malformed():
    digits = sys.get_int_max_str_digits()
    with pytest.raises(RequestError) as info:
        parse_request(b'{"periods": %s, "conf": 0.9}' % (b"1" * 5000))
    assert info.value.message == f"request body holds a number with more than {digits} digits"
    with pytest.raises(RequestError) as info:
        parse_request(b"[" * 5000 + b"]" * 5000)
    assert info.value.message == "request body nests arrays or objects deeper than 32 levels"
    # Brackets inside strings do not nest; 32 levels are still parsed (and refused as requests).
    with pytest.raises(RequestError, match="unknown field"):
        parse_request(json.dumps({"x": "[" * 5000}).encode())
    with pytest.raises(RequestError, match="JSON object"):
        parse_request(b"[" * 32 + b"]" * 32)


def test_content_encoding():
    for ok in (None, "", "identity", "IDENTITY", "identity, identity"):
        check_content_encoding(ok)
    for bad in ("gzip", "deflate", "br", "identity, gzip", "x-gzip"):
        with pytest.raises(RequestError) as info:
            check_content_encoding(bad)
        assert info.value.status == 415 and "unsupported content encoding" in info.value.message
