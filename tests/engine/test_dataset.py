"""Every bad input is refused with a message naming the rule (and the line where there is one)."""

from datetime import date

import numpy as np
import pytest

from pipeline_code.engine.dataset import DataValidationError, load_series, parse_series

GOOD = "timestamp,value\n2020-01-03,10\n2020-01-10,11\n2020-01-17,12\n"


def parse(text: str | bytes, **kw):
    raw = text.encode() if isinstance(text, str) else text
    return parse_series(raw, freq=kw.pop("freq", "W-FRI"), **kw)


def test_good_file_parses():
    s = parse(GOOD)
    assert s.timestamps == [date(2020, 1, 3), date(2020, 1, 10), date(2020, 1, 17)]
    np.testing.assert_array_equal(s.values, [10, 11, 12])


@pytest.mark.parametrize(
    ("text", "rule", "line"),
    [
        ("", "empty", None),
        ("timestamp,value\n", "empty", None),
        ("date,amount\n2020-01-03,1\n", "header", 1),
        ("timestamp;value\n2020-01-03;1\n", "delimiter", 1),
        ("\ufefftimestamp,value\n2020-01-03,1\n", "encoding", 1),
        ("timestamp,value\n2020-13-03,1\n", "timestamp", 2),
        ("timestamp,value\n03/01/2020,1\n", "timestamp", 2),
        ("timestamp,value\n2020-01-03,abc\n", "value", 2),
        ("timestamp,value\n2020-01-03,1\n2020-01-10,nan\n", "value", 3),
        ("timestamp,value\n2020-01-03,1\n2020-01-10,inf\n", "value", 3),
        ("timestamp,value\n2020-01-03,-4\n", "value", 2),
        ("timestamp,value\n2020-01-03,0\n", "value", 2),
        ("timestamp,value\n2020-01-03,1\n2020-01-03,2\n", "duplicate", 3),
        ("timestamp,value\n2020-01-10,1\n2020-01-03,2\n", "order", 3),
        ("timestamp,value\n2020-01-03,1\n2020-01-24,2\n", "gap", 3),
        ("timestamp,value\n2020-01-02,1\n", "calendar", 2),
        ("timestamp,value\n2020-01-03,1,7\n", "columns", 2),
        ("timestamp,value,item_id\n2020-01-03,1,a\n2020-01-10,1,b\n", "item_id", None),
    ],
)
def test_bad_input_is_refused_with_rule_and_line(text, rule, line):
    with pytest.raises(DataValidationError) as info:
        parse(text)
    assert info.value.rule == rule
    assert info.value.line == line
    assert rule in str(info.value)


def test_too_short_names_what_is_needed():
    with pytest.raises(DataValidationError, match="at least 10") as info:
        parse(GOOD, min_length=10)
    assert info.value.rule == "too-short"


def test_oversize_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(GOOD)
    with pytest.raises(DataValidationError, match="limit is 10 bytes"):
        load_series(path, freq="W-FRI", max_bytes=10)


def test_tolerated_gap_is_interpolated_on_the_calendar():
    s = parse("timestamp,value\n2020-01-03,10\n2020-01-17,40\n", max_gap_periods=1)
    assert s.timestamps[1] == date(2020, 1, 10)
    assert s.values[1] == pytest.approx(20.0)  # geometric midpoint (log-linear)


def test_single_item_id_column_is_accepted():
    s = parse("timestamp,value,item_id\n2020-01-03,1,us\n2020-01-10,2,us\n")
    assert len(s) == 2
