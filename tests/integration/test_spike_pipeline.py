"""`pipeline run` on a weekly or monthly series constant but for a spike: refused in processing by the
``constant`` rule (it failed late, in tune or evaluate, with "CV MASE undefined" or "0 CV splits
calibrate the intervals"), the run recorded as refused, nothing registered."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from pipeline_code.pipeline.registry import LocalRegistry

WEEKS, MONTHS = 400, 200


def write_csv(path: Path, stamps: list[date], spikes: set[int]) -> Path:
    lines = ["timestamp,value"] + [f"{d.isoformat()},{250.0 if i in spikes else 100.0}" for i, d in enumerate(stamps)]
    path.write_text("\n".join(lines) + "\n")
    return path


def weekly(n: int) -> list[date]:
    return [date(2015, 1, 2) + timedelta(weeks=i) for i in range(n)]  # W-FRI


def monthly(n: int) -> list[date]:
    return [date(2000 + i // 12, i % 12 + 1, 1) for i in range(n)]


@pytest.mark.parametrize(("stamps", "spikes", "expected"), [
    (weekly(WEEKS), {100}, "346 of 348 values repeat the one 52 periods before exactly"),
    (weekly(WEEKS), {WEEKS - 5}, "2022-07-29: 250 after 100"),  # inside the CV windows
    (weekly(WEEKS), {100, 250}, "344 of 348 values repeat"),
    (monthly(MONTHS), {50}, "186 of 188 values repeat the one 12 periods before exactly"),
], ids=["weekly-early", "weekly-late", "weekly-two", "monthly"])
def test_a_constant_series_with_spikes_is_refused_in_processing(tmp_path, capsys, stamps, spikes, expected):
    data = write_csv(tmp_path / "spiked.csv", stamps, spikes)
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--quiet", "--no-serve",
                 "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: preprocess failed: [constant] " in err and expected in err
    assert "but for outliers" in err and "Traceback" not in err and "nothing was registered" in err
    (record,) = workdir.glob("runs/*/run.json")
    assert json.loads(record.read_text())["state"] == "refused"
    assert LocalRegistry(workdir / "registry").versions() == []
