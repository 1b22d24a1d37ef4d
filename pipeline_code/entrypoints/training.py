"""SageMaker training job (one HPO candidate): CV objective on ``train``, final fit on train + test.

Hyperparameters arrive as strings in ``/opt/ml/input/config/hyperparameters.json``; prints the
objective line ``cv_mse=<value>;`` for the tuning job's metric regex; writes the artifact to
``/opt/ml/model/``; a reason to ``/opt/ml/output/failure`` on error. A finished result is kept under
``/opt/ml/checkpoints/`` so a restarted spot job does not redo it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.settings import Settings
from pipeline_code.pipeline.stages import run_training
from pipeline_code.entrypoints.sagemaker_paths import fail, training_paths, unexpected

STATIC = {"horizon": int, "season_length": float, "cv_window": int, "cv_step": int}
TUNED = ("use_counterfactual_data", "detrend", "deseasonalize", "fourier_k")


def parse_hyperparameters(raw: dict[str, str]) -> tuple[dict[str, int], Settings]:
    """Split SageMaker's string hyperparameters into the tuned ones and the static settings."""
    missing = [name for name in TUNED if name not in raw]
    if missing:
        raise ValueError(f"missing hyperparameter(s) {missing}")
    try:
        tuned = {name: int(str(raw[name]).strip('"')) for name in TUNED}
        static = {name: cast(str(raw[name]).strip('"')) for name, cast in STATIC.items() if name in raw}
    except ValueError as err:
        raise ValueError(f"hyperparameters must be numbers: {err}") from None
    base = Settings()
    settings = replace(
        base,
        data=replace(base.data, horizon=static.get("horizon", base.data.horizon),
                     season_length=static.get("season_length", base.data.season_length)),
        cv=replace(base.cv, window=static.get("cv_window", base.cv.window),
                   step=static.get("cv_step", base.cv.step)),
    )
    return tuned, settings


def main() -> None:
    paths = training_paths()
    try:
        raw = json.loads(paths["hyperparameters"].read_text())
        tuned, settings = parse_hyperparameters(raw)
        metrics = _train_or_resume(tuned, settings, paths)
    except (DataValidationError, ValueError) as err:
        fail(f"invalid training input: {err}", 2, paths["failure"])
    except Exception as err:  # noqa: BLE001 - any failure must end the job with a reason
        fail(unexpected(err), 1, paths["failure"])
    print(f"cv_mse={metrics['cv_mse']:.6f};")
    print(f"cv_mase={metrics['cv_mase']:.6f};")


def _train_or_resume(tuned: dict[str, int], settings: Settings, paths: dict[str, Path]) -> dict:
    key = hashlib.sha256(json.dumps([tuned, settings.to_dict()], sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = paths["checkpoints"] / key
    if (checkpoint / "metrics.json").is_file():
        shutil.copytree(checkpoint / "model", paths["model"], dirs_exist_ok=True)
        return json.loads((checkpoint / "metrics.json").read_text())
    metrics = run_training(
        paths["train"], paths["test"], tuned, paths["model"], settings, report_dir=paths["output_data"]
    )
    if paths["checkpoints"].is_dir():
        shutil.copytree(paths["model"], checkpoint / "model", dirs_exist_ok=True)
        (checkpoint / "metrics.json").write_text(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
