"""The panel input contract (engine/panel_data.py): layouts, every rule at its boundary, fills, files."""

import os
import subprocess
import sys
from datetime import date

import numpy as np
import pytest

from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.dataset import DataValidationError, parse_series
from pipeline_code.engine.panel_data import (
    Panel, load_panel, parse_panel, read_panel_csv, shard_of, write_panel_csv,
)
from pipeline_code.engine.settings import MAX_ITEM_ID_LENGTH, Settings

MONTHS = parse_freq("MS")
START = date(2020, 1, 1)


def settings(freq: str = "MS", validate: bool = True, **sections) -> Settings:
    sections.setdefault("data", {})
    sections["data"] = {"freq": freq, **sections["data"]}
    return Settings().merged(sections, "test", validate=validate)


def month(k: int) -> str:
    return MONTHS.shift(START, k).isoformat()


def rows(item: str, values, start: int = 0) -> list[str]:
    return [f"{item},{month(start + k)},{v}" for k, v in enumerate(values)]


def csv_bytes(*parts: list[str], header: str | None = "item_id,timestamp,value") -> bytes:
    lines = ([header] if header is not None else []) + [line for part in parts for line in part]
    return ("\n".join(lines) + "\n").encode()


def parse(raw: bytes, **kw) -> Panel:
    return parse_panel(raw, settings=settings(**kw))


def refused(raw: bytes, rule: str, line: int | None, item: str | None, **kw) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        parse(raw, **kw)
    error = info.value
    assert (error.rule, error.line, error.item) == (rule, line, item), str(error)
    return error


# --- layouts --------------------------------------------------------------------------------------

def test_a_long_file_with_interleaved_rows_gives_one_sorted_series_per_item():
    a, b = rows("A", [1, 2, 3, 4]), rows("B", [5, 6, 7], start=1)
    raw = csv_bytes([a[2], b[2], a[0], b[0], a[3], a[1], b[1]])
    panel = parse(raw)
    assert (panel.items, panel.single, panel.freq, panel.end) == (["A", "B"], False, "MS", date(2020, 4, 1))
    assert panel.series["A"].values.tolist() == [1, 2, 3, 4]
    assert panel.series["B"].timestamps == [date(2020, 2, 1), date(2020, 3, 1), date(2020, 4, 1)]
    assert panel.fills == {} and panel.lines == {"A": 2, "B": 3}


def test_amazon_forecast_header_in_any_order_maps_target_value_to_value():
    raw = csv_bytes([f"{month(k)},{10 + k},X" for k in range(3)], header="timestamp,target_value,item_id")
    assert parse(raw).series["X"].values.tolist() == [10, 11, 12]


def test_a_headerless_file_follows_series_columns():
    body = [f"X,{month(k)} 00:00:00,{10 + k}" for k in range(3)]
    assert parse(csv_bytes(body, header=None)).series["X"].values.tolist() == [10, 11, 12]
    swapped = [f"{month(k)},X,{10 + k}" for k in range(3)]
    panel = parse(csv_bytes(swapped, header=None), series={"columns": ["timestamp", "item_id", "target_value"]})
    assert panel.series["X"].timestamps[0] == START


def test_a_utf8_byte_order_mark_before_a_header_or_a_first_row_is_dropped():
    body = rows("X", [10, 11, 12])
    for header in ("item_id,timestamp,value", None):
        assert parse(b"\xef\xbb\xbf" + csv_bytes(body, header=header)).series["X"].values.tolist() == [10, 11, 12]


def test_a_first_line_that_is_neither_a_header_nor_a_row_is_a_header_error():
    error = refused(csv_bytes(rows("X", [1, 2]), header="item_id,date,value"), "header", 1, None)
    assert "series.columns" in str(error) and "'date'" in str(error)
    refused(csv_bytes(rows("X", [1, 2]), header="timestamp;value"), "header", 1, None)
    refused(csv_bytes(rows("X", [1, 2]), header=f"X,{month(0)},0"), "value", 1, "X")  # a row, refused as a row
    refused(csv_bytes(rows("X", [1]), header="item_id,timestamp,value,location"), "header", 1, None)
    refused(csv_bytes(rows("X", [1]), header="item_id,timestamp,value,target_value"), "header", 1, None)


