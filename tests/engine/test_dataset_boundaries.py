"""Every rule of the input contract at its boundary: the last accepted input and the first refused one."""

from datetime import date, timedelta

import numpy as np
import pytest

from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.dataset import (
    MAX_ABS_VALUE, MAX_DATE, MIN_ABS_VALUE, DataValidationError, load_series, parse_series,
)

FRIDAY = date(2020, 1, 3)


def csv_text(stamps, values=None, header="timestamp,value") -> str:
    values = values if values is not None else [10 + i for i in range(len(stamps))]
    return "\n".join([header] + [f"{s.isoformat()},{v}" for s, v in zip(stamps, values)]) + "\n"


def parse(text: str | bytes, freq: str = "W-FRI", **kw):
    return parse_series(text.encode() if isinstance(text, str) else text, freq=freq, **kw)


def refused(text: str | bytes, rule: str, line: int | None, **kw) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        parse(text, **kw)
    assert (info.value.rule, info.value.line) == (rule, line), str(info.value)
    return info.value


def weeks(n: int, start: date = FRIDAY) -> list[date]:
    return [start + timedelta(weeks=i) for i in range(n)]


# --- size and length ------------------------------------------------------------------------------

def test_file_of_exactly_max_bytes_is_read_and_one_byte_more_is_refused(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text(csv_text(weeks(5)))
    size = path.stat().st_size
    assert len(load_series(path, freq="W-FRI", max_bytes=size)) == 5
    with pytest.raises(DataValidationError, match=f"file is {size} bytes; the limit is {size - 1}") as info:
        load_series(path, freq="W-FRI", max_bytes=size - 1)
    assert info.value.rule == "oversize"


def test_a_path_that_is_not_a_file_is_refused(tmp_path):
    with pytest.raises(DataValidationError) as info:
        load_series(tmp_path, freq="W-FRI")
    assert info.value.rule == "file"


def test_exactly_min_length_observations_pass_and_one_fewer_is_too_short():
    text = csv_text(weeks(6))
    assert len(parse(text, min_length=6)) == 6
    error = refused(text, "too-short", None, min_length=7)
    assert "6 observations; at least 7" in str(error)


def test_periods_filled_in_a_tolerated_gap_count_towards_the_length():
    stamps = [FRIDAY, FRIDAY + timedelta(weeks=2), FRIDAY + timedelta(weeks=3)]
    assert len(parse(csv_text(stamps), min_length=4, max_gap_periods=1)) == 4
    refused(csv_text(stamps), "too-short", None, min_length=5, max_gap_periods=1)


# --- the gap rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("freq, start", [
    ("W-FRI", FRIDAY), ("D", date(2020, 2, 27)), ("MS", date(2019, 11, 1)), ("ME", date(2019, 11, 30)),
    ("QE", date(2019, 9, 30)), ("YS", date(2015, 1, 1)),
])
@pytest.mark.parametrize("max_gap", [0, 1, 3])
def test_a_gap_of_max_gap_periods_is_filled_and_one_more_is_refused(freq, start, max_gap):
    calendar = parse_freq(freq)
    before = [calendar.shift(start, k) for k in range(3)]

    def with_gap(missing: int) -> str:
        after = [calendar.shift(before[-1], missing + 1 + k) for k in range(2)]
        return csv_text(before + after)

    series = parse(with_gap(max_gap), freq=freq, max_gap_periods=max_gap)
    assert series.timestamps == [calendar.shift(start, k) for k in range(5 + max_gap)]
    error = refused(with_gap(max_gap + 1), "gap", 5, freq=freq, max_gap_periods=max_gap)
    assert f"{max_gap + 1} missing period(s)" in str(error)


def test_a_series_counts_the_points_filled_in_its_gaps():
    stamps = weeks(10)
    series = parse(csv_text(stamps[:2] + stamps[4:7] + stamps[8:]), max_gap_periods=2)
    assert (len(series), series.filled) == (10, 3)
    assert parse(csv_text(stamps), max_gap_periods=2).filled == 0


def test_gap_filling_keeps_observed_values_and_interpolates_on_the_log_scale():
    values = [0.1, 0.3, 10.0, 7.0]
    stamps = [FRIDAY, FRIDAY + timedelta(weeks=1), FRIDAY + timedelta(weeks=3), FRIDAY + timedelta(weeks=4)]
    series = parse(csv_text(stamps, values), max_gap_periods=1)
    np.testing.assert_array_equal(series.values[[0, 1, 3, 4]], values)  # observed values exactly as read
    assert series.values[2] == pytest.approx(np.sqrt(0.3 * 10.0))


