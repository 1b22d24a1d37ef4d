"""SageMaker processing job: evaluate the tuned model against seasonal naive and the approved model.

Inputs under ``/opt/ml/processing/input/``: ``train/``, ``test/``, ``model/`` (one series: the Select
job's model, as files or a ``model.tar.gz``; a panel fitted in shards: every instance's partial panel,
merged here into one) and, when a model is approved, ``champion/``. Outputs
``/opt/ml/processing/output/evaluation/evaluation.json`` (with the gate decision),
``/opt/ml/processing/output/forecast/forecast.csv`` (and a panel's ``backtest.csv``) and
``/opt/ml/processing/output/served/model.tar.gz`` (the model to register: the challenger, or on a
first run the better baseline).
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

from pipeline_code.engine.core.artifact import MODEL_JSON
from pipeline_code.engine.core.panel_artifact import PANEL_JSON, is_panel
from pipeline_code.engine.settings import SETTINGS_CHANNEL, SettingsError
from pipeline_code.pipeline.settings_args import processing_settings
from pipeline_code.pipeline.panel_shards import merged_shards
from pipeline_code.pipeline.layout import BACKTEST_FILE, FORECAST_FILE, MODEL_ARCHIVE
from pipeline_code.pipeline.panel_stages import job_processes
from pipeline_code.pipeline.stages import run_evaluation, served_model_dir
from pipeline_code.entrypoints.sagemaker_paths import (
    fail, processing_input, processing_message, processing_output, unexpected,
)


def model_folder(path: Path) -> Path | None:
    """The artifact folder inside ``path``: extract ``model.tar.gz`` archives safely if that is what
    came; a panel fitted in shards (a partial panel per instance, docs/panel.md) is merged into one."""
    if not path.is_dir() or not any(path.iterdir()):
        return None
    if (path / MODEL_JSON).is_file() or is_panel(path):
        return path
    archives = sorted(path.rglob("*.tar.gz"))
    if archives:
        target = path / "extracted"
        for index, archive in enumerate(archives):
            folder = target / f"{index:05d}" if len(archives) > 1 else target
            folder.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                tar.extractall(folder, filter="data")
        path = target
    merged = merged_shards(path, path / "merged")
    if merged is not None:
        return merged
    found = sorted({p.parent for name in (MODEL_JSON, PANEL_JSON) for p in path.rglob(name)})
    if not found:
        raise FileNotFoundError(f"no {MODEL_JSON} or {PANEL_JSON} under {path.name}/")
    return found[0]


def pack_model(folder: Path, archive: Path) -> Path:
    """The served model as SageMaker packs a training job's model: the artifact files at the top."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    return archive


def main(argv: list[str] | None = None) -> None:
    out = processing_output("evaluation")
    try:
        settings = processing_settings("evaluation", __doc__, argv, processing_input(SETTINGS_CHANNEL))
        model = model_folder(processing_input("model"))
        if model is None:
            raise FileNotFoundError("no model under input/model/")
        evaluation = run_evaluation(
            processing_input("train"), processing_input("test"), model,
            model_folder(processing_input("champion")), out, settings,
            jobs=job_processes(processing_input("train")),
        )
        forecast_dir = processing_output("forecast")
        forecast_dir.mkdir(parents=True, exist_ok=True)
        for name in (FORECAST_FILE, BACKTEST_FILE):  # a panel's per-item backtest goes beside its forecast
            if (out / name).is_file():
                shutil.move(str(out / name), forecast_dir / name)
        pack_model(served_model_dir(model, out, evaluation), processing_output("served") / MODEL_ARCHIVE)
    except SettingsError as err:
        fail(f"invalid run document: {err}", 2, processing_message())
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, processing_message())
    print(json.dumps({"gate": evaluation["gate"], "mase": evaluation["challenger"]["mase"]}))


if __name__ == "__main__":
    main()
