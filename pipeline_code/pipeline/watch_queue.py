"""The watch folder's bookkeeping, without the watching: which files are ready, which wait, which are
duplicates (``forecast-mlops watch``; cli/watch.py feeds it the file-system events).

* A file is *ready* when its size and modification time have not changed for ``settle`` seconds and no
  process holds it open for writing (Linux: ``/proc/<pid>/fdinfo`` flags; elsewhere the settle time
  alone): a half-written file never starts a run.
* Ready files wait in a queue, one entry per dataset (the file name's stem): a newer file of the same
  dataset supersedes the one waiting.
* A file whose content (with its settings file beside it) was already run successfully starts nothing.
* ``<name>.settings.json`` is the run document's layer for ``<name>.csv`` (the runner reads it); alone,
  it is reported and skipped. Anything else is reported and skipped.

The queue is mirrored, atomically, to ``<workdir>/watch-queue.json`` (``runs list`` shows it as
``queued``); the hashes of the contents already run are kept in ``<workdir>/watch-seen.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_code.engine.settings import SETTINGS_SUFFIX, settings_file_for
from pipeline_code.pipeline.runs import QUEUE_FILE, now, replace_json

SEEN_FILE = "watch-seen.json"
DATA_SUFFIX = ".csv"


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    since: float  # monotonic time the (size, mtime) pair was first seen
    announced: bool = False


@dataclass
class WatchQueue:
    workdir: Path
    settle: float = 1.0
    pending: dict[Path, _Pending] = field(default_factory=dict)
    queue: dict[str, tuple[Path, str]] = field(default_factory=dict)  # stem -> (file, since)
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        try:
            self.seen = set(json.loads((self.workdir / SEEN_FILE).read_text()).get("sha256", []))
        except (OSError, ValueError, AttributeError):
            self.seen = set()

    # --- events ----------------------------------------------------------------------------------

    def changed(self, path: Path) -> str | None:
        """A file was added or modified: track it. Returns a message when the file is refused."""
        path = Path(path)
        name = path.name
        if name.startswith(".") or not path.is_file():
            self.pending.pop(path, None)
            return None
        if name.endswith(SETTINGS_SUFFIX):
            data = path.with_name(name[: -len(SETTINGS_SUFFIX)] + DATA_SUFFIX)
            if not data.is_file():
                return (f"{name} is a settings file without data yet: the run of {data.name}, dropped beside"
                        " it, will read it")
            return None  # read by the run of its CSV
        if path.suffix.lower() != DATA_SUFFIX:
            return (f"{name} is not a CSV file (expected <name>.csv, optionally with <name>{SETTINGS_SUFFIX}"
                    " beside it); skipped")
        try:
            info = path.stat()
        except OSError:  # gone (or unreadable) since the event: nothing to track
            self.pending.pop(path, None)
            return None
        previous = self.pending.get(path)
        if previous is None or (previous.size, previous.mtime_ns) != (info.st_size, info.st_mtime_ns):
            self.pending[path] = _Pending(info.st_size, info.st_mtime_ns, time.monotonic(),
                                          announced=previous.announced if previous else False)
        return None

    def settle_pending(self) -> tuple[list[str], list[str]]:
        """Move the files that are complete into the queue. Returns (messages, newly queued names)."""
        messages, queued = [], []
        for path, seen in list(self.pending.items()):
            try:
                info = path.stat()
            except OSError:
                del self.pending[path]
                continue
            if (info.st_size, info.st_mtime_ns) != (seen.size, seen.mtime_ns):
                self.pending[path] = _Pending(info.st_size, info.st_mtime_ns, time.monotonic(), seen.announced)
                continue
            writing = open_for_writing(path)
            if writing or time.monotonic() - seen.since < self.settle:
                if writing and not seen.announced:
                    messages.append(f"{path.name} is still being written (open by process {writing}); waiting")
                    seen.announced = True
                continue
            del self.pending[path]
            stem = path.name[: -len(DATA_SUFFIX)]
            if stem in self.queue and self.queue[stem][0] != path:
                messages.append(f"{path.name} supersedes {self.queue[stem][0].name} in the queue")
            elif stem in self.queue:
                messages.append(f"{path.name} changed again while queued; its newest content will run")
            self.queue[stem] = (path, now())
            queued.append(path.name)
        if queued or messages:
            self._save_queue()
        return messages, queued

    def next_file(self) -> tuple[Path, str] | None:
        """The oldest waiting dataset's file and its content hash (``is_duplicate`` tells whether it
        already ran), or None. A file gone or unreadable meanwhile is dropped (OSError names it)."""
        if not self.queue:
            return None
        stem = next(iter(self.queue))
        path, _ = self.queue.pop(stem)
        self._save_queue()
        return path, content_hash(path)

    def is_duplicate(self, digest: str) -> bool:
        return digest in self.seen

    def done(self, digest: str) -> None:
        """A run of this content finished: an identical file later starts nothing."""
        self.seen.add(digest)
        replace_json(self.workdir / SEEN_FILE, {"sha256": sorted(self.seen)})

    def open(self) -> None:
        """Start: nothing is queued (a killed watch's queue file is replaced). OSError when the work
        folder cannot be written."""
        self.queue.clear()
        self._save_queue()

    def close(self) -> None:
        """Stop: nothing is queued any more (the files stay in the folder)."""
        self.queue.clear()
        (self.workdir / QUEUE_FILE).unlink(missing_ok=True)

    def _save_queue(self) -> None:
        replace_json(self.workdir / QUEUE_FILE, {"queued": [
            {"name": path.name, "path": str(path), "since": since} for path, since in self.queue.values()]})


def content_hash(path: Path) -> str:
    """sha256 of the CSV and, when there is one, the settings file beside it."""
    digest = hashlib.sha256()
    for marker, part in ((b"data\0", path), (b"\0settings\0", path.with_name(settings_file_for(path.name)))):
        if part is path or part.is_file():  # the CSV must be there (OSError names it); its settings may not
            digest.update(marker)
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def open_for_writing(path: Path) -> int | None:
    """The id of a process that holds ``path`` open for writing (Linux /proc), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        target = os.path.realpath(path)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                return int(pid)
    return None
