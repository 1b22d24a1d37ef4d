"""A light first look at an upload (standard library only): how many rows, and its first timestamps.

The run's settings are resolved from it before any job starts (the frequency is inferred from the
timestamps, the CV window and evaluation origins from the length; `engine.settings.resolve`), by the
local runner and by the starter Lambda alike. It judges nothing: the input contract
(`engine/dataset.py`) validates the whole file in the processing stage.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

# Timestamps read for inference: enough to see a calendar, few enough to stay instant.
SAMPLE_ROWS = 400


@dataclass(frozen=True)
class Profile:
    observations: int
    timestamps: list[date]


def profile_csv(raw: bytes) -> Profile:
    """Rows after the header, and the leading timestamps that parse as ISO dates (of the first item)."""
    observations = sum(1 for line in raw.splitlines() if line.strip()) - 1
    head = raw[: 200 * (SAMPLE_ROWS + 1)].decode("utf-8", errors="replace").splitlines()[: SAMPLE_ROWS + 1]
    lines = [line for line in head if line.strip()]
    if not lines:
        return Profile(0, [])
    try:
        rows = csv.reader(io.StringIO("\n".join(lines)))
        header = [cell.strip().lower() for cell in next(rows)]
        column = header.index("timestamp")
    except (csv.Error, ValueError, StopIteration):
        return Profile(observations, [])
    item = header.index("item_id") if "item_id" in header else None
    first_item, stamps = None, []
    try:
        for row in rows:
            if len(row) <= column or (item is not None and len(row) <= item):
                break
            if item is not None:
                first_item = row[item] if first_item is None else first_item
                if row[item] != first_item:
                    continue
            stamps.append(date.fromisoformat(row[column].strip()[:10]))
    except (csv.Error, ValueError):
        pass  # the input contract names the line; inference uses what parsed
    return Profile(observations, stamps)
