"""Many series in one upload (a panel): a long CSV read, validated and filled into regular series of
one frequency. docs/panel.md is the user's contract; this is its reference.

Layouts (decided by the first line; column names match in any case):

- A header naming ``timestamp`` and ``value`` without ``item_id``: one series, read by
  `engine.dataset.parse_series` exactly as before (``Panel.single``, item id ``""``); nothing below
  applies to it (no missing-value cells, no fills beyond ``data.max_gap_periods``).
- A header naming ``item_id``, ``timestamp`` and ``value`` or ``target_value``, in any order: a panel.
- No header (the first line names no ``timestamp`` column): a panel whose columns come in the order
  ``series.columns`` (default ``item_id,timestamp,target_value``).

Amazon Forecast's target time series: its CUSTOM domain names the fields ``item_id`` (string),
``timestamp`` and ``target_value`` (https://docs.aws.amazon.com/forecast/latest/dg/custom-domain.html);
the CSV columns follow the dataset schema's attribute order and a header is best omitted
(https://docs.aws.amazon.com/forecast/latest/dg/dataset-import-guidelines-troubleshooting.html), hence
``series.columns`` for a headerless file. Its timestamps for Y, M, W and D frequencies are
``yyyy-MM-dd``, optionally ``yyyy-MM-dd HH:mm:ss`` (same page, and ``TimestampFormat`` in
https://docs.aws.amazon.com/forecast/latest/dg/API_CreateDatasetImportJob.html): both are read, the
time must be 00:00:00 (hourly and minute data are not supported here), by `engine.dataset.parse_date`,
as in a file of one series. Other fields (a ``location``
dimension, related time series) are refused: one file holds one target per item.

Rules: each refusal is a :class:`DataValidationError` naming the rule, the line (the header is line 1)
and the item, and refuses the whole upload. The rules of the file and of a row are `engine.dataset`'s
(``empty``, ``encoding``, ``csv``, ``line-endings``, ``field-size``, ``columns``, ``timestamp``,
``date-range``, ``value``, ``value-range``); a value must be positive because the models work on the
log scale. Beyond them:

- ``header``: a header that does not name item_id, timestamp and value (or target_value) once each,
  or, without a header, a line 1 that cannot be a row in the order ``series.columns``.

- ``item_id``: empty, longer than ``MAX_ITEM_ID_LENGTH`` characters, or holding control or invisible
  characters (``engine.settings.item_id_problem``; surrounding spaces are dropped).
- ``max-series``: more distinct items than ``series.max_series``; ``oversize``: a file over
  ``data.max_file_bytes``.
- ``duplicate``: one ``(item_id, timestamp)`` twice (the later line is named).
- ``calendar``: a timestamp off the frequency's calendar; ``frequency``: an item whose timestamps
  follow another frequency than ``data.freq`` (off its calendar, or typically more than one period
  apart), its own frequency named when it can be inferred.
- ``gap`` and ``missing``: see below.

Rows of one item need not be contiguous or sorted; each item is sorted by timestamp.

Missing values, after Amazon Forecast's filling
(https://docs.aws.amazon.com/forecast/latest/dg/howitworks-missing-values.html,
https://docs.aws.amazon.com/forecast/latest/dg/API_FeaturizationMethod.html): a period is missing
when its row is absent or its value cell is empty, ``NA`` or ``nan`` (any case).

- Leading missing values start the series at its first value (Amazon's ``frontfill: none``).
- Middle (Amazon's ``middlefill``): a run of at most ``data.max_gap_periods`` missing periods is
  interpolated as for one series (log-linear); a longer run is filled by ``series.fill_middle``, or
  refused (rule ``gap``) when it is ``none``.
- End (Amazon's ``backfill``): periods after a series' last value up to the panel's last timestamp
  (the latest of the file) are filled by ``series.fill_end``, or refused (rule ``missing``) when it
  is ``none``; every series then ends on the panel's last timestamp.
- Methods: ``interpolate`` (log-linear between the neighbours; at the end, the last value carried),
  ``value`` (``series.fill_value``), ``median`` or ``mean`` (of the series' observed values). The
  default is ``none`` (refuse, as for one series), where Amazon's is ``zero``; ``zero`` has no log
  (a ``value`` fill is the way), and Amazon's ``nan`` (points left out of training), ``min`` and
  ``max`` are not offered.
- An item with no value at all is refused (rule ``missing``). ``Panel.fills`` counts each item's
  filled points (``middle`` includes the tolerated ones); leading missing values are not filled.
- Only the latest ``data.max_rows`` periods of each series are kept (all rows are validated).

Series whose values are all equal (rule ``constant``) are kept, not refused: no family can scale its
errors (MASE divides by the naive error, zero here), so the fitter gives them ``series.fallback``;
``Panel.constant`` lists them and ``Panel.report()`` names the rule, line and item. Too-short series
are the fitter's to judge, not refused here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from array import array
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from pipeline_code.engine.core.calendar import infer_freq, parse_freq
from pipeline_code.engine.dataset import (
    MAX_ABS_VALUE, MIN_ABS_VALUE, SETTINGS_FILE_HINT, DataValidationError, Series, csv_problem, decode_csv, excerpt,
    fmt, interpolate, next_row, parse_date, parse_series, parse_value, read_upload,
)
from pipeline_code.engine.profile import header_names
from pipeline_code.engine.settings import FILL_METHODS, Settings, item_id_problem

ITEM, TIMESTAMP, VALUE = "item_id", "timestamp", "value"
# Amazon Forecast's name of the target column (CUSTOM domain), read as ``value``.
TARGET_VALUE = "target_value"
MISSING_CELLS = frozenset({"", "na", "nan"})


@dataclass(frozen=True)
class Panel:
    """Regular series of one frequency keyed by item id, and what reading them filled."""

    series: dict[str, Series]
    freq: str
    single: bool
    fills: dict[str, dict[str, int]] = field(default_factory=dict)
    # Each item's first line in the upload (empty for a panel read back from a processed file).
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        return sorted(self.series)

    @property
    def end(self) -> date:
        return max(series.timestamps[-1] for series in self.series.values())

    @property
    def constant(self) -> list[str]:
        """Items whose values are all equal: they get the fallback model."""
        return [item for item in self.items if np.all(self.series[item].values == self.series[item].values[0])]

    def report(self) -> dict:
        """JSON-ready: item count, frequency, last timestamp, filled points per item, constant series."""
        constant = []
        for item in self.constant:
            error = DataValidationError(
                "constant", "all values are equal; the series gets the fallback model (series.fallback)",
                self.lines.get(item), item=item)
            constant.append({"rule": error.rule, "line": error.line, "item": item, "message": str(error)})
        return {"items": len(self.series), "freq": self.freq, "end": self.end.isoformat(), "single": self.single,
                "fills": self.fills, "constant": constant}


def shard_of(item_id: str, shards: int) -> int:
    """The shard (0..shards-1) of an item: stable across processes and machines (sha256, not hash())."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return int.from_bytes(hashlib.sha256(item_id.encode("utf-8")).digest()[:8], "big") % shards


