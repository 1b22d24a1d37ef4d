"""forecast-mlops watch: what is ready, queued, superseded or a duplicate (unit), and the real command:
half-written files wait, a dataset's newest file supersedes the queued one, a duplicate starts nothing,
Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the children and leave nothing half-written; bad arguments, an
unwritable work folder and a run refused before it started are reported as such."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from pipeline_code.cli.watch import CHILD_STOP_SECONDS, _Run, settle_seconds
from pipeline_code.pipeline.runs import QUEUE_FILE, local_runs
from pipeline_code.pipeline.watch_queue import WatchQueue, content_hash
from pipeline_code.serving.cli import check_port_free
from tests.ops.conftest import FAST_SETTINGS, fast_data

WAIT = 300  # seconds: a generous bound on a loaded machine, not a measurement


def settled(queue: WatchQueue) -> tuple[list[str], list[str]]:
    time.sleep(queue.settle + 0.05)
    return queue.settle_pending()


def test_refused_files_are_reported_and_skipped(tmp_path):
    queue = WatchQueue(tmp_path / "work", settle=0.0)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sales.settings.json").write_text("{}")
    assert "not a CSV file" in queue.changed(tmp_path / "notes.txt")
    assert "settings file without data yet" in queue.changed(tmp_path / "sales.settings.json")
    assert queue.changed(tmp_path / ".hidden.csv") is None
    assert settled(queue) == ([], [])


def test_a_file_open_for_writing_waits_until_closed(tmp_path):
    queue = WatchQueue(tmp_path / "work", settle=0.05)
    path = tmp_path / "sales.csv"
    with path.open("w") as handle:
        handle.write("timestamp,value\n")
        handle.flush()
        assert queue.changed(path) is None
        messages, queued = settled(queue)
        assert queued == [] and f"open by process {os.getpid()}" in messages[0]
        assert settled(queue) == ([], [])  # said once
    assert settled(queue) == ([], ["sales.csv"])


def test_a_growing_file_waits_for_the_settle_time(tmp_path):
    queue = WatchQueue(tmp_path / "work", settle=0.3)
    path = tmp_path / "sales.csv"
    path.write_text("a")
    queue.changed(path)
    path.write_text("ab")  # changed before it settled: the clock starts again
    assert queue.settle_pending() == ([], [])
    assert settled(queue) == ([], ["sales.csv"])


def test_newest_file_of_a_dataset_supersedes_the_queued_one(tmp_path):
    work = tmp_path / "work"
    queue = WatchQueue(work, settle=0.0)
    (tmp_path / "a").mkdir()
    older, newer, other = tmp_path / "a" / "sales.csv", tmp_path / "sales.csv", tmp_path / "stock.csv"
    for path in (older, other):
        path.write_text(path.name)
        queue.changed(path)
    settled(queue)
    newer.write_text("newer")
    queue.changed(newer)
    messages, _ = settled(queue)
    assert messages == ["sales.csv supersedes sales.csv in the queue"]
    assert [e["path"] for e in json.loads((work / QUEUE_FILE).read_text())["queued"]] == [str(newer), str(other)]
    assert queue.next_file()[0] == newer
    queue.close()
    assert not (work / QUEUE_FILE).exists()


def test_duplicates_by_content_and_settings(tmp_path):
    work = tmp_path / "work"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("same")
    b.write_text("same")
    assert content_hash(a) == content_hash(b)
    (tmp_path / "b.settings.json").write_text('{"cv": {"step": 2}}')
    assert content_hash(a) != content_hash(b)  # other settings: another run
    queue = WatchQueue(work)
    queue.done(content_hash(a))
    assert WatchQueue(work).is_duplicate(content_hash(a))  # remembered across restarts


def test_bad_folders(tmp_path, capsys):
    assert main(["watch", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["watch", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.mkdir(mode=0)
        assert main(["watch", str(locked)]) == 2
        assert "cannot be read" in capsys.readouterr().err


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT handled by default in the child: a shell starts background jobs (`make test &`) with SIGINT
    ignored, children inherit that, and Python then raises no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Watch:
    """``forecast-mlops watch`` as a real process; its output collected line by line."""

    def __init__(self, folder: Path, workdir: Path, *options: str,
                 preexec: Callable[[], object] = _ctrl_c_as_in_a_terminal) -> None:
        self.workdir = workdir
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_code.cli.main", "watch", str(folder), "--workdir", str(workdir),
             "--settle", "0.3", "--jobs", "1", "--quiet", *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for(lambda: any("watching" in line for line in self.lines), "the banner")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert self.process.poll() is None, f"watch exited while waiting for {what}:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {what} within {WAIT}s:\n" + "\n".join(self.lines)
            time.sleep(0.1)

    def states(self) -> list[tuple[str, str | None]]:
        return [(r.state, r.data) for r in local_runs(self.workdir) if r.state != "queued"]

    def stop(self, how: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
        code = self.process.wait(timeout=120)
        self.reader.join(timeout=10)  # its last lines (children still holding the pipe: not all of them)
        return code


def raw_copies(workdir: Path, name: str) -> list[str]:
    return [p.read_text() for p in sorted((workdir / "raw").glob(f"*-{name}"))]


@pytest.mark.slow
def test_watch_runs_settled_files_queues_supersedes_and_skips_duplicates(tmp_path):
    folder, workdir, staging = tmp_path / "drop", tmp_path / "work", tmp_path / "staging"
    folder.mkdir()
    watch = Watch(folder, workdir)
    try:
        full = fast_data(staging).read_text()
        (folder / "gasoline.settings.json").write_text(json.dumps(FAST_SETTINGS))
        with (folder / "gasoline.csv").open("w") as handle:  # written in two parts, held open between
            handle.write(full[: len(full) // 2])
            handle.flush()
            watch.wait_for(lambda: any("still being written" in line for line in watch.lines), "a wait")
            handle.write(full[len(full) // 2:])
        watch.wait_for(lambda: ("running", "gasoline.csv") in watch.states(), "the first run")
        # During the run: two versions of another dataset; only the newest runs.
        (folder / "other.settings.json").write_text(json.dumps(FAST_SETTINGS))
        lines = full.splitlines()
        (folder / "other.csv").write_text("\n".join(lines[:-10]) + "\n")
        watch.wait_for(lambda: any("other.csv is complete; queued" in line for line in watch.lines), "queued")
        (folder / "other.csv").write_text("\n".join(lines[:-5]) + "\n")
        watch.wait_for(lambda: len([s for s in watch.states() if s[1] == "other.csv" and s[0] != "running"]) == 1,
                       "the second run")
        # The same content and settings under another name start nothing.
        (folder / "copy.settings.json").write_text(json.dumps(FAST_SETTINGS))
        (folder / "copy.csv").write_text(full)
        watch.wait_for(lambda: any("copy.csv: the same content" in line for line in watch.lines), "the duplicate")
    finally:
        assert watch.stop() == 0
    assert raw_copies(workdir, "gasoline.csv") == [full]  # never the half-written file
    assert raw_copies(workdir, "other.csv") == ["\n".join(lines[:-5]) + "\n"]
    assert sorted(watch.states()) == [("gated", "other.csv"), ("promoted", "gasoline.csv")] or sorted(
        watch.states()) == [("promoted", "gasoline.csv"), ("promoted", "other.csv")]
    assert not raw_copies(workdir, "copy.csv")


@pytest.mark.slow
def test_ctrl_c_during_a_run_leaves_nothing_half_written(tmp_path):
    folder, workdir = tmp_path / "drop", tmp_path / "work"
    folder.mkdir()
    watch = Watch(folder, workdir)
    # The default search runs for about a minute, so the interrupt surely lands while it runs, even on
    # a busy machine (the fast search can end between the poll that sees it running and the signal).
    fast_data(folder, fast=False)
    watch.wait_for(lambda: ("running", "gasoline.csv") in watch.states(), "the run")
    assert watch.stop() == 0
    assert_stopped_cleanly(workdir)


def assert_stopped_cleanly(workdir: Path) -> None:
    """The run interrupted and recorded as such, nothing queued, nothing half-written, nothing approved."""
    [(state, data)] = [(r.state, r.data) for r in local_runs(workdir)]
    assert (state, data) == ("failed", "gasoline.csv")
    assert "interrupted" in local_runs(workdir)[0].reason
    leftovers = [p for p in workdir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".upload-", ".v"))]
    assert leftovers == []
    assert not (workdir / QUEUE_FILE).exists()
    assert not (workdir / "registry" / "approved.json").exists()


def children(pid: int) -> list[int]:
    """Ids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:  # gone meanwhile
            pass
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children found through /proc")
@pytest.mark.parametrize("how, preexec", [
    (signal.SIGTERM, lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)),  # a background job: `watch &`
    (signal.SIGHUP, _ctrl_c_as_in_a_terminal),
], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_children_as_ctrl_c_does(tmp_path, how, preexec):
    folder, workdir = tmp_path / "drop", tmp_path / "work"
    folder.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watch = Watch(folder, workdir, "--serve", "--port", str(port), preexec=preexec)
    fast_data(folder, fast=False)  # a minute-long search, as in the Ctrl-C test
    watch.wait_for(lambda: ("running", "gasoline.csv") in watch.states(), "the run")
    fast_data(folder, "other")
    watch.wait_for(lambda: any("other.csv is complete; queued" in line for line in watch.lines), "queued")
    server_and_run = children(watch.process.pid)
    try:
        assert len(server_and_run) == 2
        signalled = time.monotonic()
        assert watch.stop(how) == 0
        assert [pid for pid in server_and_run if alive(pid)] == []
        assert time.monotonic() - signalled < CHILD_STOP_SECONDS  # the run stopped on SIGINT, not killed
    finally:  # without the fix: the orphans
        for pid in filter(alive, server_and_run):
            os.kill(pid, signal.SIGKILL)
    assert f"[watch] stopping ({signal.Signals(how).name})" in watch.lines
    assert any(line.startswith("[watch] gasoline.csv: run ended (exit") for line in watch.lines)
    assert_stopped_cleanly(workdir)
    check_port_free(port)


