"""SageMaker processing job (one series): the model to evaluate, picked from the tuning job's trials
(one per family) as the local tune picks it (``search.serve``; ``pipeline/trials.py``).

Inputs under ``/opt/ml/processing/input/``: ``trials/`` (the run's ``models/`` prefix: each training
job's ``<job>/output/model.tar.gz``; only those of the tuning job ``FORECAST_TUNING_JOB`` names), ``train/``, ``test/`` and ``settings/`` (the run document).
Outputs: ``/opt/ml/processing/output/model/`` (the model search.serve picks from the merged trials,
fitted here) and ``/opt/ml/processing/output/selection/``: ``selection.json`` (the rule, the candidate
and the trials it came from), ``tuning.json`` and ``tuning.png`` (every candidate and combination, as
the local run's) and ``cv.png``. Exit 2 on bad input, 1 on other errors.
"""

from __future__ import annotations

import json
import os

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.settings import SETTINGS_CHANNEL
from pipeline_code.entrypoints.sagemaker_paths import (
    SELECTED_MODEL_OUTPUT, SELECTION_OUTPUT, TRIALS_INPUT, TUNING_JOB_ENV, fail, processing_input,
    processing_message, processing_output, unexpected,
)
from pipeline_code.pipeline.panel_stages import job_processes
from pipeline_code.pipeline.settings_args import processing_settings
from pipeline_code.pipeline.trials import SELECTION_FILE, select_served


def main(argv: list[str] | None = None) -> None:
    report = processing_output(SELECTION_OUTPUT)
    try:
        settings = processing_settings("selection", __doc__, argv, processing_input(SETTINGS_CHANNEL))
        record = select_served(processing_input(TRIALS_INPUT), processing_input("train"), processing_input("test"),
                               processing_output(SELECTED_MODEL_OUTPUT), settings,
                               jobs=job_processes(processing_input("train")), report_dir=report,
                               tuning_job=os.environ.get(TUNING_JOB_ENV))
        (report / SELECTION_FILE).write_text(json.dumps(record, indent=1))
    except (DataValidationError, ValueError) as err:
        fail(f"invalid selection input: {err}", 2, processing_message())
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, processing_message())
    print(json.dumps({"serve": record["serve"], "trials": record["trials"], "members": record["members"]}))


if __name__ == "__main__":
    main()