def test_without_item_id_the_file_is_todays_single_series():
    raw = b"timestamp,value\n2020-01-01,1\n2020-03-01,3\n2020-04-01,4\n"
    panel = parse(raw, data={"max_gap_periods": 1})
    today = parse_series(raw, freq="MS", max_gap_periods=1)
    assert panel.single and panel.items == [""] and panel.end == date(2020, 4, 1)
    assert panel.series[""].timestamps == today.timestamps
    np.testing.assert_array_equal(panel.series[""].values, today.values)
    with pytest.raises(DataValidationError) as info:  # a missing cell is refused there, as today
        parse(b"timestamp,value\n2020-01-01,NA\n")
    assert info.value.rule == "value"


def test_midnight_times_are_read_and_other_times_refused():
    raw = csv_bytes(["X,2020-01-01 00:00:00,1", "X,2020-02-01T00:00:00,2", "X,2020-03-01 12:00:00,3"])
    error = refused(raw, "timestamp", 4, "X")
    assert "time of day" in str(error)


def test_the_error_names_line_and_item():
    error = refused(csv_bytes(rows("A", [1, 0])), "value", 3, "A")
    assert str(error).startswith("[value] (line 3, item 'A')") and "log scale" in str(error)
    refused(csv_bytes(rows("A", [1, "x"])), "value", 3, "A")
    refused(csv_bytes(["A,2020-01-01,1", "A,2020-02-01"]), "columns", 3, None)
    refused(csv_bytes(["A,2020-13-01,1"]), "timestamp", 2, "A")


def test_malformed_csv_names_the_rule_and_line():
    refused(csv_bytes(rows("A", [1, 2]) + ['"B,2020-01-01,1']), "csv", 4, None)
    # a quote never closed is named where it opens, not at the end of the file
    refused(csv_bytes(rows("A", [1, 2]) + ['"B,2020-01-01,1'] + rows("C", [1, 2, 3])), "csv", 4, None)
    refused(csv_bytes(rows("A", [1, 2])).replace(b"\n", b"\r"), "line-endings", 1, None)


def test_empty_files_are_refused():
    refused(b"", "empty", None, None)
    refused(b"item_id,timestamp,value\n", "empty", None, None)


# --- item ids -------------------------------------------------------------------------------------

def test_item_id_of_max_length_passes_and_one_longer_is_refused():
    longest = "x" * MAX_ITEM_ID_LENGTH
    assert parse(csv_bytes(rows(longest, [1, 2]))).items == [longest]
    too_long = "y" * (MAX_ITEM_ID_LENGTH + 1)
    error = refused(csv_bytes(rows(too_long, [1, 2])), "item_id", 2, too_long)
    assert f"at most {MAX_ITEM_ID_LENGTH}" in str(error) and "..." in str(error)  # the id is quoted short


@pytest.mark.parametrize("cell", ["", "   ", '""'])
def test_an_empty_item_id_is_refused(cell):
    refused(csv_bytes(rows("A", [1, 2]) + [f"{cell},{month(0)},1"]), "item_id", 4, None)


@pytest.mark.parametrize("name", ["a\x07b", '"a\tb"', "a\x7fb", '"a\nb"',
                                  "A\u200b", "\ufeffA", "\u202eevil", "x\u2028y", "a\u2066b"])
def test_an_item_id_with_control_or_invisible_characters_is_refused(name):
    """Invisible characters make two ids look alike ("A" and "A" + zero-width space) or reorder what is shown."""
    with pytest.raises(DataValidationError) as info:
        parse(csv_bytes(rows(name, [1, 2])))
    assert info.value.rule == "item_id" and "control" in str(info.value)


def test_surrounding_spaces_of_an_item_id_are_dropped():
    assert parse(csv_bytes([f" A ,{month(0)},1", f"A,{month(1)},2"])).series["A"].values.tolist() == [1, 2]


# --- limits ---------------------------------------------------------------------------------------

def test_max_series_items_pass_and_one_more_is_refused():
    body = [rows(f"s{i}", [1, 2]) for i in range(3)]
    assert len(parse(csv_bytes(*body), series={"max_series": 3}).items) == 3
    error = refused(csv_bytes(*body), "max-series", 6, "s2", series={"max_series": 2})
    assert "series.max_series = 2" in str(error)


def test_file_of_max_file_bytes_is_read_and_one_byte_more_is_refused(tmp_path):
    raw = csv_bytes(*[rows(f"item-{i}", [1, 2, 3]) for i in range(30)])
    path = tmp_path / "panel.csv"
    path.write_bytes(raw)
    assert len(load_panel(path, settings=settings(data={"max_file_bytes": len(raw)})).items) == 30
    with pytest.raises(DataValidationError) as info:
        load_panel(tmp_path, settings=settings())
    assert info.value.rule == "file"
    for load in (lambda s: load_panel(path, settings=s), lambda s: parse_panel(raw, settings=s)):
        with pytest.raises(DataValidationError, match=f"file is {len(raw)} bytes; the limit is {len(raw) - 1}"):
            load(settings(data={"max_file_bytes": len(raw) - 1}))


