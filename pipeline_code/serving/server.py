"""Run the serving app under uvicorn: JSON logs (rate-limited), graceful shutdown on SIGTERM/SIGINT,
and limits against hostile clients (head deadline and size, connection cap; see connections.py)."""

from __future__ import annotations

from pathlib import Path

from pipeline_code.serving.connections import ConnectionLimits, guarded_protocol, raise_open_file_limit
from pipeline_code.serving.gateway import ApiKeyGuard
from pipeline_code.serving.logs import configure_logging

# Seconds in-flight requests get to finish after SIGTERM before connections are closed.
GRACEFUL_SHUTDOWN_SECONDS = 10


def serve(
    model_dir: str | Path,
    *,
    host: str,
    port: int,
    max_periods: int,
    api_keys: ApiKeyGuard | None = None,
    limits: ConnectionLimits = ConnectionLimits(),
    log_level: str = "info",
) -> None:
    """Block serving until SIGTERM/SIGINT (uvicorn stops accepting, drains, runs the lifespan exit)."""
    import uvicorn

    from pipeline_code.serving.app import create_app

    configure_logging(log_level.upper())
    limits = raise_open_file_limit(limits)
    app = create_app(model_dir, max_periods=max_periods, api_keys=api_keys)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=75,  # longer than typical client/load-balancer idle timeouts
        http=guarded_protocol(limits),
        backlog=limits.backlog,
    )
    uvicorn.Server(config).run()
