"""Load and validate an input CSV (the input contract): ``timestamp`` (ISO date ``yyyy-MM-dd``, or
Amazon Forecast's ``yyyy-MM-dd HH:mm:ss`` at ``00:00:00``: `parse_date`, one rule for one series and
panels), ``value`` (number); header names match in any case.

Every rejection is a :class:`DataValidationError` naming the rule and, where there is one, the line
of the file (the header is line 1); a refused cell is quoted at most :data:`EXCERPT` characters long.
Ranges, checked up front so a run never fails late on arithmetic: every ``|value|`` lies in
[:data:`MIN_ABS_VALUE`, :data:`MAX_ABS_VALUE`] (zero aside, where allowed), so squares and sums of
squared errors over any series stay finite in float64 (1e100 squared is 1e200; the limit is 1.8e308);
no date is after :data:`MAX_DATE`, so forecasts (up to a few hundred periods after the last date) stay
far inside the calendar's range (year 9999). Only the standard library and NumPy are used.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from pipeline_code.engine.core.calendar import Calendar, iso_date, parse_freq
from pipeline_code.engine.profile import csv_error, header_names, order_message
from pipeline_code.engine.settings import (
    AMAZON_FORECAST_COLUMNS, MAX_ABS_VALUE, MIN_ABS_VALUE, SETTINGS_SUFFIX,
)

REQUIRED_COLUMNS = ("timestamp", "value")
MAX_DATE = date(2200, 12, 31)
EXCERPT = 40
OPTIONAL_COLUMNS = ("item_id",)
# The time of day a timestamp may carry (daily and coarser frequencies), and the forms accepted.
MIDNIGHT = "00:00:00"
TIMESTAMP_FORMS = f"yyyy-MM-dd, or yyyy-MM-dd {MIDNIGHT}"
# Where the keys a refusal names are set (no command-line flag sets them; docs/design.md, "The run document").
SETTINGS_FILE_HINT = f"a settings file (<name>{SETTINGS_SUFFIX} beside the upload, or --settings FILE locally)"


class DataValidationError(ValueError):
    """A series that breaks a rule of the input contract; ``item`` names the series of a panel."""

    def __init__(self, rule: str, message: str, line: int | None = None, *, item: str | None = None) -> None:
        self.rule = rule
        self.line = line
        self.item = item
        self.message = message
        places = ([f"line {line}"] if line is not None else []) + ([f"item {excerpt(item)}"] if item is not None else [])
        where = f" ({', '.join(places)})" if places else ""
        super().__init__(f"[{rule}]{where} {message}")


@dataclass(frozen=True)
class Series:
    """A regular univariate series; ``filled``: how many of its points reading filled in tolerated gaps
    (not carried by ``head``, ``tail`` or a processed file)."""

    timestamps: list[date]
    values: np.ndarray
    freq: str
    filled: int = 0

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def calendar(self) -> Calendar:
        return parse_freq(self.freq)

    def head(self, n: int) -> "Series":
        return Series(self.timestamps[:n], self.values[:n], self.freq)

    def tail(self, n: int) -> "Series":
        return Series(self.timestamps[-n:], self.values[-n:], self.freq)

    def to_csv(self, path: Path, extra: dict[str, np.ndarray] | None = None) -> None:
        extra = extra or {}
        with Path(path).open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["timestamp", "value", *extra])
            for i, stamp in enumerate(self.timestamps):
                cells = [fmt(self.values[i])] + [fmt(col[i]) for col in extra.values()]
                writer.writerow([stamp.isoformat(), *cells])


def fmt(x: float) -> str:
    """The shortest text that reads back as the same float: processing must not round what it passes on
    (at 10 digits, 1e12 + 30 sin(t) or 100 + 1e-11 noise came back constant or periodic)."""
    text = repr(float(x))
    return text.removesuffix(".0")  # whole numbers (counts, 0/1 flags) as integers


def load_series(
    path: str | Path,
    *,
    freq: str,
    min_length: int = 1,
    max_bytes: int = 50 * 1024 * 1024,
    max_gap_periods: int = 0,
    require_positive: bool = True,
    max_rows: int | None = None,
) -> Series:
    """Read and validate a CSV file; see the module docstring for the contract."""
    return parse_series(
        read_upload(path, max_bytes),
        freq=freq,
        min_length=min_length,
        max_gap_periods=max_gap_periods,
        require_positive=require_positive,
        max_rows=max_rows,
    )


def read_upload(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of an upload, refused before reading when it is not a file or over ``max_bytes``."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError("file", f"no such file: {path.name}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataValidationError("oversize", f"file is {size} bytes; the limit is {max_bytes} bytes")
    return path.read_bytes()


def parse_series(
    raw: bytes,
    *,
    freq: str,
    min_length: int = 1,
    max_gap_periods: int = 0,
    require_positive: bool = True,
    max_rows: int | None = None,
) -> Series:
    """Validate CSV bytes and return the series: every row is checked; with ``max_rows``, only the
    latest ``max_rows`` observations are returned."""
    if max_rows is not None and max_rows < min_length:
        raise ValueError(f"max_rows ({max_rows}) must be at least the minimum length ({min_length})")
    calendar = parse_freq(freq)
    reader = csv.reader(io.StringIO(decode_csv(raw)), strict=True)
    header = _check_header(next_row(reader) or [])
    ts_col, value_col = header.index("timestamp"), header.index("value")
    item_col = header.index("item_id") if "item_id" in header else None

    stamps: list[date] = []
    values: list[float] = []
    items: set[str] = set()
    gap: DataValidationError | None = None  # raised at the next row, unless that row is the one out of order
    while (row := next_row(reader)) is not None:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataValidationError(
                "columns", f"expected {len(header)} fields, found {len(row)}", line
            )
        stamps.append(parse_date(row[ts_col], line))
        values.append(parse_value(row[value_col], line, require_positive))
        if item_col is not None:
            items.add(row[item_col].strip())
        if not calendar.on_calendar(stamps[-1]):
            previous = stamps[-2] if len(stamps) > 1 else None
            raise DataValidationError("calendar", calendar.refusal(stamps[-1], previous), line)
        if gap is not None:  # two swapped rows look like a gap, then a step back: name the step back
            if stamps[-1] < stamps[-2]:
                _check_order(stamps[-2], stamps[-1], line, calendar, max_gap_periods)
            raise gap
        if len(stamps) > 1:
            try:
                _check_order(stamps[-2], stamps[-1], line, calendar, max_gap_periods)
            except DataValidationError as err:
                if err.rule != "gap":
                    raise
                gap = err
    if gap is not None:
        raise gap
    if len(items) > 1:
        raise DataValidationError("item_id", f"one series per file; found {len(items)} item_id values")
    if not stamps:
        raise DataValidationError("empty", "the file has a header but no rows")
    series = _fill_gaps(stamps, np.asarray(values, dtype=float), calendar, freq)
    if max_rows is not None and len(series) > max_rows:
        series = series.tail(max_rows)
    if len(series) < min_length:
        raise DataValidationError(
            "too-short",
            f"{len(series)} observations; at least {min_length} are needed",
        )
    return series


def decode_csv(raw: bytes) -> str:
    """The text of an upload: not empty, UTF-8. A UTF-8 byte-order mark (Excel's "CSV UTF-8" writes
    one) is dropped; a UTF-16 one is refused, since the rows are then not UTF-8."""
    if not raw.strip():
        raise DataValidationError("empty", "the file is empty")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataValidationError("encoding", "the file is UTF-16 (it starts with a UTF-16 byte-order mark);"
                                  " save it as UTF-8", 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataValidationError("encoding", f"the file is not UTF-8 ({err.reason})") from None


def next_row(reader) -> list[str] | None:
    """The next CSV row, or None at the end; a malformed row is a DataValidationError with its line."""
    start = reader.line_num + 1  # the line the next record starts on
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as err:
        raise csv_problem(err, reader.line_num or 1, start) from None


def csv_problem(err: csv.Error, line: int, start: int | None = None) -> DataValidationError:
    """The input contract's error for a record the csv module cannot read (``profile.csv_error``)."""
    return DataValidationError(*csv_error(err, line, start))