def test_max_rows_keeps_each_series_latest_periods():
    panel = parse(csv_bytes(rows("A", range(1, 11)), rows("B", [1, 2, 3], start=7)), data={"max_rows": 4},
                  validate=False)  # a max_rows below the models' minimum, to see it cut
    assert panel.series["A"].values.tolist() == [7, 8, 9, 10] and len(panel.series["B"]) == 3
    assert panel.series["A"].timestamps[0] == date(2020, 7, 1)


# --- duplicates and frequency ---------------------------------------------------------------------

def test_duplicate_item_and_timestamp_names_the_later_line():
    raw = csv_bytes(rows("A", [1, 2, 3]) + rows("B", [1, 2, 3]) + [f"A,{month(1)} 00:00:00,9"])
    error = refused(raw, "duplicate", 8, "A")
    assert "2020-02-01 appears twice (also on line 3)" in str(error)
    assert parse(csv_bytes(rows("A", [1, 2, 3]) + rows("B", [1, 2, 3]))).items == ["A", "B"]


@pytest.mark.parametrize("freq, other, own", [
    ("W-FRI", [date(2020, 1, 6), date(2020, 1, 13), date(2020, 1, 20)], "W-MON"),
    ("W-FRI", [date(2020, 1, 3), date(2020, 1, 4), date(2020, 1, 5)], "D"),
    ("MS", [date(2020, 1, 1), date(2020, 4, 1), date(2020, 7, 1), date(2020, 10, 1)], "QS"),
])
def test_an_item_of_another_frequency_is_named(freq, other, own):
    calendar = parse_freq(freq)
    good = [f"A,{calendar.shift(other[0] if freq == 'MS' else date(2020, 1, 3), k)},1{k}" for k in range(4)]
    raw = csv_bytes(good + [f"B,{d.isoformat()},{5 + k}" for k, d in enumerate(other)])
    error = refused(raw, "frequency", _first_line_of_b(good, other, freq), "B", freq=freq)
    assert own in str(error) and f"(data.freq) is {freq}" in str(error)


def _first_line_of_b(good, other, freq) -> int:
    """The line named: the first off-calendar row, or the item's first row when its spacing is off."""
    calendar = parse_freq(freq)
    offs = [k for k, d in enumerate(other) if not calendar.on_calendar(d)]
    return len(good) + 2 + (offs[0] if offs else 0)


def test_one_timestamp_off_the_calendar_is_a_calendar_error():
    raw = csv_bytes(rows("A", [1, 2, 3]) + ["A,2020-04-02,4", *rows("A", [5], start=4)])
    error = refused(raw, "calendar", 5, "A")
    assert str(error) == ("[calendar] (line 5, item 'A') 2020-04-02 is not a MS timestamp (expected 2020-04-01,"
                          " one period after 2020-03-01)")


# --- missing values and fills ---------------------------------------------------------------------

def with_gap(missing: int, item: str = "A") -> list[str]:
    return rows(item, [10, 20, 40]) + rows(item, [80, 160], start=3 + missing)


@pytest.mark.parametrize("max_gap", [0, 2])
def test_a_gap_of_max_gap_periods_is_interpolated_and_one_more_is_refused(max_gap):
    data = {"max_gap_periods": max_gap}
    panel = parse(csv_bytes(with_gap(max_gap)), data=data)
    assert len(panel.series["A"]) == 5 + max_gap
    assert panel.fills == ({"A": {"middle": max_gap, "end": 0}} if max_gap else {})
    error = refused(csv_bytes(with_gap(max_gap + 1)), "gap", 5, "A", data=data)
    assert f"{max_gap + 1} missing period(s) between 2020-03-01 and" in str(error)
    assert "series.fill_middle" in str(error)


def test_missing_cells_inside_count_as_missing_periods():
    raw = csv_bytes(rows("A", [10, "NA", "", "nan", 50]))
    refused(raw, "gap", 6, "A")
    panel = parse(raw, series={"fill_middle": "value", "fill_value": 7})
    assert panel.series["A"].values.tolist() == [10, 7, 7, 7, 50]
    assert panel.fills == {"A": {"middle": 3, "end": 0}}