def test_gap_filling_without_the_positivity_rule_interpolates_linearly():
    stamps = [FRIDAY, FRIDAY + timedelta(weeks=2), FRIDAY + timedelta(weeks=3)]
    series = parse(csv_text(stamps, [-4.0, 0.0, 3.0]), max_gap_periods=1, require_positive=False)
    np.testing.assert_array_equal(series.values, [-4.0, -2.0, 0.0, 3.0])


# --- order, duplicates, calendar ------------------------------------------------------------------

def test_consecutive_periods_pass_a_repeat_is_a_duplicate_and_a_step_back_is_out_of_order():
    assert len(parse(csv_text(weeks(2)))) == 2
    refused(csv_text([FRIDAY, FRIDAY]), "duplicate", 3)
    refused(csv_text([FRIDAY, FRIDAY - timedelta(weeks=1)]), "order", 3)


def test_two_swapped_rows_are_out_of_order_not_a_gap():
    """Swapped rows look like a gap, then a step back: the step back is what the user must fix."""
    stamps = weeks(6)
    stamps[2], stamps[3] = stamps[3], stamps[2]
    refused(csv_text(stamps), "order", 5)
    gap = weeks(6)
    refused(csv_text(gap[:2] + gap[3:]), "gap", 4)  # a real gap, followed by the next period
    refused(csv_text(gap[:2] + gap[3:4]), "gap", 4)  # a gap on the last row


@pytest.mark.parametrize("freq, on, off", [
    ("W-FRI", date(2020, 1, 3), [date(2020, 1, 2), date(2020, 1, 4)]),
    ("MS", date(2020, 2, 1), [date(2020, 1, 31), date(2020, 2, 2)]),
    ("ME", date(2020, 2, 29), [date(2020, 2, 28), date(2020, 3, 1)]),  # leap year: the 29th ends February
    ("ME", date(2021, 2, 28), [date(2021, 2, 27), date(2021, 3, 1)]),
    ("QE", date(2020, 3, 31), [date(2020, 3, 30), date(2020, 4, 30)]),
    ("QS", date(2020, 4, 1), [date(2020, 3, 1), date(2020, 5, 1)]),
])
def test_timestamps_on_the_calendar_pass_and_the_nearest_off_it_are_refused(freq, on, off):
    assert parse(csv_text([on]), freq=freq).timestamps == [on]
    for day in off:
        refused(csv_text([on, day] if day > on else [day]), "calendar", 3 if day > on else 2, freq=freq)


def test_a_date_off_the_calendar_names_the_date_expected_after_the_one_before():
    """A holiday moved one week's date by a day."""
    stamps = weeks(6)
    stamps[3] -= timedelta(days=1)
    error = refused(csv_text(stamps), "calendar", 5)
    assert str(error) == ("[calendar] (line 5) 2020-01-23 is not a W-FRI timestamp (expected 2020-01-24, one"
                          " period after 2020-01-17)")


# --- cells ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["2020-01-03", " 2020-01-03 ", "2020-01-03 00:00:00", "2020-01-03T00:00:00"])
def test_iso_dates_pass(cell):
    """Amazon Forecast's yyyy-MM-dd HH:mm:ss at midnight too, as a panel reads it (one rule)."""
    assert parse(f"timestamp,value\n{cell},1\n").timestamps == [FRIDAY]


def test_a_time_of_day_is_refused_as_a_panel_refuses_it():
    from pipeline_code.engine.panel_data import parse_panel
    from pipeline_code.engine.settings import Settings

    error = refused("timestamp,value\n2020-01-03 00:00:00,1\n2020-01-10 12:00:00,2\n", "timestamp", 3)
    with pytest.raises(DataValidationError) as panel:
        parse_panel(b"item_id,timestamp,value\nA,2020-01-03 00:00:00,1\nA,2020-01-10 12:00:00,2\n",
                    settings=Settings())
    assert str(panel.value) == str(error).replace("(line 3)", "(line 3, item 'A')")
    assert "has a time of day; daily and coarser frequencies take yyyy-MM-dd, or yyyy-MM-dd 00:00:00" in str(error)


@pytest.mark.parametrize("cell", ["2020-01-32", "2021-02-29", "2020/01/03", "03/01/2020", "",
                                  "20200103", "2020-W01-5", "2020-003"])  # fromisoformat's other forms
def test_impossible_or_foreign_dates_are_refused(cell):
    refused(f"timestamp,value\n2019-12-27,1\n{cell},1\n", "timestamp", 3)


@pytest.mark.parametrize("cell", ["0", "-0.0", "-1e-9", "-1e100"])
def test_zero_and_below_are_refused_on_the_log_scale(cell):
    refused(f"timestamp,value\n2020-01-03,{cell}\n", "value", 2)


