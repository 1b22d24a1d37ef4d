"""runs list|show and tuning show on a work folder: a uniform state for every kind of record."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from pipeline_code.pipeline import runs
from pipeline_code.pipeline.runs import QUEUE_FILE, local_runs
from tests.ops.conftest import fast_data


def record(workdir: Path, run_id: str, document: dict | None, *, run_document: bool = True) -> Path:
    run_dir = workdir / "runs" / run_id
    (run_dir / "input").mkdir(parents=True)
    if run_document:
        (run_dir / "input" / "settings.json").write_text("{}")
    if document is not None:
        (run_dir / "run.json").write_text(json.dumps(document))
    return run_dir


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def records(tmp_path) -> Path:
    """One record of each kind, including one written before ``state`` existed."""
    w = tmp_path / "work"
    base = {"data": "sales.csv", "metrics": {"mase": 0.9, "coverage_80": 0.8}, "spec": "harmonic_arima(k=2)"}
    record(w, "20260101T000000000000Z-aaaaaaaa", {**base, "state": "promoted", "started_at":
           "2026-01-01T00:00:00+00:00", "duration_s": 12.5, "reason": "beats the approved model", "version": "v0001"})
    legacy = record(w, "20260102T000000000000Z-bbbbbbbb", {"status": "Succeeded", "promoted": False,
                    "version": "v0002", "timings": {"tune": 3.0, "train": 1.5}})
    (legacy / "reports" / "evaluation").mkdir(parents=True)
    (legacy / "reports" / "evaluation" / "evaluation.json").write_text(json.dumps({
        "gate": {"passed": False, "reason": "not 1% better"}, "challenger": {"mase": 1.1},
        "spec": {"family": "theta", "model": "optimized"}}))
    record(w, "20260103T000000000000Z-cccccccc", {"state": "failed", "stage": "tune", "reason": "out of memory",
                                                  "data": "sales.csv", "started_at": "2026-01-03T00:00:00Z"})
    record(w, "20260104T000000000000Z-dddddddd", {"state": "refused", "stage": "preprocess",
                                                  "reason": "[gap] line 7", "data": "bad.csv"})
    record(w, "20260105T000000000000Z-eeeeeeee", {"state": "running", "pid": dead_pid(), "data": "killed.csv"})
    record(w, "20260106T000000000000Z-ffffffff", {"state": "running", "pid": os.getpid(), "data": "now.csv"})
    (w / QUEUE_FILE).write_text(json.dumps({"queued": [
        {"name": "next.csv", "path": "/x/next.csv", "since": "2026-01-07T00:00:00+00:00"}]}))
    return w


def test_states_newest_first(records):
    found = local_runs(records)
    assert [(r.state, r.data) for r in found] == [
        ("queued", "next.csv"), ("running", "now.csv"), ("failed", "killed.csv"), ("refused", "bad.csv"),
        ("failed", "sales.csv"), ("gated", None), ("promoted", "sales.csv")]
    assert "interrupted" in found[2].reason
    assert found[4].reason == "tune: out of memory"
    gated = found[5]
    assert (gated.reason, gated.metrics, gated.spec, gated.duration_s) == (
        "not 1% better", {"mase": 1.1}, "theta(model=optimized)", 4.5)


def test_list_prints_one_line_per_run(records, capsys):
    assert main(["runs", "list", "--workdir", str(records)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["STATE", "RUN", "DATA", "STARTED"]
    assert [line.split()[0] for line in lines[1:]] == [
        "queued", "running", "failed", "refused", "failed", "gated", "promoted"]
    promoted = lines[-1]
    assert "sales.csv" in promoted and "12.5s" in promoted and "MASE 0.900" in promoted
    assert "beats the approved model" in promoted


def test_show_by_prefix_and_unknown_runs(records, capsys):
    assert main(["runs", "show", "20260102", "--workdir", str(records)]) == 0
    out = capsys.readouterr().out
    assert "run 20260102T000000000000Z-bbbbbbbb: gated" in out and "tune" in out and "evaluation.json" in out
    for bad in ("2026", "nope", "../runs"):
        assert main(["runs", "show", bad, "--workdir", str(records)]) == 2
        err = capsys.readouterr().err
        assert "runs list --workdir" in err


def test_records_are_replaced_whole(tmp_path):
    run_dir = tmp_path / "r"
    started = runs.start_record(run_dir, "r1", "a.csv")
    assert json.loads((run_dir / "run.json").read_text())["state"] == "running"
    runs.finish_record(run_dir, started, "gated", reason="held")
    document = json.loads((run_dir / "run.json").read_text())
    assert document["state"] == "gated" and document["duration_s"] >= 0 and "pid" not in document
    assert [p.name for p in run_dir.iterdir()] == ["run.json"]


def test_a_real_run_and_its_tuning(one_run, tmp_path, capsys):
    assert main(["runs", "list", "--workdir", str(one_run)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[0] == "promoted" and "gasoline.csv" in line
    run_id = line.split()[1]
    detail = runs.local_run(one_run, run_id)
    assert set(detail.timings) >= {"preprocess", "tune", "train", "evaluate", "register"}
    assert detail.evaluation["gate"]["passed"] is True
    assert any(name.startswith("plot") for name in detail.links)
    plot = tmp_path / "tuning.png"
    assert main(["tuning", "show", run_id[:10], "--workdir", str(one_run), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out.splitlines()
    objectives = [float(line.split()[2]) for line in table[1:] if line.split()[0].isdigit() and line.split()[2] != "-"]
    assert objectives == sorted(objectives) and len(objectives) >= 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tuning_of_a_run_without_a_report(records, capsys):
    assert main(["tuning", "show", "20260104", "--workdir", str(records)]) == 2
    assert "has no tuning report" in capsys.readouterr().err


def test_a_refused_upload_gets_a_refused_record(tmp_path, capsys):
    data = fast_data(tmp_path / "data", name="badval")
    lines = data.read_text().splitlines()
    lines[700] = lines[700].split(",")[0] + ",abc"
    data.write_text("\n".join(lines) + "\n")
    workdir = tmp_path / "work"
    assert main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir), "--quiet", "--no-serve"]) == 2
    [run] = local_runs(workdir)
    assert (run.state, run.data) == ("refused", "badval.csv")
    assert "(line 701) 'abc' is not a number" in run.reason


def test_free_text_of_a_record_is_one_escaped_line(tmp_path, capsys):
    """A reason cannot add rows or drive the terminal; the list cuts it, `runs show` keeps it whole."""
    w = tmp_path / "work"
    reason = "fix\n* promoted 2026 (fake row)\x1b[31mRED\u202e" + "x" * 5000
    record(w, "20260101T000000000000Z-aaaaaaaa", {"state": "failed", "reason": reason, "data": "a\nb.csv"})
    assert main(["runs", "list", "--workdir", str(w)]) == 0
    out = capsys.readouterr().out
    [row] = out.splitlines()[1:]
    assert "\x1b" not in out and "\u202e" not in out and "a⏎b.csv" in row
    assert "fix⏎* promoted 2026 (fake row)\\x1b[31mRED\\u202e" in row and len(row) < 300 and row.endswith("…")
    assert main(["runs", "show", "2026", "--workdir", str(w)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mRED\\u202e" + "x" * 5000 in out


@pytest.mark.parametrize("text, problem", [
    ('{"state": "gated", "timings": {"tune": "fast"}}', "run.json: timings: 'tune' is 'fast', not a number of seconds"),
    ('{"state": "gated", "duration_s": Infinity}', "run.json: duration_s is inf, not a number of seconds"),
    ('{"state": "running", "pid": "1"}', "run.json: pid is '1', not a process id"),
    ('{"state": "bogus"}', "run.json: state 'bogus' is not one of queued, running"),
    ('[]', "run.json: is not a JSON object (a list)"),
    ('{"state": "gated", "reason": "a\tb', "run.json: is not valid JSON: Invalid control character"),
])
def test_a_damaged_record_lists_as_unreadable_and_shows_as_one_line(records, capsys, text, problem):
    run_dir = records / "runs" / "20260103T000000000000Z-cccccccc"
    (run_dir / "run.json").write_text(text)
    assert main(["runs", "list", "--workdir", str(records)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        "queued", "running", "failed", "refused", "unreadable", "gated", "promoted"]
    assert problem in lines[5]
    for command in ("runs", "tuning"):
        assert main([command, "show", "20260103", "--workdir", str(records)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run_dir}/{problem}") and err.count("\n") == 1


@pytest.mark.parametrize("text, problem", [
    ("[]", "is not a JSON object (a list)"),
    ('{"candidates": [{"cv_mase": 1.0, "hyperparameters": [1, 2]}]}',
     "candidate 1: hyperparameters is a list, not an object"),
    ('{"candidates": {"a": 1}}', "candidates is a dict, not a list"),
    ('{"candidates": [null]}', "candidate 1 is a NoneType, not an object"),
    ('{"candidates": [{"cv_mase": 1.0, "hyperparameters": {"k": "a\tb"}}]', "is not valid JSON: Invalid control"),
])
def test_tuning_show_of_a_damaged_report_names_it(records, capsys, text, problem):
    report = records / "runs" / "20260101T000000000000Z-aaaaaaaa" / "reports" / "tuning.json"
    report.parent.mkdir(parents=True)
    report.write_text(text)
    assert main(["tuning", "show", "20260101", "--workdir", str(records), "--plot", str(records / "t.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {report}: {problem}") and err.count("\n") == 1
    assert not (records / "t.png").exists()


def test_tuning_show_creates_no_folder_for_its_plot(records, tmp_path, capsys):
    plot = tmp_path / "x" / "y" / "z.png"
    with pytest.raises(SystemExit) as info:
        main(["tuning", "show", "20260101", "--workdir", str(records), "--plot", str(plot)])
    assert info.value.code == 2
    assert f"the folder {plot.parent} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_run_without_a_record_or_with_another_process_is_not_running(records):
    """No run.json: failed, "no record"; a running record whose pid now names another process (pid 1,
    started long before): interrupted. The runner's own record, with its process identity, runs."""
    identity = runs.process_identity(os.getpid())
    if identity is None:
        pytest.skip("no /proc: process identities are Linux only")
    record(records, "20260107T000000000000Z-gggggggg", None)
    record(records, "20260108T000000000000Z-hhhhhhhh", {"state": "running", "pid": 1, "process": identity,
                                                        "host": socket.gethostname(), "data": "reused.csv"})
    runs.start_record(records / "runs" / "20260109T000000000000Z-iiiiiiii", "i", "mine.csv")
    found = {r.run_id[:8]: r for r in local_runs(records)}
    assert (found["20260107"].state, found["20260107"].reason) == ("failed", "no record: run.json is missing")
    assert found["20260108"].state == "failed" and "interrupted" in found["20260108"].reason
    assert found["20260109"].state == "running"
    assert json.loads((records / "runs" / "20260109T000000000000Z-iiiiiiii" / "run.json").read_text())[
        "process"] == identity