def test_settle_out_of_range_is_refused(tmp_path, capsys):
    # A missing folder: a bad --settle is refused first, as argparse refuses it (and nothing is watched).
    for value in ("-5", "0", "nan", "inf", "3601"):
        with pytest.raises(SystemExit) as info:
            main(["watch", str(tmp_path / "missing"), "--settle", value])
        assert info.value.code == 2
        assert "argument --settle: must be seconds with 0 < S <= 3600" in capsys.readouterr().err
    assert settle_seconds("3600") == 3600.0 and settle_seconds("0.3") == 0.3


def test_a_work_folder_that_cannot_be_written_is_refused_at_start(tmp_path):
    folder, workdir = tmp_path / "drop", tmp_path / "work"
    folder.mkdir()
    workdir.mkdir()
    if os.geteuid() == 0:  # root writes into a 0555 folder: a folder takes the queue file's place instead
        (workdir / QUEUE_FILE).mkdir()
    else:
        workdir.chmod(0o555)
    try:  # without the check the watch starts and waits for a file: the timeout fails the test
        done = subprocess.run([sys.executable, "-m", "pipeline_code.cli.main", "watch", str(folder),
                               "--workdir", str(workdir)], capture_output=True, text=True, timeout=60)
    finally:
        workdir.chmod(0o755)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: work folder {workdir} cannot be written (")
    assert "watching" not in done.stdout


def test_a_run_refused_before_it_started_shows_no_earlier_record(workdir, tmp_path, capsys):
    assert [(r.state, r.data) for r in local_runs(workdir)] == [("promoted", "gasoline.csv")]
    data = fast_data(tmp_path / "drop", rows=1300)  # new content, same name
    data.with_name("gasoline.settings.json").write_text('{"cv": {"window": "long"}}')
    args = argparse.Namespace(jobs=1, quiet=True)
    run = _Run(data, content_hash(data), workdir, args, WatchQueue(workdir))
    run.process.wait(timeout=WAIT)
    assert run.finished()
    out = capsys.readouterr().out
    assert "[watch] gasoline.csv: run ended (exit 2); no run record (refused before it started" in out
    assert "promoted" not in out


def test_a_queued_file_that_vanished_is_named(tmp_path):
    queue = WatchQueue(tmp_path / "work", settle=0.0)
    path = tmp_path / "sales.csv"
    path.write_text("x")
    queue.changed(path)
    settled(queue)
    path.unlink()
    with pytest.raises(FileNotFoundError) as err:
        queue.next_file()
    assert err.value.filename == str(path)
    assert queue.next_file() is None
    assert queue.changed(path) is None  # an event for a file already gone tracks nothing