def load_panel(path: str | Path, *, settings: Settings, max_gap_periods: int | None = None) -> Panel:
    """Read and validate an upload (refused before reading when over ``data.max_file_bytes``)."""
    return parse_panel(read_upload(path, settings.data.max_file_bytes), settings=settings,
                       max_gap_periods=max_gap_periods)


def parse_panel(raw: bytes, *, settings: Settings, max_gap_periods: int | None = None) -> Panel:
    """Validate CSV bytes into a Panel; see the module docstring. ``max_gap_periods`` overrides
    ``data.max_gap_periods``."""
    limit = settings.data.max_file_bytes
    if len(raw) > limit:
        raise DataValidationError("oversize", f"file is {len(raw)} bytes; the limit is {limit} bytes")
    gap = settings.data.max_gap_periods if max_gap_periods is None else max_gap_periods
    reader = csv.reader(io.StringIO(decode_csv(raw)), strict=True)
    first = next_row(reader) or []
    cells = header_names(first)
    if TIMESTAMP in cells and ITEM not in cells:
        series = parse_series(raw, freq=settings.data.freq, max_gap_periods=gap, max_rows=settings.data.max_rows)
        return Panel({"": series}, settings.data.freq, single=True)
    columns = _columns(cells if TIMESTAMP in cells else list(settings.series.columns), has_header=TIMESTAMP in cells)
    rows = _Rows(settings)
    rows.read(reader, columns, None if TIMESTAMP in cells else first)
    return rows.panel(gap)


def _columns(names: list[str], *, has_header: bool) -> tuple[int, int, int]:
    """Positions of item_id, timestamp and value (``target_value`` read as value)."""
    names = [VALUE if name == TARGET_VALUE else name for name in names]
    if sorted(names) != sorted((ITEM, TIMESTAMP, VALUE)):
        where = "the header" if has_header else "series.columns"
        raise DataValidationError(
            "header", f"{where} {excerpt(','.join(names))} must name item_id, timestamp and value (or"
            " target_value) once each, and nothing else", 1 if has_header else None)
    return names.index(ITEM), names.index(TIMESTAMP), names.index(VALUE)


