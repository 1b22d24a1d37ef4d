from datetime import date

import pytest

from pipeline_code.engine.core.calendar import parse_freq


def test_weekly_future_starts_one_period_after_last():
    cal = parse_freq("W-FRI")
    assert cal.future(date(2017, 1, 20), 3) == [date(2017, 1, 27), date(2017, 2, 3), date(2017, 2, 10)]
    assert cal.on_calendar(date(2017, 1, 20)) and not cal.on_calendar(date(2017, 1, 19))


@pytest.mark.parametrize(
    ("freq", "last", "expected"),
    [
        ("MS", date(2020, 11, 1), [date(2020, 12, 1), date(2021, 1, 1)]),
        ("ME", date(2020, 1, 31), [date(2020, 2, 29), date(2020, 3, 31)]),
        ("QE", date(2020, 3, 31), [date(2020, 6, 30), date(2020, 9, 30)]),
        ("YS", date(2020, 1, 1), [date(2021, 1, 1), date(2022, 1, 1)]),
        ("D", date(2020, 2, 28), [date(2020, 2, 29), date(2020, 3, 1)]),
    ],
)
def test_month_and_day_calendars(freq, last, expected):
    cal = parse_freq(freq)
    assert cal.future(last, 2) == expected
    assert cal.steps_between(last, expected[1]) == 2


def test_unknown_frequency_names_the_supported_ones():
    with pytest.raises(ValueError, match="W-MON"):
        parse_freq("fortnightly")


def test_quarters_on_the_last_month_are_inferred_as_pandas_names_them():
    """fpp2 prisonLF's dates (the first day of each quarter's last month): QS-DEC, as pandas infers,
    the same calendar as QS-MAR; plain QS (January quarters) refuses them."""
    from pipeline_code.engine.core.calendar import infer_freq

    days = [date(2005, m, 1) for m in (3, 6, 9, 12)] + [date(2006, 3, 1)]
    assert infer_freq(days) == "QS-DEC"
    for alias in ("QS-DEC", "QS-MAR", "QS-JUN", "qs-sep"):
        cal = parse_freq(alias)
        assert all(cal.on_calendar(day) for day in days) and not cal.on_calendar(date(2005, 4, 1))
        assert cal.future(date(2006, 3, 1), 2) == [date(2006, 6, 1), date(2006, 9, 1)]
    assert not parse_freq("QS").on_calendar(date(2005, 3, 1))


@pytest.mark.parametrize("base", ["QS", "QE", "YS", "YE"])
@pytest.mark.parametrize("month", range(1, 13))
def test_anchored_quarters_and_years_agree_with_pandas(base, month):
    """Every month-of-quarter (or fiscal-year) anchor: inferred under pandas' own name (the plain alias
    for the default anchor), on pandas' calendar, with pandas' future dates."""
    import pandas as pd

    from pipeline_code.engine.core.calendar import infer_freq

    start = pd.Timestamp(2001, month, 1)
    if base.endswith("E"):
        start += pd.offsets.MonthEnd(0)
    pandas_alias = f"{base}-{start.strftime('%b').upper()}"  # a period starting (ending) in `month`
    index = pd.date_range(start, periods=9, freq=pandas_alias)
    days = [stamp.date() for stamp in index]
    inferred = infer_freq(days)
    plain = {"QS": "QS-OCT", "QE": "QE-DEC", "YS": "YS-JAN", "YE": "YE-DEC"}[base]
    assert pd.infer_freq(index) == (plain if inferred == base else inferred)
    next_month = (index[0] + (pd.offsets.MonthBegin(1) if base.endswith("S") else pd.offsets.MonthEnd(1))).date()
    for alias in (inferred, pandas_alias):
        cal = parse_freq(alias)
        assert all(cal.on_calendar(day) for day in days) and not cal.on_calendar(next_month)
        future = pd.date_range(index[-1], periods=4, freq=pandas_alias)[1:]
        assert cal.future(days[-1], 3) == [stamp.date() for stamp in future]
        assert cal.steps_between(days[0], days[-1]) == 8


@pytest.mark.parametrize("alias", ["QS-", "QS-FOO", "MS-JAN", "W-", "D-MON", "W-JAN"])
def test_a_malformed_anchor_is_refused_naming_the_anchored_forms(alias):
    with pytest.raises(ValueError, match="QS-DEC"):
        parse_freq(alias)


def test_a_date_moved_off_the_calendar_most_dates_follow_is_named_with_its_line_and_the_date_expected():
    """A holiday moves one week's date by a day: inference names that date, not just "cannot infer"."""
    from datetime import timedelta

    from pipeline_code.engine.core.calendar import infer_freq

    days = [date(2005, 1, 7) + timedelta(weeks=k) for k in range(20)]
    days[5] -= timedelta(days=1)
    lines = list(range(2, 22))
    with pytest.raises(ValueError) as info:
        infer_freq(days, lines)
    assert str(info.value) == (
        "cannot infer the frequency: the timestamps follow W-FRI, but 2005-02-10 (line 7) is not a W-FRI"
        " timestamp (expected 2005-02-11, one period after 2005-02-04); correct that date, or set data.freq")
    with pytest.raises(ValueError, match=r"but 2005-02-10 is not a W-FRI timestamp \(expected 2005-02-11"):
        infer_freq(days)  # no lines known: the date alone
    months = [date(2010 + k // 12, k % 12 + 1, 1) for k in range(24)]
    months[0] = date(2009, 12, 31)  # the first date moved: the calendar most follow is still found
    with pytest.raises(ValueError, match=r"follow MS, but 2009-12-31 \(line 2\) is not a MS timestamp;"):
        infer_freq(months, lines=range(2, 26))
    days[5] += timedelta(days=1)
    assert infer_freq(days) == "W-FRI"


def test_business_days_point_to_the_daily_calendar_with_gaps_filled():
    with pytest.raises(ValueError) as info:
        parse_freq("B")
    message = str(info.value)
    assert message.startswith("unsupported frequency 'B': business days are daily data whose weekends are gaps:"
                              " use D and set data.max_gap_periods")
    assert 'README, "Input contract"' in message and "supported: D, W-MON..W-SUN" in message
