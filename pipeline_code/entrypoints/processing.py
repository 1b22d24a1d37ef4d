"""SageMaker processing job: validate -> outliers -> counterfactual -> split.

Input ``/opt/ml/processing/input/raw/``; outputs ``/opt/ml/processing/output/{train,test,report}/``
(for a panel, ``series.instances`` shard files in each of train/ and test/; docs/panel.md).
Exits 2 with the rule and line on stderr (and in the job's ExitMessage) when the data or the run
document is refused, 1 on other errors.
"""

from __future__ import annotations

import json
import os

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.settings import SETTINGS_CHANNEL, SettingsError
from pipeline_code.pipeline.settings_args import processing_settings
from pipeline_code.pipeline.stages import run_processing
from pipeline_code.entrypoints.sagemaker_paths import (
    fail, processing_input, processing_message, processing_output, unexpected,
)


def main(argv: list[str] | None = None) -> None:
    try:
        settings = processing_settings("processing", __doc__, argv, processing_input(SETTINGS_CHANNEL))
        # A panel's series are preprocessed on every core of the instance.
        report = run_processing(processing_input("raw"), processing_output(), settings, jobs=os.cpu_count() or 1)
    except SettingsError as err:
        fail(f"invalid run document: {err}", 2, processing_message())
    except DataValidationError as err:
        fail(f"invalid input data: {err}", 2, processing_message())
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, processing_message())
    print(json.dumps({"processed": report["observations"], "series": report.get("series", 1),
                      "episode": report["episode"]}))


if __name__ == "__main__":
    main()
