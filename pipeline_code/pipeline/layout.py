"""The bucket's layout, and the local work folder's, declared once (standard library only).

The state machine, the starter Lambda, the IAM policies and the local runner build every key from
these names (docs/design.md, "S3 layout")::

    raw/<name>.csv, raw/<name>.settings.json            uploads (the trigger) and their settings
    runs/<run-id>/input/data/<name>.csv                  the run's copy of the upload
    runs/<run-id>/input/settings.json                    the run document every job reads
    runs/<run-id>/run.json                               the run's record (e.g. refused at validation)
    runs/<run-id>/processed/{train,test}/                processing's output
    runs/<run-id>/reports/{processing,selection,evaluation}/  reports
    runs/<run-id>/models/, checkpoints/, forecast/       training artifacts, spot checkpoints, the forecast
    runs/<run-id>/models/served/model.tar.gz             the model evaluation chose to serve (registered)
    runs/<run-id>/models/selected/                       one series: the model picked from the trials
    runs/<run-id>/models/shards/<host>/                  a panel's partial models, one per fit instance
    forecasts/<run-id>/forecast.csv, forecasts/latest/forecast.csv
    forecasts/<run-id>/backtest.csv, forecasts/latest/backtest.csv   a panel's per-item backtest
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline_code.engine.settings import SETTINGS_FILE

RAW = "raw/"
RUNS = "runs/"
FORECASTS = "forecasts/"

# Inside runs/<run-id>/:
INPUT_DATA = "input/data/"
RUN_DOCUMENT = f"input/{SETTINGS_FILE}"
RUN_RECORD = "run.json"
TRAIN = "processed/train/"
TEST = "processed/test/"
PROCESSING_REPORT = "reports/processing/"
EVALUATION_REPORT = "reports/evaluation/"
MODELS = "models/"
# The model evaluation chose to serve (the challenger, or on a first run a better baseline), packed as
# SageMaker packs a training job's: what registration registers.
SERVED_MODEL = "models/served/"
# One series: the model picked from the tuning job's trials (search.serve; pipeline/trials.py), and why.
SELECTED_MODEL = "models/selected/"
SELECTION_REPORT = "reports/selection/"
# A panel's sharded fit: each instance's partial panel under its host name (models/shards/algo-N/),
# merged by evaluation into one model.
SHARD_MODELS = "models/shards/"
MODEL_ARCHIVE = "model.tar.gz"
CHECKPOINTS = "checkpoints/"
FORECAST = "forecast/"

EVALUATION_FILE = "evaluation.json"
TUNING_FILE = "tuning.json"  # every candidate's CV scores: the local tune's, or the cloud Select job's
FORECAST_FILE = "forecast.csv"
# A panel's per-item backtest (each origin's forecast and actual), exported beside its forecast.
BACKTEST_FILE = "backtest.csv"
LATEST = "latest"
LATEST_FORECAST = f"{FORECASTS}{LATEST}/{FORECAST_FILE}"
LATEST_BACKTEST = f"{FORECASTS}latest/{BACKTEST_FILE}"


def run_key(run_id: str, part: str) -> str:
    """``runs/<run-id>/<part>``."""
    return f"{RUNS}{run_id}/{part}"


def run_forecast_key(run_id: str) -> str:
    """``forecasts/<run-id>/forecast.csv``."""
    return f"{FORECASTS}{run_id}/{FORECAST_FILE}"


def publish_forecast(source: Path, target: Path) -> list[str]:
    """Copy the forecast (and a panel's backtest) from the folder ``source`` to ``target``
    (``forecasts/<run-id>/`` or ``forecasts/latest/`` of a work folder); a backtest ``source`` lacks (one
    series after a panel) is removed from ``target``, not left stale. Returns the names copied."""
    names = [name for name in (FORECAST_FILE, BACKTEST_FILE) if (source / name).is_file()]
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, target / name)
    if BACKTEST_FILE not in names:
        (target / BACKTEST_FILE).unlink(missing_ok=True)
    return names
