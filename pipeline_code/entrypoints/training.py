"""SageMaker training job (one HPO candidate): CV objective on ``train``, final fit on train + test.
For a panel (processed shard files with ``item_id``), the candidate is the panel's global choices and
the objective ``cv_mase`` (the mean over series; docs/panel.md).

The run document comes from the ``settings`` channel (``/opt/ml/input/data/settings/``); the tuned
hyperparameters arrive as strings in ``/opt/ml/input/config/hyperparameters.json``; prints the
objective line ``cv_mase=<value>;`` for the tuning job's metric regex (and one series' ``cv_mse``); writes the artifact to
``/opt/ml/model/``; a reason to ``/opt/ml/output/failure`` on error. A finished result is kept under
``/opt/ml/checkpoints/`` so a restarted spot job does not redo it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.settings import OBJECTIVE, SETTINGS_CHANNEL, TUNED_PARAMETERS, Settings
from pipeline_code.pipeline.panel_stages import is_panel_folder, job_processes
from pipeline_code.pipeline.panel_tuning import panel_trial
from pipeline_code.pipeline.settings_args import find_run_document
from pipeline_code.pipeline.stages import run_training
from pipeline_code.entrypoints.sagemaker_paths import fail, training_paths, unexpected

# Categorical hyperparameters: the model family (default: the harmonic model), and the history and
# scale its statsforecast families fit on; a family ignores what it does not use.
CATEGORICAL = ("family", "history", "scale")
# SageMaker's own entries in hyperparameters.json (e.g. `_tuning_objective_metric` in tuning jobs).
RESERVED_PREFIXES = ("_", "sagemaker_")


def parse_hyperparameters(raw: dict[str, str], settings: Settings) -> dict[str, Any]:
    """The candidate a tuning job's strings name, exactly as the local search space has it.

    The run document carries everything else, so any other name (a renamed range, a stray static
    value) is an error. The tuning job sends every range to every job; a family's candidate keeps what
    that family varies and its own values for the rest (a harmonic job carries no ``history``).
    """
    values = {name: str(value).strip('"') for name, value in raw.items() if not name.startswith(RESERVED_PREFIXES)}
    unknown = sorted(set(values) - set(TUNED_PARAMETERS) - set(CATEGORICAL))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}: a training job takes "
                         f"{sorted((*TUNED_PARAMETERS, *CATEGORICAL))}; its settings come from the run document")
    name = values.setdefault("family", HARMONIC)
    candidates = family(name).candidates(settings)  # an unknown family is a ValueError naming them
    varying = sorted({key for key in candidates[0] if len({str(c[key]) for c in candidates}) > 1})
    missing = [key for key in varying if key not in values]
    if missing:
        raise ValueError(f"missing hyperparameter(s) {missing}")
    for key in varying:
        if key in TUNED_PARAMETERS and not values[key].lstrip("-").isdigit():
            raise ValueError(f"hyperparameters must be numbers: {key}={values[key]!r}")
    match = [c for c in candidates if all(str(c[key]) == values[key] for key in varying)]
    if not match:
        raise ValueError(f"{ {key: values[key] for key in varying} } is not a candidate of family {name!r} "
                         "for this run document")
    return dict(match[0])


def parse_panel_hyperparameters(raw: dict[str, str], settings: Settings) -> dict[str, str]:
    """A panel's global choices from a tuning job's strings: each name and value one of the run
    document's panel ranges (``Settings.panel_parameter_ranges``); anything else is an error."""
    values = {name: str(value).strip('"') for name, value in raw.items() if not name.startswith(RESERVED_PREFIXES)}
    ranges = {r["Name"]: r["Values"] for r in settings.panel_parameter_ranges()["CategoricalParameterRanges"]}
    unknown = sorted(set(values) - set(ranges))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}: a panel's training job takes {sorted(ranges)}")
    for name, value in values.items():
        if value not in ranges[name]:
            raise ValueError(f"hyperparameter {name}={value!r} is not one of {ranges[name]} for this run document")
    return values


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
        print(f"cv_mse={metrics['cv_mse']:.6f};")
    print(f"{OBJECTIVE}={metrics[OBJECTIVE]:.6f};")


def _train_or_resume(tuned: dict[str, int], settings: Settings, paths: dict[str, Path]) -> dict:
    key = hashlib.sha256(json.dumps([tuned, settings.to_dict()], sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = paths["checkpoints"] / key
    if (checkpoint / "metrics.json").is_file():
        shutil.copytree(checkpoint / "model", paths["model"], dirs_exist_ok=True)
        return json.loads((checkpoint / "metrics.json").read_text())
    if is_panel_folder(paths["train"]):  # scored on train as the local tuner does (panel_tuning.py)
        metrics = panel_trial(paths["train"], tuned, paths["model"], settings, jobs=job_processes(paths["train"]))
    else:
        metrics = run_training(
            paths["train"], paths["test"], tuned, paths["model"], settings, report_dir=paths["output_data"],
            jobs=job_processes(paths["train"]),
        )
    if paths["checkpoints"].is_dir():
        shutil.copytree(paths["model"], checkpoint / "model", dirs_exist_ok=True)
        (checkpoint / "metrics.json").write_text(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
