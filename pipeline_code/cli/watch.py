"""``forecast-mlops watch DIR``: the local twin of the S3 trigger.

``watchfiles`` (the Rust ``notify`` crate: inotify, FSEvents, ReadDirectoryChangesW) reports changes in
the folder; pipeline/watch_queue.py decides what is ready, queued, superseded or a duplicate. One run at
a time, each a ``forecast-mlops pipeline run`` child process whose output shows in the terminal. With
``--serve`` a ``forecast-mlops serve`` child serves the registry's approved model and reloads it when a
version is approved (by a run or by ``models approve|rollback``); without it, a separate ``serve --model
<workdir>/registry`` does the same.

Ctrl-C: the running child gets SIGINT and finishes its record as ``failed`` ("interrupted"); every file
the watch and the runner write is replaced atomically, so nothing is left half-written.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pipeline_code.cli import views
from pipeline_code.pipeline.runs import local_runs
from pipeline_code.pipeline.watch_queue import WatchQueue
from pipeline_code.serving.cli import check_port_free

WORKDIR_NAME = ".forecast-mlops"
TICK_MS = 200  # how often the loop wakes without events, to settle files and check the run
CHILD_STOP_SECONDS = 30.0


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


def say(message: str) -> None:
    print(f"[watch] {message}", flush=True)


def watch_folder(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    from watchfiles import Change, watch

    folder = check_folder(Path(args.folder))
    if args.serve:
        check_port_free(args.port)  # before announcing a server that could not start
    workdir = Path(args.workdir) if args.workdir else folder / WORKDIR_NAME
    workdir.mkdir(parents=True, exist_ok=True)
    queue = WatchQueue(workdir, settle=args.settle)
    server = _serve(workdir, args.port) if args.serve else None
    run: _Run | None = None
    started = False
    try:
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
        say("stopping (Ctrl-C)")
    finally:
        if run:
            run.interrupt()
        queue.close()
        if server:
            _stop(server)
    return 0


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
        say(f"{path.name}: starting a run")
        # Its own process group: a Ctrl-C reaches it through the watch, which waits for its record.
        self.process = subprocess.Popen(command, start_new_session=True)

    def finished(self) -> bool:
        code = self.process.poll()
        if code is None:
            return False
        if code == 0:
            self.queue.done(self.digest)
        newest = next((r for r in local_runs(self.workdir) if r.data == self.path.name), None)
        say(f"{self.path.name}: run ended (exit {code})" + ("" if newest else "; no run record (refused before"
                                                            " it started: see the message above)"))
        if newest:
            print(views.runs_table([newest]), flush=True)
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
