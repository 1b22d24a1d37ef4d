"""``python -m tests.serving.serve_with_fd_limit N serve ...``: the serving CLI under an open-file limit of
N (soft and hard), as on a host whose limit is the common 1,024, scaled down for a test."""

from __future__ import annotations

import resource
import sys

from pipeline_code.serving.cli import main

if __name__ == "__main__":
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    sys.exit(main(sys.argv[2:]))