@pytest.mark.parametrize("method, expected", [
    ("value", [10, 20, 40, 3, 3, 80, 160]),
    ("median", [10, 20, 40, 40, 40, 80, 160]),
    ("mean", [10, 20, 40, 62, 62, 80, 160]),
    ("interpolate", [10, 20, 40, 40 * 2 ** (1 / 3), 40 * 2 ** (2 / 3), 80, 160]),
])
def test_fill_middle_methods(method, expected):
    panel = parse(csv_bytes(with_gap(2)), series={"fill_middle": method, "fill_value": 3})
    np.testing.assert_allclose(panel.series["A"].values, expected)
    assert panel.fills == {"A": {"middle": 2, "end": 0}}


def test_a_fill_value_holds_to_the_datas_range():
    """A fill value is data: outside [MIN_ABS_VALUE, MAX_ABS_VALUE] it could blow up every score."""
    from pipeline_code.engine.settings import MAX_ABS_VALUE, MIN_ABS_VALUE, SettingsError

    for value in (MIN_ABS_VALUE, MAX_ABS_VALUE):
        settings(series={"fill_middle": "value", "fill_value": value})
    for value in (np.nextafter(MIN_ABS_VALUE, 0), np.nextafter(MAX_ABS_VALUE, np.inf), 0.0, -1.0):
        with pytest.raises(SettingsError, match=r"series\.fill_value: a number in \[1e-100, 1e\+100\]"):
            settings(series={"fill_end": "value", "fill_value": float(value)})


def test_tolerated_runs_are_interpolated_whatever_the_fill_method():
    raw = csv_bytes(rows("A", [10, 20, "NA", 80, "NA", "NA", 80]))
    panel = parse(raw, data={"max_gap_periods": 1}, series={"fill_middle": "value", "fill_value": 1})
    np.testing.assert_allclose(panel.series["A"].values, [10, 20, 40, 80, 1, 1, 80])


def test_leading_missing_values_start_the_series_later():
    panel = parse(csv_bytes(rows("A", ["NA", "", 3, 4]), rows("B", [1, 2, 3, 4])))
    assert panel.series["A"].timestamps[0] == date(2020, 3, 1) and panel.fills == {}


def test_an_item_without_values_is_refused():
    refused(csv_bytes(rows("A", [1, 2]), rows("B", ["NA", ""])), "missing", 4, "B")


def test_a_series_ending_early_is_refused_unless_fill_end_is_set():
    raw = csv_bytes(rows("A", [1, 2, 3, 4, 5]), rows("B", [2, 4, 6, "NA"]))
    error = refused(raw, "missing", 10, "B")
    assert "2 period(s) before the panel's last timestamp 2020-05-01" in str(error) and "series.fill_end" in str(error)
    expected = {"value": [2, 4, 6, 9, 9], "median": [2, 4, 6, 4, 4], "mean": [2, 4, 6, 4, 4],
                "interpolate": [2, 4, 6, 6, 6]}
    for method, values in expected.items():
        panel = parse(raw, series={"fill_end": method, "fill_value": 9})
        assert panel.series["B"].values.tolist() == values and panel.end == date(2020, 5, 1)
        assert panel.fills == {"B": {"middle": 0, "end": 2}}
        assert panel.series["B"].timestamps == panel.series["A"].timestamps


def test_a_constant_series_is_kept_and_reported_for_the_fallback():
    panel = parse(csv_bytes(rows("A", [1, 2, 3]), rows("B", [5, 5, 5])))
    assert panel.constant == ["B"]
    (note,) = panel.report()["constant"]
    assert (note["rule"], note["line"], note["item"]) == ("constant", 5, "B")
    assert "(line 5, item 'B')" in note["message"] and "series.fallback" in note["message"]
    assert parse(csv_bytes(rows("A", [5, 5, 5.000001]))).constant == []


# --- files ----------------------------------------------------------------------------------------

def test_a_panel_and_its_extra_columns_are_written_and_read_back(tmp_path):
    panel = parse(csv_bytes(rows("A", [1.5, 2.25, 3]), rows('"B,x"', [4, 5], start=1)))
    extra = {item: {"outlier": np.arange(len(s)) % 2, "counterfactual": s.values * 2}
             for item, s in panel.series.items()}
    write_panel_csv(tmp_path / "p.csv", panel, extra)
    back, columns = read_panel_csv(tmp_path / "p.csv", "MS")
    assert back.items == ["A", "B,x"] and not back.single
    for item in panel.items:
        assert back.series[item].timestamps == panel.series[item].timestamps
        np.testing.assert_array_equal(back.series[item].values, panel.series[item].values)
        assert list(columns[item]) == ["outlier", "counterfactual"]
        np.testing.assert_array_equal(columns[item]["counterfactual"], extra[item]["counterfactual"])
    with pytest.raises(ValueError, match="extra columns"):
        write_panel_csv(tmp_path / "bad.csv", panel, {"A": extra["A"], "B,x": {}})


