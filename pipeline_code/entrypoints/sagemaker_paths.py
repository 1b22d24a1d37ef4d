"""The SageMaker container file layout, rooted at ``$FORECAST_MLOPS_ML_ROOT`` (default ``/opt/ml``)
so tests and the local runner can point it at a temporary folder."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

ROOT_ENV = "FORECAST_MLOPS_ML_ROOT"


def ml_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/opt/ml"))


def processing_input(name: str) -> Path:
    return ml_root() / "processing" / "input" / name


def processing_output(name: str = "") -> Path:
    return ml_root() / "processing" / "output" / name


def training_paths() -> dict[str, Path]:
    root = ml_root()
    return {
        "hyperparameters": root / "input" / "config" / "hyperparameters.json",
        "train": root / "input" / "data" / "train",
        "test": root / "input" / "data" / "test",
        "settings": root / "input" / "data" / "settings",
        "model": root / "model",
        "output_data": root / "output" / "data",
        "failure": root / "output" / "failure",
        "checkpoints": root / "checkpoints",
    }


def fail(reason: str, code: int, failure_file: Path | None = None) -> "NoReturn":  # noqa: F821
    """Print the reason on stderr (and to SageMaker's failure file) and exit non-zero."""
    print(f"ERROR: {reason}", file=sys.stderr)
    if failure_file is not None:
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(reason[:1000])
    sys.exit(code)


def unexpected(err: BaseException) -> str:
    """A one-line reason for an unexpected error; the traceback goes to stderr for the job's logs."""
    traceback.print_exc(file=sys.stderr)
    return f"{type(err).__name__}: {err}"
