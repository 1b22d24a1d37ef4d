"""A light first look at an upload (standard library only): its length, its first timestamps, and
whether it is a panel (many series keyed by ``item_id``).

The run's settings are resolved from it before any job starts (the frequency is inferred from the
timestamps, the CV window and evaluation origins from the length; `engine.settings.resolve`), by the
local runner and by the starter Lambda alike. It judges nothing: the input contract
(`engine/dataset.py`, `engine/panel_data.py` for panels) validates the whole file in the processing
stage.

- One series (a header with ``timestamp``, no ``item_id``): ``observations`` is the number of rows,
  ``timestamps`` the leading ones.
- A panel (a header with ``item_id`` and ``timestamp``, or no header: Amazon Forecast's layout with the
  columns in the order ``columns``): every row is scanned once; ``observations`` is the row count of the
  longest series, ``items`` the number of distinct item ids, and ``timestamps`` (sorted) those of the
  item with the most rows among those of the most common frequency of the first :data:`CANDIDATES`
  items, so the frequency is inferred from one item and an odd item out is the one named.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from dataclasses import dataclass
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
    # The first record the csv module cannot read, as the input contract names it (``csv_error``): the
    # run is refused with it before settings are derived from what could be read.
    problem: str | None = None


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
    stamps = _leading(rows, header.index("timestamp")) if "timestamp" in header else []
    return Profile(max(filled - 1, 0), stamps, problem=problem)


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
        rule, message, at = csv_error(err, reader.line_num or 1, start)
        return sum(1 for line in text.splitlines() if line.strip()), f"[{rule}] (line {at}) {message}"
    return filled, None


def _leading(rows, column: int) -> list[date]:
    """The leading timestamps that parse as ISO dates."""
    stamps = []
    try:
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(stamps) >= SAMPLE_ROWS or len(row) <= column:
                break
            stamps.append(iso_date(row[column].strip()[:10]))
    except (csv.Error, ValueError):
        pass  # the input contract names the line; inference uses what parsed
    return stamps


def _panel(rows, item: int, stamp: int, first: list[str] | None = None) -> Profile:
    """Rows per item (one scan), and the timestamps of the longest of the first CANDIDATES items."""
    counts: dict[str, int] = {}
    sampled: dict[str, list[str]] = {}
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
                    cells.append(row[stamp])
    except csv.Error as err:
        rule, message, at = csv_error(err, rows.line_num or 1, start)
        problem = f"[{rule}] (line {at}) {message}"
    merged: dict[str, int] = {}
    for key, n in counts.items():  # ids differing only by surrounding spaces are one item
        merged[key.strip()] = merged.get(key.strip(), 0) + n
    return Profile(max(merged.values(), default=0), _sample(sampled.values()), items=len(merged), panel=True,
                   problem=problem)


def _sample(items) -> list[date]:
    """The sorted timestamps of the longest item of the most common frequency among ``items`` (so one
    item of another frequency is the one the input contract names, not the others)."""
    stamps = [sorted({day for day in map(_date, cells) if day is not None}) for cells in items]
    freqs = [_freq(days) for days in stamps]
    counts = Counter(f for f in freqs if f is not None)
    if not counts:
        return max(stamps, key=len, default=[])
    top = max(counts.values())
    common = [days for days, f in zip(stamps, freqs) if f is not None and counts[f] == top]
    return max(common, key=len)


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
