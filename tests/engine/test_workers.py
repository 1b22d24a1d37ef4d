"""Pool workers end when the process that started them is killed with SIGKILL (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHILD = """
import functools, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from pipeline_code.engine import workers

if sys.argv[1] == "pool":
    pool = workers.worker_pool(2, time.sleep, (0,))
else:  # the portable fallback alone: the watchdog thread, no PR_SET_PDEATHSIG
    pool = ProcessPoolExecutor(2, initializer=functools.partial(workers.bind_to_parent, pdeathsig=False),
                               initargs=(os.getpid(),))
for _ in range(2):
    pool.submit(time.sleep, 600)  # workers busy in a long task, as in tuning
while len(pool._processes) < 2:
    time.sleep(0.05)
print(*pool._processes, flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait a while to be reaped; it no longer runs)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_until_gone(pids: list[int], deadline_seconds: float = 60) -> list[int]:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if running(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("mode", ["pool", "watchdog-only"])
def test_workers_end_when_their_parent_is_killed(mode):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(running(p) for p in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until_gone(workers) == []
    finally:
        if parent.poll() is None:
            parent.kill()


def _mark(folder: str, index: int) -> int:
    """A task: records that it started, then runs a while (a costly candidate; not for ever, so a pool
    that waits for its queue fails this module's test rather than hanging it)."""
    Path(folder, f"started-{index}").touch()
    time.sleep(15)
    return index


def test_an_interrupt_cancels_the_queued_tasks_and_ends_the_running_ones(tmp_path):
    """Ctrl-C in the loop that reads a pool's results leaves at once: the 4 queued tasks never start
    and the 2 running ones are ended (a plain ProcessPoolExecutor would run all 6 before leaving)."""
    from pipeline_code.engine import workers

    with pytest.raises(KeyboardInterrupt):
        with workers.worker_pool(2, time.sleep, (0,)) as pool:
            results = pool.map(_mark, [str(tmp_path)] * 6, range(6))
            while len(list(tmp_path.glob("started-*"))) < 2:
                time.sleep(0.05)
            pids = list(pool._processes)
            raise KeyboardInterrupt
    assert not any(running(p) for p in pids)  # joined before the block was left
    assert len(list(tmp_path.glob("started-*"))) == 2
    with pytest.raises((CancelledError, BrokenProcessPool)):  # nor are the abandoned results
        next(results)
