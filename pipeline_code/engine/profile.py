"""A light first look at an upload (standard library only): its length, its first timestamps, and
whether it is a panel (many series keyed by ``item_id``).

The run's settings are resolved from it before any job starts (the frequency is inferred from the
timestamps, the CV window and evaluation origins from the length; `engine.settings.resolve`), by the
local runner and by the starter Lambda alike. It judges little: the input contract
(`engine/dataset.py`, `engine/panel_data.py` for panels) validates the whole file in the processing
stage; only what settings would otherwise be derived from wrongly (a record the csv module cannot
read, one series' rows out of order) refuses the upload here, worded as the contract words it
(``Profile.problem``).

- One series (a header with ``timestamp``, no ``item_id``): ``observations`` is the number of rows,
  ``timestamps`` the leading ones, which must be in order (the contract's rule ``order``, checked
  before the frequency is inferred from them).
- A panel (a header with ``item_id`` and ``timestamp``, or no header: Amazon Forecast's layout with the
  columns in the order ``columns``): every row is scanned once; ``observations`` is the row count of the
  longest series, ``items`` the number of distinct item ids, and ``timestamps`` (sorted) those of the
  item with the most rows among those of the most common frequency of the first :data:`CANDIDATES`
  items, so the frequency is inferred from one item and an odd item out is the one named (a panel's
  rows need not be sorted).

``lines`` gives each timestamp's line in the upload (its first, in a panel), so a refusal names it.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Sequence

from pipeline_code.engine.core.calendar import infer_freq, iso_date
from pipeline_code.engine.settings import AMAZON_FORECAST_COLUMNS


def header_names(row: Sequence[str]) -> list[str]:
    """A first line's cells as column names: trimmed, and in any case (as Amazon Forecast's schema
    names match); the one rule the first look, the one-series and the panel parsers share."""
    return [cell.strip().lower() for cell in row]

# Timestamps read for inference: enough to see a calendar, few enough to stay instant.
SAMPLE_ROWS = 400
# Items whose timestamps are kept while scanning a panel; the longest of the most common frequency
# is the sample.
CANDIDATES = 8


@dataclass(frozen=True)
class Profile:
    observations: int
    timestamps: list[date]
    items: int = 1
    panel: bool = False
    # The first record the csv module cannot read, or one series' first row out of order, as the input
    # contract names it: the run is refused with it before settings are derived from the rows.
    problem: str | None = None
    lines: list[int] = field(default_factory=list)  # the line of each of ``timestamps``


# The csv module's error when the data ends inside a quoted field.
UNCLOSED_QUOTE = "unexpected end of data"


def csv_error(err: csv.Error, line: int, start: int | None = None) -> tuple[str, str, int]:
    """The input contract's rule, message and line for a record the csv module cannot read: found at
    ``line``, in the record that starts on ``start`` (a quote never closed is named where it opens)."""
    if UNCLOSED_QUOTE in str(err) and start is not None:
        return ("csv", "malformed CSV: a quoted field that starts on this line is never closed (the file ends"
                f" inside it, at line {line})", start)
    if "new-line character" in str(err):
        return ("line-endings", "a line ends with a bare carriage return (CR); save the file with LF or CRLF"
                " line endings", line)
    if "field limit" in str(err):
        return "field-size", f"a field is longer than {csv.field_size_limit()} characters", line
    return "csv", f"malformed CSV: {err}", line


def order_message(previous: date, day: date) -> str:
    """The input contract's message for a row whose timestamp ``day`` is before the row above's (rule
    ``order``)."""
    return f"{day.isoformat()} comes after {previous.isoformat()}; sort rows by timestamp"


def _problem(rule: str, message: str, line: int) -> str:
    """A refusal as ``DataValidationError`` words it."""
    return f"[{rule}] (line {line}) {message}"


def profile_csv(raw: bytes, columns: Sequence[str] = AMAZON_FORECAST_COLUMNS) -> Profile:
    """What the upload implies; ``columns`` is the column order of a headerless panel
    (``series.columns``)."""
    text = raw.decode("utf-8-sig", errors="replace")  # a BOM dropped, as parsing does
    rows = csv.reader(io.StringIO(text), strict=True)
    try:
        first = next(rows)
    except (csv.Error, StopIteration):
        first = []
    header = header_names(first)
    if "timestamp" in header and "item_id" in header:
        return _panel(rows, header.index("item_id"), header.index("timestamp"))
    item, stamp = list(columns).index("item_id"), list(columns).index("timestamp")
    if "timestamp" not in header and len(first) == len(columns) and _date(first[stamp]) is not None:
        return _panel(rows, item, stamp, first)  # headerless: line 1 is a row
    filled, problem = _filled_rows(text)
    stamps, lines, disorder = _leading(rows, header.index("timestamp") if "timestamp" in header else None)
    return Profile(max(filled - 1, 0), stamps, problem=disorder or problem, lines=lines)


def _filled_rows(text: str) -> tuple[int, str | None]:
    """Rows with a non-blank cell, as the input contract counts them (it skips ``,`` rows), and the
    first record it cannot read (then the non-blank lines are counted)."""
    reader = csv.reader(io.StringIO(text), strict=True)
    filled, start = 0, 1
    try:
        for row in reader:
            filled += any(cell.strip() for cell in row)
            start = reader.line_num + 1
    except csv.Error as err:
        problem = _problem(*csv_error(err, reader.line_num or 1, start))
        return sum(1 for line in text.splitlines() if line.strip()), problem
    return filled, None


def _leading(rows, column: int | None) -> tuple[list[date], list[int], str | None]:
    """The leading timestamps (of ``column``; none without one) that parse as ISO dates, their lines, and
    the first row among them out of order (the input contract's rule, before a frequency is inferred
    from them)."""
    stamps: list[date] = []
    lines: list[int] = []
    if column is None:
        return stamps, lines, None
    try:
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(stamps) >= SAMPLE_ROWS or len(row) <= column:
                break
            day = iso_date(row[column].strip()[:10])
            if stamps and day < stamps[-1]:
                return stamps, lines, _problem("order", order_message(stamps[-1], day), rows.line_num)
            stamps.append(day)
            lines.append(rows.line_num)
    except (csv.Error, ValueError):
        pass  # the input contract names the line; inference uses what parsed
    return stamps, lines, None


def _panel(rows, item: int, stamp: int, first: list[str] | None = None) -> Profile:
    """Rows per item (one scan), and the timestamps of the longest of the first CANDIDATES items."""
    counts: dict[str, int] = {}
    sampled: dict[str, list[tuple[str, int]]] = {}  # timestamp cells and their lines
    width = max(item, stamp)
    problem, start = None, rows.line_num + 1
    try:
        for row in itertools.chain([first] if first is not None else [], rows):
            start = rows.line_num + 1
            if len(row) > width:
                key = row[item]
                counts[key] = counts.get(key, 0) + 1
                cells = sampled.get(key)
                if cells is None and len(sampled) < CANDIDATES:
                    cells = sampled[key] = []
                if cells is not None and len(cells) < SAMPLE_ROWS:
                    cells.append((row[stamp], rows.line_num))
    except csv.Error as err:
        problem = _problem(*csv_error(err, rows.line_num or 1, start))
    merged: dict[str, int] = {}
    for key, n in counts.items():  # ids differing only by surrounding spaces are one item
        merged[key.strip()] = merged.get(key.strip(), 0) + n
    days = _sample(sampled.values())
    return Profile(max(merged.values(), default=0), list(days), items=len(merged), panel=True,
                   problem=problem, lines=list(days.values()))


def _sample(items) -> dict[date, int]:
    """The sorted timestamps, each with its first line, of the longest item of the most common frequency
    among ``items`` (so one item of another frequency is the one the input contract names, not the others)."""
    stamps = [_days(cells) for cells in items]
    freqs = [_freq(list(days)) for days in stamps]
    counts = Counter(f for f in freqs if f is not None)
    if not counts:
        return max(stamps, key=len, default={})
    top = max(counts.values())
    common = [days for days, f in zip(stamps, freqs) if f is not None and counts[f] == top]
    return max(common, key=len)


def _days(cells: list[tuple[str, int]]) -> dict[date, int]:
    """An item's distinct dates (timestamp cells that parse), sorted, each with its first line."""
    first: dict[date, int] = {}
    for cell, line in cells:
        day = _date(cell)
        if day is not None:
            first[day] = min(line, first.get(day, line))
    return dict(sorted(first.items()))


def _freq(days: list[date]) -> str | None:
    try:
        return infer_freq(days)
    except ValueError:
        return None


def _date(cell: str) -> date | None:
    try:
        return iso_date(cell.strip()[:10])
    except ValueError:
        return None
