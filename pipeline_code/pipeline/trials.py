"""A tuning job's trials read back from their model archives, and the model ``search.serve`` serves
from them: the cloud's counterpart of the local tune's pick for one series (docs/design.md, "Select").

SageMaker writes each training job's ``/opt/ml/model`` to ``<S3OutputPath>/<job>/output/model.tar.gz``
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html); each
archive's ``model.json`` carries the trial's candidate (``metadata.hyperparameters``) and its CV
metrics (``metadata.metrics``), so the choice needs no SageMaker API, only the run's ``models/`` prefix.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from pipeline_code.engine.core.artifact import MODEL_JSON
from pipeline_code.engine.settings import COMBINATION, OBJECTIVE, Settings
from pipeline_code.engine.tuning import served_of_trials
from pipeline_code.pipeline.layout import MODEL_ARCHIVE
from pipeline_code.pipeline.stages import run_training

TRIAL_OUTPUT = "output"  # <job>/output/model.tar.gz; the served model (models/served/) is no trial
SELECTION_FILE = "selection.json"


class TrialError(ValueError):
    """A trial's archive is unreadable or carries no candidate and objective."""


def _model_json(archive: Path) -> dict[str, Any]:
    """``model.json`` read from the archive without extracting anything."""
    try:
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers()
                           if m.isfile() and m.name.removeprefix("./") == MODEL_JSON), None)
            body = tar.extractfile(member).read() if member is not None else None
        document = json.loads(body) if body is not None else None
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as err:  # truncated: EOFError
        raise TrialError(f"{archive.parent.parent.name}: unreadable {archive.name} ({err})") from None
    if document is None:
        raise TrialError(f"{archive.parent.parent.name}: no {MODEL_JSON} in {archive.name}")
    return document


def read_trials(folder: Path) -> list[dict[str, Any]]:
    """Every trial under ``folder`` (``<job>/output/model.tar.gz``, at any depth): its ``trial`` (the
    training job's name), ``archive``, ``hyperparameters`` and ``OBJECTIVE``, in job-name order. A
    failed trial wrote no archive and is not here."""
    trials = []
    for archive in sorted(Path(folder).rglob(MODEL_ARCHIVE)):
        if archive.parent.name != TRIAL_OUTPUT:
            continue
        metadata = _model_json(archive).get("metadata", {})
        try:
            candidate = dict(metadata["hyperparameters"])
            objective = float(metadata["metrics"][OBJECTIVE])
        except (KeyError, TypeError, ValueError) as err:
            raise TrialError(f"{archive.parent.parent.name}: model.json has no candidate and "
                             f"{OBJECTIVE} ({type(err).__name__}: {err})") from None
        trials.append({"trial": archive.parent.parent.name, "archive": archive,
                       "hyperparameters": candidate, OBJECTIVE: objective})
    return trials


def select_served(trials_dir: Path, train_dir: Path, test_dir: Path, model_dir: Path, settings: Settings,
                  *, jobs: int = 1) -> dict[str, Any]:
    """Write to ``model_dir`` the model ``search.serve`` picks from the trials under ``trials_dir``:
    equal weights of the best members, fitted here as the local train stage fits them (``run_training``),
    or the best trial's own model, unpacked. Returns what the job reports (``selection.json``): the
    rule, the number of trials, the candidate and its members' trials (and the fit's CV metrics)."""
    trials = read_trials(trials_dir)
    if not trials:
        raise TrialError(f"no trial's {TRIAL_OUTPUT}/{MODEL_ARCHIVE} under {Path(trials_dir).name}/")
    candidate, rule = served_of_trials(trials, settings)
    record: dict[str, Any] = {"serve": rule, "trials": len(trials), "hyperparameters": candidate}
    if candidate["family"] == COMBINATION:
        record["metrics"] = run_training(train_dir, test_dir, candidate, model_dir, settings, jobs=jobs)
        ranked = sorted(trials, key=lambda t: t[OBJECTIVE])
        record["members"] = [next(t["trial"] for t in ranked if t["hyperparameters"] == m)
                             for m in candidate["members"]]
        return record
    best = next(t for t in trials if t["hyperparameters"] == candidate)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    with tarfile.open(best["archive"]) as tar:
        tar.extractall(model_dir, filter="data")  # refuses absolute paths, links out, devices
    record["members"] = [best["trial"]]
    return record