def test_a_single_series_is_written_as_todays_file(tmp_path):
    panel = parse(b"timestamp,value\n2020-01-01,1\n2020-02-01,2\n")
    write_panel_csv(tmp_path / "s.csv", panel, {"": {"flag": np.array([0, 1])}})
    assert (tmp_path / "s.csv").read_text().splitlines() == ["timestamp,value,flag", "2020-01-01,1,0", "2020-02-01,2,1"]
    back, columns = read_panel_csv(tmp_path / "s.csv", "MS")
    assert back.single and back.series[""].values.tolist() == [1, 2] and columns[""]["flag"].tolist() == [0, 1]


def test_shard_of_is_stable_across_processes_and_spreads_items():
    items = [f"item-{i}" for i in range(2000)]
    shards = [shard_of(item, 4) for item in items]
    code = ("import sys; from pipeline_code.engine.panel_data import shard_of;"
            "print(','.join(str(shard_of(f'item-{i}', 4)) for i in range(2000)))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip() == ",".join(map(str, shards))
    assert all(400 < shards.count(k) < 600 for k in range(4))
    assert {shard_of(item, 1) for item in items} == {0}
    with pytest.raises(ValueError):
        shard_of("a", 0)


@pytest.mark.parametrize("cell", ["1_100", "\uff11100"])
def test_numbers_float_reads_but_a_csv_does_not_mean_are_refused(cell):
    """The fast path (float) passes them to the value rule, which names the line and the item."""
    refused(csv_bytes(rows("A", [1, 2]) + [f"A,{month(2)},{cell}"]), "value", 4, "A")


def test_a_duplicate_from_two_spellings_of_one_item_says_so():
    error = refused(csv_bytes(rows("a", [1, 2]) + rows(" a", [3])), "duplicate", 4, "a")
    assert "the file spells the item [' a', 'a'], one item once surrounding spaces are dropped" in str(error)
    plain = refused(csv_bytes(rows("a", [1, 2]) + rows("a", [3])), "duplicate", 4, "a")
    assert "spells" not in str(plain)


def test_header_names_match_in_any_case():
    raw = csv_bytes(rows("X", [10, 11, 12]), header="Item_ID,TimeStamp,Target_Value")
    panel = parse(raw)
    assert not panel.single and panel.series["X"].values.tolist() == [10, 11, 12]
    assert parse(csv_bytes(["2020-01-01,1", "2020-02-01,2"], header="TIMESTAMP,Value")).single


def test_quarters_on_the_last_month_are_a_panel_of_their_own_calendar():
    """fpp2 prisonLF's layout: quarters dated on the first day of their last month (QS-DEC); under QS
    (January quarters) the item is named with the frequency it follows."""
    quarters = [date(2005, 3, 1), date(2005, 6, 1), date(2005, 9, 1), date(2005, 12, 1), date(2006, 3, 1)]
    body = [f"{item},{d.isoformat()},{k + 2}" for item in ("A", "B") for k, d in enumerate(quarters)]
    panel = parse(csv_bytes(body), freq="QS-DEC")
    assert panel.items == ["A", "B"] and panel.series["B"].timestamps == quarters
    error = refused(csv_bytes(body), "frequency", 2, "A", freq="QS")
    assert "follow QS-DEC" in str(error)


def test_a_refused_gap_or_end_names_the_settings_that_fill_it_and_where_they_go():
    error = refused(csv_bytes(with_gap(2)), "gap", 5, "A")
    message = str(error)
    assert "data.max_gap_periods is 0: set it to at least 2" in message
    assert "series.fill_middle" in message and "interpolate, value, median, mean" in message
    assert ".settings.json beside the upload" in message
    error = refused(csv_bytes(rows("A", [1, 2, 3]), rows("B", [2, 4])), "missing", 6, "B")
    assert "series.fill_end (interpolate, value, median, mean)" in str(error)
    assert ".settings.json beside the upload" in str(error)


def test_one_zero_refuses_the_panel_saying_what_to_do():
    error = refused(csv_bytes(rows("A", [1, 2, 3]), rows("B", [2, 0, 4])), "value", 6, "B")
    assert "zero and negative values are not supported" in str(error)
    assert "leave the series out" in str(error) and "empty cell" in str(error)
