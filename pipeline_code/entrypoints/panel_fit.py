"""SageMaker processing job, one instance of ``series.instances``: fit this instance's shard of a panel.

Inputs under ``/opt/ml/processing/input/``: ``train/`` (ShardedByS3Key: some of processing's shard
files), ``panel/`` (every train shard file: the whole panel, whose statistics a pooled family such as
``global_ar`` sums, so every instance shrinks toward the same pooled model), ``test/`` (every shard file; the
ones named like this instance's train files are fitted), ``settings/`` (the run document) and
``trials/`` (the run's ``models/`` prefix: the trials of the tuning job ``FORECAST_TUNING_JOB`` names,
whose best global choice, taken as the local search takes it, every instance fits:
``panel_tuning.best_of_trials``). Output:
``/opt/ml/processing/output/shards/<current_host>/``, this shard's partial panel (every instance
uploads to the same S3 prefix, so each writes under its own host name); evaluation merges them
(``pipeline.panel_shards.merged_shards``). An instance that received no shard file (more instances
than files) writes nothing. The series are spread over the instance's cores. Exit 2 on bad input, 1
on other errors.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.settings import SETTINGS_CHANNEL
from pipeline_code.entrypoints.sagemaker_paths import (
    TRIALS_INPUT, TUNING_JOB_ENV, WHOLE_TRAIN_CHANNEL, current_host, fail, processing_input,
    processing_message, processing_output, unexpected,
)
from pipeline_code.pipeline.panel_shards import fit_panel_in_shards, shard_parts
from pipeline_code.pipeline.panel_stages import job_processes
from pipeline_code.pipeline.panel_tuning import best_of_trials
from pipeline_code.pipeline.settings_args import processing_settings

SHARDS_OUTPUT = "shards"


def main(argv: list[str] | None = None) -> None:
    out = processing_output(SHARDS_OUTPUT)
    try:
        settings = processing_settings("panel_fit", __doc__, argv, processing_input(SETTINGS_CHANNEL))
        host = current_host()
        tuned = best_of_trials(processing_input(TRIALS_INPUT), settings,
                               os.environ.get(TUNING_JOB_ENV))["hyperparameters"]
        with tempfile.TemporaryDirectory() as tmp:
            shard = shard_parts(processing_input("train"), processing_input("test"), Path(tmp))
            if shard is None:
                print(json.dumps({"host": host, "series": 0}))
                return
            metrics = fit_panel_in_shards(shard / "train", shard / "test", tuned, out / host, settings,
                                          jobs=job_processes(shard / "train"),
                                          whole=(processing_input(WHOLE_TRAIN_CHANNEL), processing_input("test")))
    except (DataValidationError, ValueError) as err:
        fail(f"invalid panel shard: {err}", 2, processing_message())
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, processing_message())
    print(json.dumps({"host": host, "shards": [{k: v for k, v in m.items() if isinstance(v, (int, float, str))}
                                                for m in metrics]}))


if __name__ == "__main__":
    main()