class _Rows:
    """The rows of a panel file, read once into flat arrays (item index, date index, value, line)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names: list[str] = []  # item ids, in order of first appearance
        self.by_name: dict[str, int] = {}
        self.by_cell: dict[str, int] = {}  # raw item cell -> item index
        self.dates: list[date] = []  # distinct dates, in order of first appearance
        self.date_ids: dict[date, int] = {}
        self.stamp_cells: dict[str, int] = {}  # raw timestamp cell -> date index
        # One entry per row, as typed arrays (a tenth of the memory of lists of Python numbers).
        self.item, self.day, self.line = array("q"), array("q"), array("q")
        self.value = array("d")
        self.first_line: list[int] = []

    def read(self, reader, columns: tuple[int, int, int], first: list[str] | None = None) -> None:
        """Every row (``first``: line 1 of a headerless file), its cells checked by the input contract's
        rules, with the item named. The common case (a known item and date, a plain positive number)
        takes the short path; anything else is judged by `engine.dataset`'s rules."""
        item_col, stamp_col, value_col = columns
        by_cell, stamp_cells = self.by_cell, self.stamp_cells
        items, days, values, lines = self.item, self.day, self.value, self.line
        index = None
        line = reader.line_num  # the header's, or a headerless file's first row's
        try:
            for row in itertools.chain([first] if first is not None else [], reader):
                line = reader.line_num
                index = None
                if len(row) != 3 or not row[item_col].strip():
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != 3:
                        raise DataValidationError("columns", f"expected 3 fields, found {len(row)}", line)
                index = by_cell.get(row[item_col])
                if index is None:
                    index = by_cell[row[item_col]] = self.new_item(row[item_col], line)
                day = stamp_cells.get(row[stamp_col])
                if day is None:
                    day = self.new_date(row[stamp_col], line)
                text = row[value_col]
                try:  # float() also reads "1_100" and non-ASCII digits: those go to parse_value's rule
                    value = float(text) if text.isascii() and "_" not in text else 0.0
                except ValueError:
                    value = 0.0
                if not MIN_ABS_VALUE <= value <= MAX_ABS_VALUE:  # zero, negative, nan, inf or not a number
                    value = np.nan if text.strip().lower() in MISSING_CELLS else parse_value(text, line, True)
                items.append(index)
                days.append(day)
                values.append(value)
                lines.append(line)
        except csv.Error as err:
            raise csv_problem(err, reader.line_num or 1, line + 1) from None
        except DataValidationError as err:
            if first is not None and err.line == 1 and err.rule in ("columns", "timestamp"):
                raise DataValidationError(
                    "header", f"line 1 names no 'timestamp' column, and as a headerless row in the order"
                    f" series.columns {list(self.settings.series.columns)} it is refused: {err.message}", 1,
                    item=err.item) from None
            raise DataValidationError(err.rule, err.message, err.line,
                                      item=err.item if index is None else self.names[index]) from None
        if not items:
            raise DataValidationError("empty", "the file has a header but no rows")

    def new_date(self, cell: str, line: int) -> int:
        when = parse_date(cell, line)
        day = self.stamp_cells[cell] = self.date_ids.setdefault(when, len(self.dates))
        if day == len(self.dates):
            self.dates.append(when)
        return day

    def new_item(self, cell: str, line: int) -> int:
        name = cell.strip()
        if name in self.by_name:
            return self.by_name[name]
        if problem := item_id_problem(name):  # the one rule of data, artifact and API
            raise DataValidationError("item_id", problem, line, item=name or None)
        limit = self.settings.series.max_series
        if len(self.names) >= limit:
            raise DataValidationError(
                "max-series", f"the file holds more than series.max_series = {limit} series", line, item=name)
        self.by_name[name] = len(self.names)
        self.names.append(name)
        self.first_line.append(line)
        return self.by_name[name]

    def panel(self, gap: int) -> Panel:
        freq = self.settings.data.freq
        calendar = parse_freq(freq)
        item, day, value, line = (np.frombuffer(a, dtype=a.typecode) for a in (self.item, self.day, self.value, self.line))
        on = np.array([calendar.on_calendar(d) for d in self.dates])
        if not on[day].all():
            self.off_calendar(np.flatnonzero(~on[day])[0], item, day)
        origin = min(self.dates)
        position = np.array([calendar.steps_between(origin, d) for d in self.dates])[day]
        order = np.lexsort((position, item))
        item, position, value, line = item[order], position[order], value[order], line[order]
        bounds = np.flatnonzero(np.diff(item)) + 1
        starts, stops = np.r_[0, bounds], np.r_[bounds, len(item)]
        end = int(position.max())
        grid = [calendar.shift(origin, k) for k in range(end + 1)]
        fill = _Fill(self.settings, gap, grid)
        parts = [(self.names[item[start]], position[start:stop], value[start:stop], line[start:stop])
                 for start, stop in zip(starts, stops)]
        for name, *part in parts:  # duplicates and frequencies of every item before any fill
            try:
                _naming(name, fill.check, *part)
            except DataValidationError as err:
                spellings = sorted(cell for cell, index in self.by_cell.items() if index == self.by_name[name])
                if err.rule != "duplicate" or len(spellings) < 2:
                    raise
                raise DataValidationError(err.rule, f"{err.message}; the file spells the item {spellings}, one item"
                                          " once surrounding spaces are dropped", err.line, item=name) from None
        series, fills, lines = {}, {}, {}
        for name, *part in parts:
            values, filled = _naming(name, fill.series, *part)
            kept = min(len(values), self.settings.data.max_rows)
            series[name] = Series(grid[end + 1 - kept:], values[-kept:], freq)
            lines[name] = self.first_line[self.by_name[name]]
            if any(filled.values()):
                fills[name] = filled
        return Panel(series, freq, single=False, fills=fills, lines=lines)

    def off_calendar(self, row: int, item: np.ndarray, day: np.ndarray) -> None:
        """The first row off the calendar: its item follows another frequency, or the row is off."""
        name, freq = self.names[item[row]], self.settings.data.freq
        days = sorted({self.dates[d] for d in day[item == item[row]]})
        own = _own_freq(days)
        if own is not None:
            raise DataValidationError(
                "frequency", f"the item's timestamps follow {own}; the panel's frequency (data.freq) is {freq}",
                self.line[row], item=name)
        calendar, when = parse_freq(freq), self.dates[day[row]]
        previous = max((d for d in days if d < when and calendar.on_calendar(d)), default=None)
        raise DataValidationError("calendar", calendar.refusal(when, previous), self.line[row], item=name)


