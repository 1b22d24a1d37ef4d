"""The serving container's entrypoint (SageMaker runs ``docker run <image> serve``).

Environment: ``FORECAST_MLOPS_ML_ROOT`` (default ``/opt/ml``), ``SM_MODEL_DIR`` (default
``$FORECAST_MLOPS_ML_ROOT/model``; an artifact or a registry folder), ``SAGEMAKER_BIND_TO_PORT``
(default 8080), ``FORECAST_MAX_PERIODS`` (default 104), ``FORECAST_LOG_LEVEL`` (default info).
Binds 0.0.0.0 as SageMaker requires.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline_code.engine.settings import DEFAULT_PORT, max_periods_from_env
from pipeline_code.entrypoints.sagemaker_paths import ROOT_ENV

DEFAULT_ML_ROOT = "/opt/ml"


def model_dir_from_env(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    root = Path(env.get(ROOT_ENV) or DEFAULT_ML_ROOT)
    return Path(env.get("SM_MODEL_DIR") or root / "model")


def main(argv: list[str] | None = None) -> int:
    from pipeline_code.serving.server import serve

    try:
        port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT)
        max_periods = max_periods_from_env(os.environ)
    except ValueError as err:
        print(f"serve: invalid configuration: {err}", file=sys.stderr)
        return 2
    serve(
        model_dir_from_env(),
        host="0.0.0.0",
        port=port,
        max_periods=max_periods,
        log_level=os.environ.get("FORECAST_LOG_LEVEL", "info"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
