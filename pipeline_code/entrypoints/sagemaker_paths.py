"""The SageMaker container file layout, rooted at ``$FORECAST_MLOPS_ML_ROOT`` (default ``/opt/ml``)
so tests and the local runner can point it at a temporary folder."""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path

ROOT_ENV = "FORECAST_MLOPS_ML_ROOT"


def ml_root() -> Path:
    return Path(os.environ.get(ROOT_ENV, "/opt/ml"))


# The sharded fit's channel holding every train shard file (fully replicated), besides its own ones.
WHOLE_TRAIN_CHANNEL = "panel"
# The tuning job's trials (the run's models/ prefix), an input of one series' selection job
# (entrypoints/selection.py, with its model and report outputs) and of a panel's sharded fit.
TRIALS_INPUT = "trials"
# Their tuning job's name: only its training jobs' trials are read (a retried tuning job leaves the
# earlier attempt's trials under the same prefix). "This name is the prefix for the names of all
# training jobs that this tuning job launches" ("<tuning job>-<number>-<id>"):
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateHyperParameterTuningJob.html
TUNING_JOB_ENV = "FORECAST_TUNING_JOB"
SELECTED_MODEL_OUTPUT = "model"
SELECTION_OUTPUT = "selection"


def processing_input(name: str) -> Path:
    return ml_root() / "processing" / "input" / name


def processing_output(name: str = "") -> Path:
    return ml_root() / "processing" / "output" / name


def current_host() -> str:
    """This instance's name among a processing job's instances (``algo-1``..``algo-N``), from
    ``/opt/ml/config/resourceconfig.json``.
    https://docs.aws.amazon.com/sagemaker/latest/dg/build-your-own-processing-container.html"""
    path = ml_root() / "config" / "resourceconfig.json"
    try:
        host = json.loads(path.read_text())["current_host"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: no current_host ({err})") from None
    if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", host):
        raise ValueError(f"{path}: current_host {host!r} is not a host name")
    return host


def training_paths() -> dict[str, Path]:
    root = ml_root()
    return {
        "hyperparameters": root / "input" / "config" / "hyperparameters.json",
        "train": root / "input" / "data" / "train",
        "settings": root / "input" / "data" / "settings",
        "model": root / "model",
        "failure": root / "output" / "failure",
        "checkpoints": root / "checkpoints",
    }


# SageMaker keeps the first 1 KB of a job's reason (FailureReason, ExitMessage: at most 1024 characters).
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingJobSummary.html
REASON_BYTES = 1024


def processing_message() -> Path:
    """Where a processing container says why it failed: DescribeProcessingJob's ExitMessage holds the
    first 1 KB of ``/opt/ml/output/message`` (UTF-8); the ``.sync`` task's error cause carries it.
    https://docs.aws.amazon.com/sagemaker/latest/dg/byoc-metadata.html"""
    return ml_root() / "output" / "message"


def fail(reason: str, code: int, reason_file: Path | None = None) -> "NoReturn":  # noqa: F821
    """Print the reason on stderr, write it where SageMaker reads it (a training job's
    ``output/failure``, a processing job's ``processing_message()``; its first 1 KB, whole UTF-8
    characters) and exit non-zero."""
    print(f"ERROR: {reason}", file=sys.stderr)
    if reason_file is not None:
        reason_file.parent.mkdir(parents=True, exist_ok=True)
        reason_file.write_bytes(reason.encode()[:REASON_BYTES].decode(errors="ignore").encode())
    sys.exit(code)


def unexpected(err: BaseException) -> str:
    """A one-line reason for an unexpected error; the traceback goes to stderr for the job's logs."""
    traceback.print_exc(file=sys.stderr)
    return f"{type(err).__name__}: {err}"
