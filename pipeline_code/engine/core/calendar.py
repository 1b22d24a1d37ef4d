"""Regular calendars without pandas: the frequencies a series may have and their future dates.

Supported frequencies (pandas' aliases): ``D`` (daily), ``W-MON`` .. ``W-SUN`` (weekly, ending on
that weekday), ``MS``/``ME`` (month start/end), ``QS``/``QE`` (quarter start/end), ``YS``/``YE``
(year start/end). As in pandas' anchored offsets, a quarter or a year may be anchored on another
month: ``QS-MAR`` starts its quarters in March, June, September and December (the same calendar as
``QS-DEC``), ``QE-NOV`` ends them in November, February, May and August, ``YS-JUL`` starts fiscal years
in July, ``YE-JUN`` ends them in June; plain ``QS`` is ``QS-JAN``, ``QE`` is ``QE-DEC``, ``YS`` is ``YS-JAN``
and ``YE`` is ``YE-DEC``. Used by validation (is the series regular?) and by serving (future
timestamps), so serving stays free of pandas.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Sequence

# Python 3.11's date.fromisoformat also takes "19960701" and week dates ("1996-W27-1"), which the input
# contract (yyyy-MM-dd) does not.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def iso_date(text: str) -> date:
    """The date written ``yyyy-MM-dd`` (ValueError for any other form)."""
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"{text!r} is not a yyyy-MM-dd date")
    return date.fromisoformat(text)


_WEEKDAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}
_MONTHS = {name: k for k, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
# pandas' older names of the month-based aliases (M, Q, Y and A are period ends).
_ALIASES = {"M": "ME", "Q": "QE", "Y": "YE", "A": "YE", "AS": "YS"}
# Month-based aliases: months per period, and whether a timestamp is the period's last day.
_PERIODS = {"MS": (1, False), "ME": (1, True), "QS": (3, False), "QE": (3, True),
            "YS": (12, False), "YE": (12, True)}
SUPPORTED = ("D, W-MON..W-SUN, MS, ME, QS, QE, YS or YE (quarters and years anchored on another month as in"
             " pandas: QS-DEC, QE-NOV, YS-JUL, YE-JUN, ...)")
# pandas' aliases this platform reads another way: the documented recipe (README, "Input contract").
RECIPES = {"B": "business days are daily data whose weekends are gaps: use D and set data.max_gap_periods"
                " (2 for weekends, more for holidays) in a settings file, which fills them by interpolation"
                " (README, \"Input contract\")"}


@dataclass(frozen=True)
class Calendar:
    """A regular frequency: days per step for day-based ones, months per step for month-based ones."""

    freq: str
    days: int = 0
    months: int = 0
    anchor_end: bool = False
    weekday: int | None = None
    # A month a period starts (or, with anchor_end, ends) in; the others are ``months`` apart.
    month: int = 1

    def on_calendar(self, day: date) -> bool:
        """Whether ``day`` is a valid timestamp of this frequency."""
        if self.weekday is not None:
            return day.weekday() == self.weekday
        if self.months:
            if (day.month - self.month) % self.months:
                return False
            return (day + timedelta(days=1)).day == 1 if self.anchor_end else day.day == 1
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

    def refusal(self, day: date, previous: date | None = None, line: int | None = None) -> str:
        """Why ``day`` (on ``line`` of the upload, when given) is refused: not a timestamp of this
        calendar; after ``previous`` (a timestamp of it), the date expected instead."""
        where = "" if line is None else f" (line {line})"
        text = f"{day.isoformat()}{where} is not a {self.freq} timestamp"
        if previous is None:
            return text
        expected = self.shift(previous, 1).isoformat()
        return f"{text} (expected {expected}, one period after {previous.isoformat()})"


def off_calendar(calendar: Calendar, days: Sequence[date], lines: Sequence[int] | None = None) -> str | None:
    """Why ``days`` (sorted) do not all follow ``calendar``: the first day off it, with its line
    (``lines``: one per day, when known) and the date expected there; None when every day is on it."""
    k = next((k for k, day in enumerate(days) if not calendar.on_calendar(day)), None)
    if k is None:
        return None
    return calendar.refusal(days[k], days[k - 1] if k else None, lines[k] if lines else None)


def parse_freq(freq: str) -> Calendar:
    """Turn a frequency alias into a Calendar; raise ValueError naming the supported ones."""
    base, dash, anchor = freq.upper().partition("-")
    if base == "D" and not dash:
        return Calendar(freq=freq, days=1)
    if base == "W" and (anchor if dash else "SUN") in _WEEKDAYS:
        return Calendar(freq=freq, days=7, weekday=_WEEKDAYS[anchor if dash else "SUN"])
    months, end = _PERIODS.get(_ALIASES.get(base, base), (0, False))
    if months and not dash:
        return Calendar(freq=freq, months=months, anchor_end=end, month=12 if end else 1)
    if months > 1 and anchor in _MONTHS:  # a quarter or a year anchored on a month
        return Calendar(freq=freq, months=months, anchor_end=end, month=_MONTHS[anchor])
    recipe = RECIPES.get(freq.upper())
    instead = f"{recipe}; supported: " if recipe else "use "
    raise ValueError(f"unsupported frequency {freq!r}: {instead}{SUPPORTED}")


def anchored_alias(base: str, month: int) -> str:
    """The alias of ``base`` (QS, QE, YS or YE) whose periods start (or end) in ``month``, as pandas'
    ``infer_freq`` names it (quarters by their month in the year's last quarter: ``QS-DEC`` for March);
    the plain alias when that is the default anchor (``QS`` for January, not pandas' ``QS-OCT``)."""
    months, end = _PERIODS[base]
    named = 12 - (12 - month) % months
    if (named - (12 if end else 1)) % months == 0:
        return base
    return f"{base}-{next(name for name, k in _MONTHS.items() if k == named)}"


# The season length each frequency implies when none is given (periods per year; 7 for daily).
SEASON_LENGTHS = {"D": 7.0, "W": 365.25 / 7, "M": 12.0, "Q": 4.0, "Y": 1.0}


def season_length_for(freq: str) -> float:
    """The usual season length of a frequency: weekly for daily data, yearly otherwise."""
    cal = parse_freq(freq)
    if cal.days:
        return SEASON_LENGTHS["D" if cal.days == 1 else "W"]
    return SEASON_LENGTHS[{1: "M", 3: "Q", 12: "Y"}[cal.months]]


def infer_freq(days: list[date], lines: Sequence[int] | None = None) -> str:
    """The frequency alias every one of ``days`` (sorted, at least 3) follows; ValueError otherwise,
    naming the first day off the calendar most of them follow (with its line: ``lines``, one per day).

    Candidates are tried from the finest: a series is daily, weekly on one weekday, or month-,
    quarter- or year-based with every timestamp at the start or at the end of its period (quarters and
    years anchored on the most common month, named by `anchored_alias`), with steps
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
            f"data are outside this platform's calendar, which is daily to yearly ({SUPPORTED}); give one "
            "timestamp per period")
    calendars = [parse_freq(alias) for alias in _candidates(days, typical)]
    on = [sum(map(cal.on_calendar, days)) for cal in calendars]
    for cal, count in zip(calendars, on):
        if count == len(days):
            return cal.freq
    if on and 2 * max(on) > len(days):  # most follow one calendar: a date moved (a holiday) is named
        cal = calendars[on.index(max(on))]
        raise ValueError(f"cannot infer the frequency: the timestamps follow {cal.freq}, but"
                         f" {off_calendar(cal, days, lines)}; correct that date, or set data.freq")
    raise ValueError(
        f"cannot infer the frequency: the typical step is {typical} days and the timestamps do not all "
        f"fall on one calendar (e.g. {days[0].isoformat()}, {days[1].isoformat()}); set data.freq"
    )


def _candidates(days: list[date], typical: int) -> list[str]:
    """The aliases a typical step of ``typical`` days may be, on the most common weekday or month."""
    weekday = Counter(day.weekday() for day in days).most_common(1)[0][0]
    month = Counter(day.month for day in days).most_common(1)[0][0]
    names = {v: k for k, v in _WEEKDAYS.items()}
    if typical in (1, 7):
        return ["D"] if typical == 1 else [f"W-{names[weekday]}"]
    if 28 <= typical <= 31:
        return ["MS", "ME"]
    bases = ("QS", "QE") if 89 <= typical <= 92 else ("YS", "YE") if typical in (365, 366) else ()
    return [anchored_alias(base, month) for base in bases]
