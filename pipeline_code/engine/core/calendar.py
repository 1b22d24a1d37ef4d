"""Regular calendars without pandas: the frequencies a series may have and their future dates.

Supported frequencies (pandas-style aliases): ``D`` (daily), ``W-MON`` .. ``W-SUN`` (weekly, ending on
that weekday), ``MS``/``ME`` (month start/end), ``QS``/``QE`` (quarter start/end), ``YS``/``YE``
(year start/end). Used by validation (is the series regular?) and by serving (future timestamps),
so serving stays free of pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

# Python 3.11's date.fromisoformat also takes "19960701" and week dates ("1996-W27-1"), which the input
# contract (yyyy-MM-dd) does not.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def iso_date(text: str) -> date:
    """The date written ``yyyy-MM-dd`` (ValueError for any other form)."""
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"{text!r} is not a yyyy-MM-dd date")
    return date.fromisoformat(text)


_WEEKDAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
_ALIASES = {"W": "W-SUN", "M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "AS": "YS", "YS": "YS"}


@dataclass(frozen=True)
class Calendar:
    """A regular frequency: days per step for day-based ones, months per step for month-based ones."""

    freq: str
    days: int = 0
    months: int = 0
    anchor_end: bool = False
    weekday: int | None = None

    def on_calendar(self, day: date) -> bool:
        """Whether ``day`` is a valid timestamp of this frequency."""
        if self.weekday is not None:
            return day.weekday() == self.weekday
        if self.months:
            month_ok = (day.month - 1) % self.months == (self.months - 1 if self.anchor_end else 0)
            if self.anchor_end:
                return month_ok and (day + timedelta(days=1)).day == 1
            return month_ok and day.day == 1
        return True

    def shift(self, day: date, steps: int) -> date:
        """The timestamp ``steps`` periods after ``day`` (negative steps go back)."""
        if self.days:
            return day + timedelta(days=self.days * steps)
        month_index = day.year * 12 + day.month - 1 + self.months * steps
        if self.anchor_end:
            month_index += 1
            first_next = date(month_index // 12, month_index % 12 + 1, 1)
            return first_next - timedelta(days=1)
        return date(month_index // 12, month_index % 12 + 1, 1)

    def steps_between(self, start: date, end: date) -> int:
        """How many periods from ``start`` to ``end`` (both on the calendar)."""
        if self.days:
            return (end - start).days // self.days
        months = (end.year * 12 + end.month) - (start.year * 12 + start.month)
        return months // self.months

    def future(self, last: date, periods: int) -> list[date]:
        return [self.shift(last, k) for k in range(1, periods + 1)]


def parse_freq(freq: str) -> Calendar:
    """Turn a frequency alias into a Calendar; raise ValueError naming the supported ones."""
    code = _ALIASES.get(freq.upper(), freq.upper())
    if code == "D":
        return Calendar(freq=freq, days=1)
    if code.startswith("W-") and code[2:] in _WEEKDAYS:
        return Calendar(freq=freq, days=7, weekday=_WEEKDAYS[code[2:]])
    months = {"MS": 1, "ME": 1, "QS": 3, "QE": 3, "YS": 12, "YE": 12}
    if code in months:
        return Calendar(freq=freq, months=months[code], anchor_end=code.endswith("E"))
    raise ValueError(
        f"unsupported frequency {freq!r}: use D, W-MON..W-SUN, MS, ME, QS, QE, YS or YE"
    )


# The season length each frequency implies when none is given (periods per year; 7 for daily).
SEASON_LENGTHS = {"D": 7.0, "W": 365.25 / 7, "M": 12.0, "Q": 4.0, "Y": 1.0}


def season_length_for(freq: str) -> float:
    """The usual season length of a frequency: weekly for daily data, yearly otherwise."""
    cal = parse_freq(freq)
    if cal.days:
        return SEASON_LENGTHS["D" if cal.days == 1 else "W"]
    return SEASON_LENGTHS[{1: "M", 3: "Q", 12: "Y"}[cal.months]]


def infer_freq(days: list[date]) -> str:
    """The frequency alias every one of ``days`` (sorted, at least 3) follows; ValueError otherwise.

    Candidates are tried from the finest: a series is daily, weekly on one weekday, or month-,
    quarter- or year-based with every timestamp at the start or at the end of its period, with steps
    of exactly one period apart from gaps (the input contract judges gaps; inference needs the
    typical step, the median one, to be a single period).
    """
    if len(days) < 3:
        raise ValueError(f"{len(days)} timestamps are too few to infer the frequency")
    steps = sorted((b - a).days for a, b in zip(days, days[1:]))
    typical = steps[len(steps) // 2]
    if typical == 0:
        raise ValueError(
            f"most timestamps share their day with another (e.g. {days[0].isoformat()}): hourly and minute "
            "data are outside this platform's calendar, which is daily to yearly (D, W-MON..W-SUN, MS, ME, "
            "QS, QE, YS, YE); give one timestamp per period")
    names = {v: k for k, v in _WEEKDAYS.items()}
    weekday = days[0].weekday()
    candidates = ["D"] if typical == 1 else [f"W-{names[weekday]}"] if typical == 7 else (
        ["MS", "ME"] if 28 <= typical <= 31 else ["QS", "QE"] if 89 <= typical <= 92
        else ["YS", "YE"] if typical in (365, 366) else [])
    for alias in candidates:
        cal = parse_freq(alias)
        if all(cal.on_calendar(day) for day in days):
            return alias
    raise ValueError(
        f"cannot infer the frequency: the typical step is {typical} days and the timestamps do not all "
        f"fall on one calendar (e.g. {days[0].isoformat()}, {days[1].isoformat()}); set data.freq"
    )
