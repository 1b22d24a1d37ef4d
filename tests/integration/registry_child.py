"""A child process for the registry's crash and concurrency tests: one register or approve, optionally
killed (SIGKILL, i.e. kill -9) at a named step, or with every rename slowed down.

    python -m tests.integration.registry_child ROOT register MODEL_DIR RUN_ID [approved|pending]
    python -m tests.integration.registry_child ROOT approve VERSION

Environment: CRASH_AT=<step> kills the process at that step of ``registry._checkpoint``;
STEPS_FILE=<path> appends every step reached to that file; SLOW_RENAMES=<seconds> sleeps before each
rename; START_FILE=<path> waits for that file to exist before starting (so several children race).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pipeline_code.pipeline import registry as registry_module


def _install_hooks() -> None:
    crash_at, steps_file = os.environ.get("CRASH_AT"), os.environ.get("STEPS_FILE")

    def checkpoint(step: str) -> None:
        if steps_file:
            with open(steps_file, "a") as handle:
                handle.write(step + "\n")
        if step == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    registry_module._checkpoint = checkpoint
    delay = float(os.environ.get("SLOW_RENAMES", "0"))
    if delay:
        real_replace = os.replace

        def slow_replace(src, dst):
            time.sleep(delay)
            real_replace(src, dst)

        registry_module.os.replace = slow_replace  # the module's os is this os: every rename is slowed


def main(argv: list[str]) -> int:
    _install_hooks()
    start = os.environ.get("START_FILE")
    while start and not Path(start).exists():
        time.sleep(0.01)
    registry = registry_module.LocalRegistry(argv[0])
    if argv[1] == "register":
        status = registry_module.APPROVED if argv[4] == "approved" else registry_module.PENDING
        version = registry.register(Path(argv[2]), status=status, run_id=argv[3],
                                    evaluation={"gate": {"passed": status == registry_module.APPROVED}})
    else:
        version = registry.approve(argv[2])
    print(version.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
