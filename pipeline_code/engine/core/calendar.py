"""Regular calendars without pandas: the frequencies a series may have and their future dates.

Supported frequencies (pandas-style aliases): ``D`` (daily), ``W-MON`` .. ``W-SUN`` (weekly, ending on
that weekday), ``MS``/``ME`` (month start/end), ``QS``/``QE`` (quarter start/end), ``YS``/``YE``
(year start/end). Used by validation (is the series regular?) and by serving (future timestamps),
so serving stays free of pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

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
