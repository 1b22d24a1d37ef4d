"""The request rules (pipeline_code/serving/request.py) and the exactness of their JSON Schema."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_code.serving.request import (
    MAX_BODY_BYTES,
    ForecastRequest,
    RequestError,
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
    if "anyOf" in schema:
        return any(_schema_accepts(s, document) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(document, dict):
            return False
        if any(k not in document for k in schema["required"]) or set(document) - set(schema["properties"]):
            return False
        return all(_schema_accepts(schema["properties"][k], v) for k, v in document.items())
    if kind == "integer":
        ok = (isinstance(document, int) and not isinstance(document, bool)) or (
            isinstance(document, float) and math.isfinite(document) and document.is_integer())
        return ok and schema["minimum"] <= document <= schema["maximum"]
    if kind == "number":
        ok = isinstance(document, (int, float)) and not isinstance(document, bool) and math.isfinite(document)
        return ok and schema["exclusiveMinimum"] < document < schema["exclusiveMaximum"]
    if kind == "string":
        return isinstance(document, str) and len(document) <= schema.get("maxLength", 10**9) and bool(
            re.search(schema["pattern"], document))
    raise AssertionError(schema)


values = st.one_of(
    st.integers(-3, 200), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.sampled_from(["26", "0.9", ".5", "0", "0.0", "1", "104", "105", "156", "157", "026", "1e-3", " 1", "abc"]),
    st.from_regex(r"[0-9.]{1,6}", fullmatch=True),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["periods", "conf", "history", "extra"]), values, max_size=4))
def test_schema_and_validator_agree(document):
    """What the OpenAPI schema accepts is exactly what the server accepts (schemathesis relies on it)."""
    try:
        parse_request(json.dumps(document).encode())
        accepted = True
    except RequestError:
        accepted = False
    assert accepted == _schema_accepts(request_schema(), document)
