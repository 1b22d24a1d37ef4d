"""Shared fixtures: the bundled series, small synthetic series and fast settings."""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.engine.dataset import Series, load_series
from pipeline_code.engine.settings import Settings
from tests.infra import synth

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "pipeline_code" / "data" / "us_gasoline.csv"

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("MPLBACKEND", "Agg")

# The files that take longest (`pytest --durations`: the local end-to-end runs, the emulated cloud,
# the state machine, the parallel search) run first: `--dist loadfile` hands whole files to the
# workers in the order collected, so a long file collected last would leave one worker running alone.
LONGEST_FIRST = ("tests/integration/test_local_pipeline.py", "tests/cloud/", "tests/integration/test_state_machine.py",
                 "tests/engine/test_tuning.py", "tests/serving/test_hostile_clients.py")


def pytest_collection_modifyitems(config, items) -> None:
    rank = {prefix: k for k, prefix in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: next((k for prefix, k in rank.items() if item.nodeid.startswith(prefix)),
                                     len(rank)))


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders_under_pytests_base(tmp_path_factory) -> None:
    """Folders the helpers make with `tempfile` (emulated clouds, cdk outputs, local runs) land in
    pytest's base temporary folder, which pytest prunes (it keeps the last three runs'); what the test
    processes of one run share (tests/infra/synth.py's assemblies) lands in the folder above theirs."""
    base = tmp_path_factory.getbasetemp()
    os.environ[synth.SHARED_ENV] = str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))


@pytest.fixture(scope="session")
def gasoline() -> Series:
    return load_series(BUNDLED, freq="W-FRI")


def weekly_series(values: np.ndarray, start: date = date(2000, 1, 7)) -> Series:
    return Series([start + timedelta(days=7 * i) for i in range(values.size)], np.asarray(values), "W-FRI")


def write_csv(path: Path, timestamps, values) -> Path:
    lines = ["timestamp,value"] + [f"{t.isoformat()},{v:.6g}" for t, v in zip(timestamps, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def small_settings() -> Settings:
    """Settings for quick runs on the bundled data: a smaller window and search space (frozen: shared)."""
    base = Settings()
    return replace(
        base,
        cv=replace(base.cv, window=260, step=4),
        # the families that fit in well under a second per split (ETS and ARIMA+Fourier take seconds)
        search=replace(base.search, fourier_k=(2, 6), use_counterfactual_data=(1,),
                       families=("harmonic_arima", "seasonal_naive", "theta", "mstl")),
        gate=replace(base.gate, eval_origins=8),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