class _Fill:
    """One item's rows (sorted by position) put on the panel's calendar up to its last timestamp."""

    def __init__(self, settings: Settings, gap: int, grid: list[date]) -> None:
        self.series_settings = settings.series
        self.gap = gap
        self.grid = grid
        self.freq = settings.data.freq

    def check(self, position: np.ndarray, value: np.ndarray, line: np.ndarray) -> None:
        """One timestamp per period, one period apart (apart from gaps)."""
        steps = np.diff(position)
        if (steps == 0).any():
            j = int(np.flatnonzero(steps == 0)[0])
            raise DataValidationError(
                "duplicate", f"timestamp {self.grid[position[j]].isoformat()} appears twice (also on line"
                f" {min(line[j], line[j + 1])})", int(max(line[j], line[j + 1])))
        if len(steps) >= 2 and np.median(steps) > 1:
            own = _own_freq([self.grid[p] for p in position])
            raise DataValidationError(
                "frequency", f"the item's timestamps are typically {np.median(steps):g} periods apart"
                f"{f' ({own})' if own else ''}; the panel's frequency (data.freq) is {self.freq}", int(line.min()))

    def series(self, position: np.ndarray, value: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, dict]:
        """The series' values from its first value to the panel's end, and its filled points."""
        seen = ~np.isnan(value)
        if not seen.any():
            raise DataValidationError("missing", "the item has no value (every value cell is empty or NA)",
                                      int(line.min()))
        first = int(np.argmax(seen))
        position, value, line = position[first:], value[first:], line[first:]
        start, end = int(position[0]), len(self.grid) - 1
        values = np.full(end - start + 1, np.nan)
        values[position - start] = value
        observed = np.flatnonzero(~np.isnan(values))
        last = int(observed[-1])
        middle = self.middle(values, observed, position - start, line)
        tail = end - start - last
        if tail:
            self.end(values, observed, last, line[-1], start)
        return values, {"middle": middle, "end": tail}

    def middle(self, values: np.ndarray, observed: np.ndarray, rows: np.ndarray, line: np.ndarray) -> int:
        """Fill the missing runs between the first and the last value; how many points were filled."""
        runs = np.flatnonzero(np.diff(observed) > 1)
        if not len(runs):
            return 0
        full = np.arange(observed[-1] + 1)
        smooth = interpolate(full, observed, values[observed])
        method = self.series_settings.fill_middle
        for run in runs:
            before, after = int(observed[run]), int(observed[run + 1])
            missing = slice(before + 1, after)
            if after - before - 1 <= self.gap or method == "interpolate":
                values[missing] = smooth[missing]
            elif method == "none":
                missing_periods = after - before - 1
                raise DataValidationError(
                    "gap", f"{missing_periods} missing period(s) between {self._date(values, before)} and"
                    f" {self._date(values, after)}; data.max_gap_periods is {self.gap}: set it to at least"
                    f" {missing_periods} to interpolate such runs, or series.fill_middle to fill every run"
                    f" ({', '.join(FILL_METHODS[1:])}), in {SETTINGS_FILE_HINT}",
                    int(line[np.searchsorted(rows, after)]))
            else:
                values[missing] = self.constant_fill(method, values[observed])
        return int(observed[-1] + 1 - len(observed))

    def end(self, values: np.ndarray, observed: np.ndarray, last: int, line: int, start: int) -> None:
        """Fill the periods after the last value up to the panel's last timestamp."""
        method = self.series_settings.fill_end
        if method == "none":
            raise DataValidationError(
                "missing", f"the series' last value is on {self.grid[start + last].isoformat()},"
                f" {len(values) - 1 - last} period(s) before the panel's last timestamp"
                f" {self.grid[-1].isoformat()}; set series.fill_end ({', '.join(FILL_METHODS[1:])}) in"
                f" {SETTINGS_FILE_HINT} to fill them", int(line))
        fill = values[last] if method == "interpolate" else self.constant_fill(method, values[observed])
        values[last + 1:] = fill

    def constant_fill(self, method: str, observed: np.ndarray) -> float:
        if method == "value":
            return float(self.series_settings.fill_value)
        return float(np.median(observed) if method == "median" else np.mean(observed))

    def _date(self, values: np.ndarray, index: int) -> str:
        return self.grid[len(self.grid) - len(values) + index].isoformat()


