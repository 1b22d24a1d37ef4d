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
        ("timestamp,value\n2020-13-03,1\n", "timestamp", 2),
        ("timestamp,value\n03/01/2020,1\n", "timestamp", 2),
        ("timestamp,value\n2020-01-03,abc\n", "value", 2),
        ("timestamp,value\n2020-01-03,1_100\n", "value", 2),  # float() reads 1100
        ("timestamp,value\n2020-01-03,\uff11\n", "value", 2),  # a full-width digit one
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


ROWS = "".join(f"2020-{m:02d}-{d:02d},{10 + i}\n" for i, (m, d) in enumerate(
    [(1, 3), (1, 10), (1, 17), (1, 24), (1, 31)]))


@pytest.mark.parametrize(
    ("raw", "rule", "line"),
    [
        (b"timestamp,value\r2020-01-03,1\r2020-01-10,2\r", "line-endings", 1),  # CR-only (classic Mac)
        (b"timestamp,value\n2020-01-03,1\n2020-01-10,2\r2020-01-17,3\n", "line-endings", 3),
        (b"timestamp,value\n2020-01-03,1\n2020-01-10," + b"7" * 200_000 + b"\n", "field-size", 3),
        (b'timestamp,value\n2020-01-03,1\n2020-01-10,"2\n', "csv", 3),  # a quote never closed
        # named where it opens, not where the file ends inside it
        (b'timestamp,value\n2020-01-03,1\n"2020-01-10,2\n2020-01-17,3\n2020-01-24,4\n', "csv", 3),
        (b"timestamp,value\n2020-01-03,1\n2020-01-10,1e308\n", "value-range", 3),
        (b"timestamp,value\n2020-01-03,1\n2020-01-10,8e307\n", "value-range", 3),
        (b"timestamp,value\n2020-01-03,1\n2020-01-10,1.5e100\n", "value-range", 3),
        (b"timestamp,value\n2020-01-03,1e-300\n", "value-range", 2),
        (b"timestamp,value\n2020-01-03,1\n9999-12-31,2\n", "date-range", 3),
        (b"timestamp,value\n2201-01-06,1\n", "date-range", 2),
    ],
)
def test_malformed_csv_and_out_of_range_values_name_the_rule_and_line(raw, rule, line):
    with pytest.raises(DataValidationError) as info:
        parse(raw)
    assert (info.value.rule, info.value.line) == (rule, line)
    assert f"[{rule}] (line {line})" in str(info.value)


def test_range_limits_are_inclusive():
    s = parse("timestamp,value\n2200-12-26,1e100\n")  # a Friday, the largest value
    assert s.values[0] == 1e100
    assert parse("timestamp,value\n2020-01-03,-1e100\n2020-01-10,0\n", require_positive=False).values[0] == -1e100


def test_a_refused_cell_is_quoted_short():
    long_cell = "x" * 5000
    with pytest.raises(DataValidationError) as info:
        parse(f"timestamp,value\n2020-01-03,{long_cell}\n")
    assert info.value.rule == "value" and len(str(info.value)) < 120
    with pytest.raises(DataValidationError) as info:
        parse(f"root:x:0:0:{long_cell}\n")
    assert info.value.rule == "header" and long_cell not in str(info.value)


def test_max_rows_keeps_the_latest_observations_after_validating_all():
    s = parse("timestamp,value\n" + ROWS, max_rows=2)
    assert s.timestamps == [date(2020, 1, 24), date(2020, 1, 31)]
    np.testing.assert_array_equal(s.values, [13, 14])
    with pytest.raises(DataValidationError, match="not a number"):  # rows before the kept ones still count
        parse("timestamp,value\n2019-12-27,x\n" + ROWS, max_rows=2)
    with pytest.raises(ValueError, match="max_rows"):
        parse("timestamp,value\n" + ROWS, max_rows=2, min_length=3)


