"""SageMaker training job: one trial of the tuning job.

- One series: the hyperparameter is a ``family``; the trial scores every candidate of that family on
  ``train``'s selection splits and writes them (``pipeline/trials.py``); the Select job merges the trials
  and fits the served model. The objective is the family's lowest CV MASE.
- A panel (processed shard files with ``item_id``): the hyperparameters are a history and a scale; the
  trial scores every family choice at those on ``train`` (``pipeline/panel_tuning.py``); the objective
  is its best choice's ``cv_mase``, the mean over series (docs/panel.md).

The run document comes from the ``settings`` channel (``/opt/ml/input/data/settings/``); the tuned
hyperparameters arrive as strings in ``/opt/ml/input/config/hyperparameters.json``; prints the
objective line ``cv_mase=<value>;`` for the tuning job's metric regex (and ``cv_mse`` beside it); writes
to ``/opt/ml/model/``; a reason to ``/opt/ml/output/failure`` on error. A finished result is kept under
``/opt/ml/checkpoints/`` so a restarted spot job does not redo it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.settings import OBJECTIVE, SETTINGS_CHANNEL, Settings
from pipeline_code.pipeline.panel_stages import is_panel_folder, job_processes
from pipeline_code.pipeline.panel_tuning import panel_trial
from pipeline_code.pipeline.settings_args import find_run_document
from pipeline_code.pipeline.trials import run_trial
from pipeline_code.entrypoints.sagemaker_paths import fail, training_paths, unexpected

# SageMaker's own entries in hyperparameters.json (e.g. `_tuning_objective_metric` in tuning jobs).
RESERVED_PREFIXES = ("_", "sagemaker_")


def _tuned(raw: dict[str, str], ranges: dict[str, Any]) -> dict[str, str]:
    """The tuning job's strings: a value of each of the run document's ranges (``ranges``, a
    ParameterRanges of categoricals); anything else is an error: the settings come from the run document."""
    values = {name: str(value).strip('"') for name, value in raw.items() if not name.startswith(RESERVED_PREFIXES)}
    allowed = {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]}
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}: a training job takes {sorted(allowed)}; "
                         "its settings come from the run document")
    missing = sorted(set(allowed) - set(values))
    if missing:
        raise ValueError(f"missing hyperparameter(s) {missing}")
    for name, value in values.items():
        if value not in allowed[name]:
            raise ValueError(f"hyperparameter {name}={value!r} is not one of {allowed[name]} for this run document")
    return values


def parse_hyperparameters(raw: dict[str, str], settings: Settings) -> dict[str, str]:
    """One series' trial: ``{"family": name}``, one of the run document's ``search.families``."""
    return _tuned(raw, settings.parameter_ranges())


def parse_panel_hyperparameters(raw: dict[str, str], settings: Settings) -> dict[str, str]:
    """A panel's trial: ``{"history": h, "scale": s}``, each one of the run document's."""
    return _tuned(raw, settings.panel_parameter_ranges())


def job_settings(paths: dict[str, Path]) -> Settings:
    """The run document from the job's settings channel: the only way settings reach a training job."""
    document = find_run_document(paths["settings"])
    if document is None:
        raise ValueError(f"no run document: the '{SETTINGS_CHANNEL}' channel is missing")
    return Settings.from_file(document)


def main() -> None:
    paths = training_paths()
    try:
        settings = job_settings(paths)
        parse = parse_panel_hyperparameters if is_panel_folder(paths["train"]) else parse_hyperparameters
        tuned = parse(json.loads(paths["hyperparameters"].read_text()), settings)
        metrics = _train_or_resume(tuned, settings, paths)
    except (DataValidationError, ValueError) as err:
        fail(f"invalid training input: {err}", 2, paths["failure"])
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, paths["failure"])
    if "cv_mse" in metrics:  # one series, reported beside the objective
        print(f"cv_mse={metrics['cv_mse']:.9g};")  # 9 significant digits: small values stay apart
    print(f"{OBJECTIVE}={metrics[OBJECTIVE]:.9g};")


def _train_or_resume(tuned: dict[str, str], settings: Settings, paths: dict[str, Path]) -> dict:
    key = hashlib.sha256(json.dumps([tuned, settings.to_dict()], sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = paths["checkpoints"] / key
    if (checkpoint / "metrics.json").is_file():
        shutil.copytree(checkpoint / "model", paths["model"], dirs_exist_ok=True)
        return json.loads((checkpoint / "metrics.json").read_text())
    if is_panel_folder(paths["train"]):  # scored on train as the local search scores (panel_tuning.py)
        metrics = panel_trial(paths["train"], tuned, paths["model"], settings, jobs=job_processes(paths["train"]))
    else:
        metrics = run_trial(paths["train"], tuned["family"], paths["model"], settings,
                            jobs=job_processes(paths["train"]))
    if paths["checkpoints"].is_dir():
        shutil.copytree(paths["model"], checkpoint / "model", dirs_exist_ok=True)
        (checkpoint / "metrics.json").write_text(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
