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