def test_header_names_match_in_any_case():
    s = parse("Timestamp,VALUE\n2020-01-03,10\n2020-01-10,11\n")
    np.testing.assert_array_equal(s.values, [10, 11])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a 3-column header of other names: both layouts, and the order of a headerless file
        ("item,date,sales\na,2020-01-03,1\n", ["'timestamp,value' (one series)", "'item_id,timestamp,value' (a panel",
                                               "series.columns", "settings file"]),
        # Amazon Forecast's layout without a header, its columns in another order: the order it reads as
        ("2020-01-03 00:00:00,26.3,elec\n", ["line 1 is a row", "set series.columns to ['timestamp',"
                                             " 'target_value', 'item_id']", "'timestamp,value' (one series)"]),
        ("2020-01-03,1\n", ["line 1 is a row", "add the header 'timestamp,value'"]),
    ],
)
def test_a_header_of_other_names_says_which_layouts_are_read(text, expected):
    with pytest.raises(DataValidationError) as info:
        parse(text)
    assert (info.value.rule, info.value.line) == ("header", 1)
    for part in expected:
        assert part in str(info.value), str(info.value)
    assert "missing column(s)" not in str(info.value)


def test_a_gap_names_the_setting_that_fills_it_and_where_it_goes():
    """Business days (no weekend rows) on the daily calendar: the gap says what to set, to what, where."""
    with pytest.raises(DataValidationError) as info:
        parse("timestamp,value\n1991-07-05,1628\n1991-07-08,1613\n", freq="D")
    message = str(info.value)
    assert info.value.rule == "gap" and "2 missing period(s) between 1991-07-05 and 1991-07-08 (D)" in message
    assert "data.max_gap_periods is 0" in message and '{"data": {"max_gap_periods": 2}}' in message
    assert ".settings.json beside the upload" in message and "--settings" in message
    assert parse("timestamp,value\n1991-07-05,1628\n1991-07-08,1613\n", freq="D", max_gap_periods=2).values.size == 4


@pytest.mark.parametrize("cell", ["0", "-3.5"])
def test_a_value_that_is_not_positive_says_it_is_unsupported_and_what_to_do(cell):
    with pytest.raises(DataValidationError) as info:
        parse(f"timestamp,value\n2020-01-03,{cell}\n")
    message = str(info.value)
    assert (info.value.rule, info.value.line) == ("value", 2)
    assert "zero and negative values are not supported" in message
    assert "make every value positive" in message and "leave the series out" in message


def test_a_processed_series_reads_back_exactly(tmp_path):
    """What preprocessing writes is what the jobs after it read: no rounding of valid values."""
    from pipeline_code.engine.core.calendar import parse_freq
    from pipeline_code.engine.dataset import Series

    rng = np.random.default_rng(0)
    values = np.concatenate([100 + 1e-11 * rng.normal(size=30), 1e12 + 30 * np.sin(np.arange(30)), [1e-100, 1e100]])
    stamps = [date(2000, 1, 7)]
    for _ in range(values.size - 1):
        stamps.append(parse_freq("W-FRI").shift(stamps[-1], 1))
    Series(stamps, values, "W-FRI").to_csv(tmp_path / "s.csv")
    np.testing.assert_array_equal(load_series(tmp_path / "s.csv", freq="W-FRI").values, values)


def test_a_quote_never_closed_is_refused_at_the_first_look_where_it_opens():
    """Before settings are derived from the rows before it (a frequency from two dates), the first look
    refuses the upload as the input contract does, one series or a panel."""
    from pipeline_code.engine.profile import profile_csv

    rows = [f"2020-{m:02d}-01,{m}" for m in range(1, 13)]
    rows[2] = '"' + rows[2]
    assert profile_csv(("timestamp,value\n" + "\n".join(rows) + "\n").encode()).problem == (
        "[csv] (line 4) malformed CSV: a quoted field that starts on this line is never closed (the file ends"
        " inside it, at line 13)")
    panel = "item_id,timestamp,value\n" + "\n".join(f"a,{r}" for r in rows) + "\n"
    assert profile_csv(panel.encode()).problem.startswith("[csv] (line 4) ")
    assert profile_csv(b"timestamp,value\n2020-01-03,1\n").problem is None
