"""Process pools whose workers end when the process that started them dies, kill -9 included.

A killed parent cannot shut its pool down, and a worker blocked in a long task never reads the
closed queue, so each worker binds its life to the parent's when it starts:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its parent
  (the thread that started it: the caller of the pool, which lives as long as the pool) exits;
* everywhere, a daemon thread that checks once a second whether the worker has been orphaned
  (re-parented) or the parent is gone, and ends the worker.

Leaving a pool's ``with`` block by an exception (Ctrl-C included) cancels the tasks not yet started and
ends the workers at once: a plain ProcessPoolExecutor would first run every queued task.

Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 1.0


class WorkerPool(ProcessPoolExecutor):
    """A process pool whose ``with`` block, left by an exception, abandons the rest of the work."""

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return super().__exit__(exc_type, exc, tb)
        self.abandon()
        return False

    def abandon(self) -> None:
        """Cancel the queued tasks and end the workers now, the running tasks included."""
        processes = list((self._processes or {}).values())  # shutdown() forgets them
        self.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


def worker_pool(jobs: int, initializer: Callable[..., None], initargs: tuple = ()) -> WorkerPool:
    """A pool of ``jobs`` workers that run ``initializer(*initargs)`` and end with us."""
    return WorkerPool(max_workers=jobs, initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))


def _start_worker(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    bind_to_parent(parent)
    initializer(*initargs)


def bind_to_parent(parent: int, *, pdeathsig: bool = True) -> None:
    """End this process when ``parent`` dies (see the module docstring)."""
    spawner = os.getppid()  # the parent itself, or a fork server it started
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still works
    if not _alive(parent, spawner):  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, spawner), name="parent-watchdog", daemon=True).start()


def _watch(parent: int, spawner: int) -> None:
    while _alive(parent, spawner):
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def _alive(parent: int, spawner: int) -> bool:
    if os.getppid() != spawner:  # re-parented: whoever started us is gone
        return False
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else (a recycled pid would be caught by the re-parent check)
    return True
