"""engine/profile.py: the first look at an upload, one series or a panel, for settings inference."""

from datetime import date, timedelta

import pytest

from pipeline_code.engine.core.calendar import infer_freq, parse_freq
from pipeline_code.engine.profile import CANDIDATES, SAMPLE_ROWS, profile_csv
from pipeline_code.engine.settings import resolve

MONTHS = parse_freq("MS")


def month(k: int) -> str:
    return MONTHS.shift(date(2015, 1, 1), k).isoformat()


def test_one_series_keeps_todays_profile():
    stamps = [date(2020, 1, 3) + timedelta(weeks=k) for k in range(SAMPLE_ROWS + 50)]
    raw = ("timestamp,value\n" + "".join(f"{s.isoformat()},{k + 1}\n\n" for k, s in enumerate(stamps))).encode()
    profile = profile_csv(raw)
    assert (profile.observations, profile.items, profile.panel) == (SAMPLE_ROWS + 50, 1, False)
    assert profile.timestamps == stamps[:SAMPLE_ROWS]
    assert profile_csv(b"").observations == 0 and profile_csv(b"date,value\n2020-01-01,1\n").timestamps == []


def test_a_panel_sorted_by_date_gives_the_longest_series_and_an_items_frequency():
    """Rows grouped by date (every item per month): the first 400 rows hold one month only."""
    lengths = {f"item{i}": 60 if i % 2 else 36 for i in range(500)}
    lines = ["item_id,timestamp,value"] + [
        f"{item},{month(k)},{k + 1}" for k in range(60) for item, n in lengths.items() if k >= 60 - n]
    profile = profile_csv(("\n".join(lines) + "\n").encode())
    assert (profile.observations, profile.items, profile.panel) == (60, 500, True)
    assert infer_freq(profile.timestamps) == "MS" and len(profile.timestamps) == 60
    assert profile_csv(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode()) == profile  # a BOM is dropped
    settings = resolve([], timestamps=profile.timestamps, observations=profile.observations).settings
    assert (settings.data.freq, settings.data.season_length) == ("MS", 12.0)


def test_a_headerless_amazon_forecast_file_is_a_panel_in_the_columns_order():
    rows = [f"A,{month(k)} 00:00:00,{k + 1}" for k in range(30)] + [f"B,{month(k)},{k}" for k in range(1, 10)]
    profile = profile_csv(("\n".join(rows) + "\n").encode())
    assert (profile.observations, profile.items, profile.panel) == (30, 2, True)
    assert infer_freq(profile.timestamps) == "MS"
    swapped = "".join(f"{month(k)},{k + 1},A\n" for k in range(5)).encode()
    profile = profile_csv(swapped, columns=("timestamp", "target_value", "item_id"))
    assert (profile.observations, profile.items, len(profile.timestamps)) == (5, 1, 5)


def test_the_sample_is_the_longest_of_the_first_items():
    short = [f"S{i},{month(k)},1" for i in range(CANDIDATES - 1) for k in range(2)]
    longer = [f"L,{month(k)},1" for k in range(20)]
    later = [f"M,{month(k)},1" for k in range(50)]  # the ninth item: counted, not sampled
    profile = profile_csv(("\n".join(["item_id,timestamp,value", *short, *longer, *later]) + "\n").encode())
    assert (profile.items, profile.observations, len(profile.timestamps)) == (CANDIDATES + 1, 50, 20)


def test_the_sample_follows_the_frequency_most_items_share():
    """A longer item of another frequency is the odd one out: the sample (and so data.freq) follows
    the others, and the input contract then names that item."""
    monthly = [f"{item},{month(k)},1" for item in "ABC" for k in range(60)]
    daily = [f"DY,{(date(2007, 1, 1) + timedelta(days=k)).isoformat()},1" for k in range(300)]
    profile = profile_csv(("\n".join(["item_id,timestamp,value", *monthly, *daily]) + "\n").encode())
    assert infer_freq(profile.timestamps) == "MS" and len(profile.timestamps) == 60
    assert profile.observations == 300  # the longest series, whatever its frequency


def test_blank_rows_are_not_observations():
    """Spreadsheets export empty rows as ",": the input contract skips them, and so does the count."""
    rows = [f"{month(k)},{k + 1}" for k in range(100)]
    raw = ("\n".join(["timestamp,value", *rows, *[","] * 30, ' , ', '"",""']) + "\n").encode()
    assert profile_csv(raw).observations == 100


