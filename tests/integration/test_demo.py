"""The main job as a user runs it: `forecast-mlops demo`, ending with a forecast served on localhost."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def test_demo_ends_with_a_served_forecast(tmp_path):
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline_code.cli.main", "demo", "--once", "--quiet", "--cv-step", "4",
         "--settings", str(Path(__file__).with_name("fast.settings.json")),
         "--workdir", str(workdir), "--port", str(free_port())],
        capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "registered v0001 as Approved" in out
    assert "2017-01-27" in out and "2017-07-21" in out  # 26 weeks after the last observation
    assert "90% interval" in out
    assert (workdir / "forecast.png").stat().st_size > 10_000
    keys = workdir / "api-keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_a_busy_port_is_a_clear_error_not_a_hang(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pipeline_code.cli.main", "demo", "--once", "--quiet", "--cv-step", "8",
             "--settings", str(Path(__file__).with_name("fast.settings.json")),
             "--workdir", str(tmp_path / "demo"), "--port", str(port)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
        )
    assert result.returncode == 2
    assert f"is port {port} free?" in result.stderr and "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "demo" / "registry").exists()  # refused before the pipeline ran