def test_value_magnitudes_at_the_range_limits_pass_and_the_next_floats_out_are_refused():
    for value in (MIN_ABS_VALUE, MAX_ABS_VALUE):
        assert parse(f"timestamp,value\n2020-01-03,{value!r}\n").values[0] == value
        assert parse(f"timestamp,value\n2020-01-03,{-value!r}\n", require_positive=False).values[0] == -value
    for value in (np.nextafter(MIN_ABS_VALUE, 0), np.nextafter(MAX_ABS_VALUE, np.inf)):
        refused(f"timestamp,value\n2020-01-03,{float(value)!r}\n", "value-range", 2)


def test_the_last_accepted_date_passes_and_the_day_after_is_refused():
    assert parse(f"timestamp,value\n{MAX_DATE.isoformat()},1\n", freq="D").timestamps == [MAX_DATE]
    last = MAX_DATE + timedelta(days=1)
    refused(f"timestamp,value\n{MAX_DATE.isoformat()},1\n{last.isoformat()},1\n", "date-range", 3, freq="D")


@pytest.mark.parametrize("cell", ["0", "-4.5"])
def test_without_the_positivity_rule_zero_and_negatives_pass(cell):
    assert parse(f"timestamp,value\n2020-01-03,{cell}\n", require_positive=False).values[0] == float(cell)


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "1e309", "abc", ""])
def test_non_finite_or_non_numeric_values_are_refused(cell):
    refused(f"timestamp,value\n2020-01-03,1\n2020-01-10,{cell}\n", "value", 3, require_positive=False)


# --- structure ------------------------------------------------------------------------------------

@pytest.mark.parametrize("row, fields", [("2020-01-10", 1), ("2020-01-10,1,", 3), ("2020-01-10,1,x", 3)])
def test_rows_must_have_exactly_the_header_fields(row, fields):
    error = refused(f"timestamp,value\n2020-01-03,1\n{row}\n", "columns", 3)
    assert f"found {fields}" in str(error)


def test_blank_rows_are_skipped_and_line_numbers_still_count_them():
    assert len(parse("timestamp,value\n\n2020-01-03,1\n,\n2020-01-10,2\n\n")) == 2
    refused("timestamp,value\n\n\n2020-01-03,x\n", "value", 4)


@pytest.mark.parametrize("header", ["timestamp,value", "value,timestamp", " timestamp , value ",
                                    "timestamp,value,item_id", "Timestamp,value"])
def test_headers_with_the_required_columns_pass(header):
    cells = {"timestamp": "2020-01-03", "value": "5", "item_id": "us"}
    row = ",".join(cells[name.strip().lower()] for name in header.split(","))
    assert parse(f"{header}\n{row}\n").values[0] == 5


@pytest.mark.parametrize("header", ["timestamp", "value", "timestamp,value,extra", "timestamp,value,value",
                                    "Timestamp,value,VALUE"])
def test_headers_missing_extra_or_repeated_columns_are_refused(header):
    refused(f"{header}\n" + ",".join(["2020-01-03"] + ["1"] * header.count(",")) + "\n", "header", 1)


def test_semicolon_header_is_named_as_a_delimiter_problem():
    refused("timestamp;value\n2020-01-03;1\n", "delimiter", 1)


def test_one_item_id_passes_even_with_surrounding_spaces_and_two_are_refused():
    assert len(parse("timestamp,value,item_id\n2020-01-03,1,us\n2020-01-10,2, us \n")) == 2
    error = refused("timestamp,value,item_id\n2020-01-03,1,us\n2020-01-10,2,uk\n", "item_id", None)
    assert "found 2" in str(error)


@pytest.mark.parametrize("raw, rule, line", [
    (b"", "empty", None), (b" \n\n \n", "empty", None), (b"timestamp,value\n", "empty", None),
    (b"timestamp,value\n\n\n", "empty", None),
    (b"\xff\xfet\x00", "encoding", 1), (b"\xfe\xff\x00t", "encoding", 1),
    (b"timestamp,value\n2020-01-03,1\xff\n", "encoding", None),
])
def test_empty_files_and_foreign_encodings_are_refused(raw, rule, line):
    refused(raw, rule, line)


def test_a_utf8_byte_order_mark_is_dropped():
    """Excel's "CSV UTF-8" starts the file with one; the header is read as if it were not there."""
    text = "timestamp,value,item_id\n2020-01-03,1,Zürich\n2020-01-10,2,Zürich\n"
    with_mark = parse(b"\xef\xbb\xbf" + text.encode())
    assert with_mark.timestamps == parse(text.encode()).timestamps
    np.testing.assert_array_equal(with_mark.values, [1, 2])


def test_utf8_beyond_ascii_passes():
    assert len(parse("timestamp,value,item_id\n2020-01-03,1,Zürich\n".encode())) == 1