def _naming(item: str, check, *args):
    """``check(*args)``, its DataValidationError naming ``item``."""
    try:
        return check(*args)
    except DataValidationError as err:
        raise DataValidationError(err.rule, err.message, err.line, item=item) from None


def _own_freq(stamps: list[date]) -> str | None:
    try:
        return infer_freq(stamps)
    except ValueError:
        return None


def write_panel_csv(path: str | Path, panel: Panel, extra: dict[str, dict[str, np.ndarray]] | None = None) -> None:
    """The long CSV ``item_id,timestamp,value[,extra...]`` (items sorted); a single series is written
    as today's ``timestamp,value`` file. Every item of ``extra`` has the same columns."""
    extra = extra or {}
    if panel.single:
        panel.series[""].to_csv(Path(path), extra.get(""))
        return
    names = list(next(iter(extra.values()), {}))
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([ITEM, TIMESTAMP, VALUE, *names])
        for item in panel.items:
            series, columns = panel.series[item], extra.get(item, {})
            if list(columns) != names:
                raise ValueError(f"item {item!r}: extra columns {list(columns)}, expected {names}")
            cells = [[fmt(x) for x in series.values]] + [[fmt(x) for x in columns[n]] for n in names]
            writer.writerows([item, stamp.isoformat(), *row] for stamp, *row in zip(series.timestamps, *cells))


def read_panel_csv(path: str | Path, freq: str) -> tuple[Panel, dict[str, dict[str, np.ndarray]]]:
    """A file of `write_panel_csv` back: the panel and its extra columns per item."""
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    if header[0] != ITEM:
        return _read_single(path, header, rows, freq)
    names = header[3:]
    stamps: dict[str, date] = {}
    grouped: dict[str, list[list[str]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    series, extra = {}, {}
    for item, part in grouped.items():
        days = [stamps.get(r[1]) or stamps.setdefault(r[1], date.fromisoformat(r[1])) for r in part]
        numbers = np.array([r[2:] for r in part], dtype=float)
        series[item] = Series(days, numbers[:, 0], freq)
        extra[item] = {n: numbers[:, 1 + i] for i, n in enumerate(names)}
    return Panel(series, freq, single=False), extra


def _read_single(path, header: list[str], rows: list[list[str]], freq: str):
    numbers = np.array([r[1:] for r in rows], dtype=float)
    series = Series([date.fromisoformat(r[0]) for r in rows], numbers[:, 0], freq)
    return Panel({"": series}, freq, single=True), {"": {n: numbers[:, 1 + i] for i, n in enumerate(header[2:])}}
