"""``forecast-mlops watch DIR``: the local twin of the S3 trigger.

``watchfiles`` (the Rust ``notify`` crate: inotify, FSEvents, ReadDirectoryChangesW) reports changes in
the folder; pipeline/watch_queue.py decides what is ready, queued, superseded or a duplicate. One run at
a time, each a ``forecast-mlops pipeline run`` child process whose output shows in the terminal. With
``--serve`` a ``forecast-mlops serve`` child serves the registry's approved model and reloads it when a
version is approved (by a run or by ``models approve|rollback``); without it, a separate ``serve --model
<workdir>/registry`` does the same.

Ctrl-C, SIGTERM or SIGHUP: the running child gets SIGINT and finishes its record as ``failed``
("interrupted"), the server stops, the queue file is removed; every file the watch and the runner write is
replaced atomically, so nothing is left half-written.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pipeline_code.cli import views
from pipeline_code.pipeline.runs import QUEUED, local_runs
from pipeline_code.pipeline.watch_queue import WatchQueue
from pipeline_code.serving.cli import check_port_free

WORKDIR_NAME = ".forecast-mlops"
TICK_MS = 200  # how often the loop wakes without events, to settle files and check the run
CHILD_STOP_SECONDS = 30.0
SETTLE_MAX = 3600.0  # seconds: a file unchanged for an hour is complete; a longer --settle is a typo


def settle_seconds(value: str | float) -> float:
    """``--settle``: seconds, 0 < S <= SETTLE_MAX (not nan, not inf); an argparse type."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds <= SETTLE_MAX:  # nan fails every comparison
        raise argparse.ArgumentTypeError(f"must be seconds with 0 < S <= {SETTLE_MAX:g}, not {value!r}")
    return seconds


def check_folder(folder: Path) -> Path:
    """The folder to watch, or a clear error: missing, not a folder, not readable."""
    if not folder.exists():
        raise FileNotFoundError(f"watch folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"watch folder {folder} is not a folder")
    try:
        os.listdir(folder)
    except PermissionError:
        raise PermissionError(f"watch folder {folder} cannot be read (permission denied)") from None
    return folder


def check_workdir(workdir: Path, queue: WatchQueue) -> None:
    """A clear error at start, naming the work folder, when it cannot be created or written."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        queue.open()
    except OSError as err:
        raise OSError(f"work folder {workdir} cannot be written ({err.strerror or err}); choose another"
                      " with --workdir") from None


def say(message: str) -> None:
    _show(f"[watch] {message}")


def _show(text: str) -> None:
    """Print; a terminal gone (SIGHUP) must not keep the watch from stopping its children."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def watch_folder(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    from watchfiles import Change, watch

    folder = check_folder(Path(args.folder))
    if args.serve:
        check_port_free(args.port)  # before announcing a server that could not start
    workdir = Path(args.workdir) if args.workdir else folder / WORKDIR_NAME
    queue = WatchQueue(workdir, settle=args.settle)  # checked by its argparse type, settle_seconds
    check_workdir(workdir, queue)
    server: subprocess.Popen | None = None
    run: _Run | None = None
    started = False
    signals = _StopSignals()
    try:
        signals.install()
        if args.serve:
            server = _serve(workdir, args.port)
        for changes in watch(folder, recursive=False, step=50, rust_timeout=TICK_MS, yield_on_timeout=True,
                             stop_event=stop, raise_interrupt=True):
            if not started:  # the watcher is live now: what arrived before it is in the folder
                started = True
                say(f"watching {folder} (work folder {workdir}); drop <name>.csv, optionally with"
                    " <name>.settings.json beside it. Ctrl-C stops.")
                for path in sorted(folder.iterdir()):
                    _report(queue.changed(path))
            for change, name in changes:
                if change != Change.deleted:
                    _report(queue.changed(Path(name)))
            messages, queued = queue.settle_pending()
            for message in messages:
                say(message)
            for name in queued:
                say(f"{name} is complete; queued" + (" (a run is going)" if run else ""))
            if run and run.finished():
                run = None
            while run is None and queue.queue:
                try:
                    path, digest = queue.next_file()
                except OSError as err:
                    say(f"skipped: {err.filename}: {err.strerror}")
                    continue
                if queue.is_duplicate(digest):
                    say(f"{path.name}: the same content (and settings) already ran; nothing started")
                    continue
                run = _Run(path, digest, workdir, args, queue)
    except KeyboardInterrupt:
        say(f"stopping ({signals.received or 'Ctrl-C'})")
    finally:
        try:
            if run:
                run.interrupt()
                run.finished()  # its outcome, and a success that ended just now is remembered as seen
        finally:
            queue.close()
            if server:
                _stop(server)
            signals.restore()
    return 0


class _StopSignals:
    """SIGTERM and SIGHUP (a service manager's stop, a closed terminal) take Ctrl-C's path: a
    KeyboardInterrupt in the main thread; once one arrived, more are ignored while the watch stops. A
    signal ignored at start (nohup, a background job's SIGINT) stays ignored, through a handler that does
    nothing: exec resets handlers, not SIG_IGN, so the children still stop on the watch's SIGINT."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # handlers: main thread only
            return
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows
            number = getattr(signal, name, None)
            if number is None:
                continue
            ignored = signal.getsignal(number) == signal.SIG_IGN
            if ignored or number != signal.SIGINT:  # Python's own SIGINT handler already raises
                self.previous[number] = signal.signal(number, _ignore if ignored else self._interrupt)

    def _interrupt(self, number: int, frame) -> None:
        self.received = signal.Signals(number).name
        for other in self.previous:
            signal.signal(other, _ignore)
        raise KeyboardInterrupt

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def _ignore(number: int, frame) -> None:
    pass


class _Run:
    """One ``pipeline run`` child process."""

    def __init__(self, path: Path, digest: str, workdir: Path, args: argparse.Namespace, queue: WatchQueue):
        self.path, self.digest, self.workdir, self.queue = path, digest, workdir, queue
        command = [sys.executable, "-m", "pipeline_code.cli.main", "pipeline", "run", "--data", str(path),
                   "--workdir", str(workdir), "--no-serve"]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        if args.quiet:
            command.append("--quiet")
        self.earlier = {r.run_id for r in local_runs(workdir)}  # its record is the one not among these
        say(f"{path.name}: starting a run")
        # Its own process group: a Ctrl-C reaches it through the watch, which waits for its record.
        self.process = subprocess.Popen(command, start_new_session=True)

    def finished(self) -> bool:
        code = self.process.poll()
        if code is None:
            return False
        if code == 0:
            self.queue.done(self.digest)
        record = next((r for r in local_runs(self.workdir) if r.state != QUEUED
                       and r.run_id not in self.earlier and r.data == self.path.name), None)
        say(f"{self.path.name}: run ended (exit {code})"
            + ("" if record else "; no run record (refused before it started: see the message above)"))
        if record:
            _show(views.runs_table([record]))
        return True

    def interrupt(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=CHILD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _report(message: str | None) -> None:
    if message:
        say(message)


def _serve(workdir: Path, port: int) -> subprocess.Popen:
    registry = workdir / "registry"
    say(f"serving the approved model of {registry} on http://127.0.0.1:{port} (API key in"
        f" {workdir / 'api-keys.json'}; request logs in {workdir / 'serve.log'})")
    with (workdir / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_code.cli.main", "serve", "--model", str(registry), "--port",
             str(port), "--api-key-file", str(workdir / "api-keys.json")], stderr=log, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