def excerpt(text: str) -> str:
    """A refused cell or header as quoted in errors: at most EXCERPT characters."""
    return repr(text if len(text) <= EXCERPT else text[:EXCERPT] + "...")


def _check_header(header: list[str]) -> list[str]:
    """The column names (``profile.header_names``: trimmed, in any case)."""
    header = [cell.strip() for cell in header]
    if len(header) == 1 and ";" in header[0]:
        raise DataValidationError(
            "delimiter", "the header uses semicolons; the file must be comma-separated", 1
        )
    names = header_names(header)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DataValidationError("header", header_problem(header, missing), 1)
    unknown = [c for c in names if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown or len(set(names)) != len(names):
        raise DataValidationError(
            "header", f"unexpected or repeated column(s) in {excerpt(','.join(header))}; allowed: timestamp, value, item_id",
            1,
        )
    return names


def header_problem(header: list[str], missing: list[str]) -> str:
    """Why line 1 is not a header of one series, and what to do: with as many columns as a panel, the
    panel's layouts too (its header, or a headerless file in the order ``series.columns``)."""
    found = excerpt(",".join(header))
    is_row = any(_is_date(cell) for cell in header)
    if len(header) != len(AMAZON_FORECAST_COLUMNS):
        if is_row:
            return f"line 1 is a row ({found}), not a header: add the header 'timestamp,value' as line 1"
        return f"missing column(s) {missing}; expected the header 'timestamp,value' (any case), found {found}"
    headers = ("'timestamp,value' (one series) or 'item_id,timestamp,value' (a panel; 'target_value' for"
               " 'value'; columns in any order, names in any case)")
    headerless = (f"a file without a header is a panel in the order series.columns (default"
                  f" {','.join(AMAZON_FORECAST_COLUMNS)})")
    if not is_row:
        return (f"{found} is not a header this platform reads: use {headers}; {headerless}, set in"
                f" {SETTINGS_FILE_HINT}")
    order = _headerless_order(header)
    return (f"line 1 is a row ({found}), not a header; {headerless}, which this row does not follow: set"
            f" series.columns{f' to {order}' if order else ''} in {SETTINGS_FILE_HINT}, or add a header:"
            f" {headers}")


def _headerless_order(row: list[str]) -> list[str] | None:
    """The order of Amazon Forecast's columns a headerless row follows, when it is unambiguous: one
    date, one number, and one other cell (the item id)."""
    dates = [k for k, cell in enumerate(row) if _is_date(cell)]
    numbers = [k for k, cell in enumerate(row) if k not in dates and _NUMBER.fullmatch(cell.strip())]
    if len(dates) != 1 or len(numbers) != 1:
        return None
    item, stamp, value = AMAZON_FORECAST_COLUMNS
    return [stamp if k in dates else value if k in numbers else item for k in range(len(row))]


def _is_date(cell: str) -> bool:
    """A ``yyyy-MM-dd`` date (Amazon Forecast's timestamps may add a time)."""
    try:
        iso_date(cell.strip()[:10])
    except ValueError:
        return False
    return True


def parse_date(cell: str, line: int) -> date:
    """A timestamp cell: ``yyyy-MM-dd``, or Amazon Forecast's ``yyyy-MM-dd HH:mm:ss`` (or ISO's ``T``
    between them) at 00:00:00; the one rule of one series and of panels."""
    text = cell.strip()
    if len(text) > 10 and text[10] in " T":
        if text[11:] != MIDNIGHT:
            raise DataValidationError(
                "timestamp", f"{excerpt(cell)} has a time of day; daily and coarser frequencies take"
                f" {TIMESTAMP_FORMS}", line)
        text = text[:10]
    try:
        stamp = iso_date(text)
    except ValueError:
        raise DataValidationError("timestamp", f"{excerpt(cell)} is not an ISO date ({TIMESTAMP_FORMS})", line) from None
    if stamp > MAX_DATE:
        raise DataValidationError(
            "date-range", f"{stamp.isoformat()} is after {MAX_DATE.isoformat()}, the last date accepted"
            " (forecasts add periods after the last date)", line)
    return stamp


# A number as written in CSV: ASCII digits, an optional sign, point and exponent (or inf/nan, refused
# below as not finite). Python's float() also takes "1_100" and non-ASCII digits, which a file means otherwise.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE | re.ASCII)


def parse_value(cell: str, line: int, require_positive: bool) -> float:
    if not _NUMBER.fullmatch(cell.strip()):
        raise DataValidationError("value", f"{excerpt(cell)} is not a number", line)
    value = float(cell.strip())
    if not math.isfinite(value):
        raise DataValidationError("value", f"{excerpt(cell.strip())} is not a finite number", line)
    if value != 0 and not MIN_ABS_VALUE <= abs(value) <= MAX_ABS_VALUE:
        raise DataValidationError(
            "value-range", f"{value:g} is outside the accepted magnitudes {MIN_ABS_VALUE:g}..{MAX_ABS_VALUE:g}"
            " (squared errors must stay finite)", line)
    if require_positive and value <= 0:
        raise DataValidationError(
            "value", f"{value:g} is not positive: the models work on the log scale, so zero and negative values"
            " are not supported; make every value positive (e.g. add a constant to the series and subtract it"
            " from the forecasts) or leave the series out; in a panel, a missing observation is an empty cell"
            " (filled as set by series.fill_middle)", line)
    return value


def _check_order(prev: date, current: date, line: int, calendar: Calendar, max_gap: int) -> None:
    if current == prev:
        raise DataValidationError("duplicate", f"timestamp {current.isoformat()} appears twice", line)
    if current < prev:
        raise DataValidationError("order", order_message(prev, current), line)
    steps = calendar.steps_between(prev, current)
    if steps - 1 > max_gap:
        raise DataValidationError(
            "gap",
            f"{steps - 1} missing period(s) between {prev.isoformat()} and {current.isoformat()} ({calendar.freq});"
            f" data.max_gap_periods is {max_gap}: add the missing rows, or to fill such gaps by log-linear"
            f" interpolation set it to at least {steps - 1} in {SETTINGS_FILE_HINT}, e.g."
            f' {{"data": {{"max_gap_periods": {steps - 1}}}}}',
            line,
        )


def _fill_gaps(stamps: list[date], values: np.ndarray, calendar: Calendar, freq: str) -> Series:
    """Put tolerated gaps on the calendar, filled by linear interpolation on the log scale (on the
    values themselves when some are not positive); observed values are kept as read."""
    positions = np.array([calendar.steps_between(stamps[0], s) for s in stamps])
    if positions[-1] == len(stamps) - 1:
        return Series(stamps, values, freq)
    full = np.arange(positions[-1] + 1)
    return Series([calendar.shift(stamps[0], int(k)) for k in full], interpolate(full, positions, values), freq,
                  filled=len(full) - len(stamps))


def interpolate(full: np.ndarray, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` observed at ``positions`` (increasing) put on ``full``: linear on the log scale (on the
    values themselves when some are not positive); observed values are kept as read."""
    if np.all(values > 0):
        filled = np.exp(np.interp(full, positions, np.log(values)))
    else:
        filled = np.interp(full, positions, values)
    filled[np.searchsorted(full, positions)] = values
    return filled
