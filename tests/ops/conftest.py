"""A fast local pipeline run (a small search on the bundled data) shared by the operations tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from tests.conftest import BUNDLED

# A search small enough for seconds per run on the bundled series (two families, one Fourier order).
FAST_SETTINGS = {
    "cv": {"window": 260, "step": 8},
    "search": {"fourier_k": [2], "use_counterfactual_data": [1], "detrend": [0],
               "families": ["harmonic_arima", "seasonal_naive"], "selection_splits": 10},
    "gate": {"eval_origins": 8},
}


def fast_data(folder: Path, name: str = "gasoline", rows: int = 1335, *, fast: bool = True) -> Path:
    """The bundled series' first ``rows`` weeks as ``<name>.csv`` with the fast settings beside it
    (``fast=False``: none, so the run searches every default family and lasts a minute or so)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = BUNDLED.read_text().splitlines()[: rows + 1]
    if fast:
        (folder / f"{name}.settings.json").write_text(json.dumps(FAST_SETTINGS))
    data = folder / f"{name}.csv"
    data.write_text("\n".join(lines) + "\n")
    return data


@pytest.fixture(scope="session")
def one_run(tmp_path_factory) -> Path:
    """A work folder after one promoted run (v0001 approved); copy it before changing it."""
    root = tmp_path_factory.mktemp("ops")
    workdir = root / "work"
    data = fast_data(root / "data")
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--quiet", "--no-serve",
                 "--jobs", "1"]) == 0
    return workdir


@pytest.fixture
def workdir(one_run, tmp_path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(one_run, copy)
    return copy
