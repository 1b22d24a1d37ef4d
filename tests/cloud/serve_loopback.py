"""The serving container's entrypoint (`container serve`), bound to 127.0.0.1 for tests.

SageMaker's contract makes the container bind 0.0.0.0 (pipeline_code/entrypoints/serve.py); tests serve
on loopback only, so this runs the same entrypoint with only the bind address replaced.
"""

from __future__ import annotations

import sys

from pipeline_code.entrypoints import container
from pipeline_code.serving import server

LOOPBACK = "127.0.0.1"
_serve = server.serve


def _serve_on_loopback(model_dir, *, host: str, **kwargs) -> None:
    _serve(model_dir, host=LOOPBACK, **kwargs)


if __name__ == "__main__":
    server.serve = _serve_on_loopback
    sys.exit(container.main(["serve"]))