def test_malformed_rows_stop_the_scan_without_failing():
    raw = b'item_id,timestamp,value\nA,2020-01-01,1\nA,2020-02-01,2\n"B,2020-03-01,3\n'
    profile = profile_csv(raw)
    assert profile.panel and profile.items >= 1 and profile.timestamps[:2] == [date(2020, 1, 1), date(2020, 2, 1)]


def test_half_hourly_data_is_refused_as_outside_the_calendar_not_as_an_unknown_frequency():
    rows = [f"2014-01-01T{h // 2:02d}:{30 * (h % 2):02d}:00,{h + 1}" for h in range(48)]
    profile = profile_csv(("\n".join(["timestamp,value", *rows]) + "\n").encode())
    with pytest.raises(ValueError, match=r"hourly and minute data are outside this platform's calendar, which is "
                                         r"daily to yearly"):
        infer_freq(profile.timestamps)


def test_the_first_look_infers_quarters_on_their_last_month_under_any_header_case():
    """fpp2 prisonLF's layout, as the local runner and the starter Lambda see it: QS-DEC, season 4."""
    quarters = [date(2005 + k // 4, 3 * (k % 4) + 3, 1) for k in range(48)]
    raw = ("Item_ID,Timestamp,Value\n" + "".join(
        f"{item},{d.isoformat()},{k + 2}\n" for item in ("ACT", "NSW") for k, d in enumerate(quarters))).encode()
    profile = profile_csv(raw)
    assert (profile.observations, profile.items, profile.panel) == (48, 2, True)
    settings = resolve([], timestamps=profile.timestamps, observations=profile.observations).settings
    assert (settings.data.freq, settings.data.season_length, settings.data.horizon) == ("QS-DEC", 4.0, 4)


def upload(header: str, rows) -> bytes:
    return (header + "\n" + "".join(f"{row}\n" for row in rows)).encode()


def test_rows_newest_first_are_refused_by_the_order_rule_before_the_frequency_is_inferred():
    """One series must be sorted: the first look names the first row out of order, as the input contract
    does, instead of inferring a frequency from file order (a typical step of -31 days)."""
    newest_first = [f"{month(k)},{k + 1}" for k in reversed(range(60))]
    assert profile_csv(upload("timestamp,value", newest_first)).problem == (
        f"[order] (line 3) {month(58)} comes after {month(59)}; sort rows by timestamp")
    swapped = [f"{month(k)},{k + 1}" for k in range(60)]
    swapped[10], swapped[11] = swapped[11], swapped[10]
    assert profile_csv(upload("timestamp,value\n", swapped)).problem == (  # a blank line 2 counts
        f"[order] (line 14) {month(10)} comes after {month(11)}; sort rows by timestamp")
    ordered = profile_csv(upload("timestamp,value", sorted(swapped)))
    assert ordered.problem is None and ordered.lines == list(range(2, 62))
    settings = resolve([], timestamps=ordered.timestamps, observations=60, lines=ordered.lines).settings
    assert settings.data.freq == "MS"


def test_a_panel_newest_first_is_sorted_per_item_and_its_frequency_inferred():
    """A panel's rows need not be sorted: no order rule, the sample is each item's sorted dates."""
    profile = profile_csv(upload("item_id,timestamp,value",
                                 [f"{item},{month(k)},{k + 1}" for k in reversed(range(40)) for item in "AB"]))
    assert profile.problem is None and infer_freq(profile.timestamps) == "MS"
    assert profile.lines == list(range(80, 1, -2))  # item A's line of each date, the oldest date first


@pytest.mark.parametrize("header, row", [("timestamp,value", "{d},1"), ("item_id,timestamp,value", "us,{d},1")])
def test_a_date_off_the_calendar_is_named_with_its_line_whether_the_frequency_is_inferred_or_given(header, row):
    """A holiday moved one week's date by a day: one series or a panel, the date, its line, the date expected."""
    from pipeline_code.engine.settings import SettingsError

    days = [date(2005, 1, 7) + timedelta(weeks=k) for k in range(300)]
    days[150] -= timedelta(days=1)
    profile = profile_csv(upload(header, [row.format(d=d) for d in days]))
    named = "2007-11-22 (line 152) is not a W-FRI timestamp (expected 2007-11-23, one period after 2007-11-16)"
    for layers, said in (([], f"the timestamps follow W-FRI, but {named}; correct that date, or set data.freq"),
                         ([("flags", {"data": {"freq": "W-FRI"}})], f"the data does not follow W-FRI: {named}")):
        with pytest.raises(SettingsError) as info:
            resolve(layers, timestamps=profile.timestamps, observations=300, lines=profile.lines)
        assert said in str(info.value)
