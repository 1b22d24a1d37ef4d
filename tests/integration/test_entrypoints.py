"""The SageMaker entrypoints run as plain processes with the /opt/ml layout in a temporary folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import BUNDLED

ARGS = ["--cv-step", "4"]
OBJECTIVE = re.compile(r"cv_mse=([0-9.eE+-]+);")  # the tuning job's metric regex


def run(module: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORECAST_MLOPS_ML_ROOT": str(root), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", f"pipeline_code.entrypoints.{module}", *args],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ml")
    raw = root / "processing" / "input" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(BUNDLED, raw / "upload.csv")
    result = run("processing", root, *ARGS)
    assert result.returncode == 0, result.stderr
    return root / "processing" / "output"


def test_processing_writes_train_test_and_report(processed):
    train = (processed / "train" / "train.csv").read_text().splitlines()
    test = (processed / "test" / "test.csv").read_text().splitlines()
    assert train[0] == "timestamp,value,value_counterfactual,is_counterfactual,is_outlier"
    assert len(test) == 27 and len(train) == 1355 - 26 + 1
    report = json.loads((processed / "report" / "processing.json").read_text())
    assert report["observations"] == 1355 and report["episode"] is None


def test_processing_refuses_bad_data_with_the_reason_on_stderr(tmp_path):
    raw = tmp_path / "processing" / "input" / "raw"
    raw.mkdir(parents=True)
    (raw / "bad.csv").write_text("timestamp;value\n2020-01-03;1\n")
    result = run("processing", tmp_path)
    assert result.returncode == 2
    assert "semicolons" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "processing" / "output" / "train").exists()


def _training_root(tmp_path: Path, processed: Path, hyperparameters: dict) -> Path:
    root = tmp_path / "ml"
    for channel in ("train", "test"):
        shutil.copytree(processed / channel, root / "input" / "data" / channel)
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "checkpoints").mkdir()
    return root


HYPERPARAMETERS = {  # as SageMaker passes them: all strings
    "use_counterfactual_data": "1", "detrend": "0", "deseasonalize": "0", "fourier_k": "6",
    "horizon": "26", "season_length": "52.17857142857143", "cv_window": "417", "cv_step": "4",
}


def test_training_prints_the_objective_and_writes_the_model(tmp_path, processed):
    root = _training_root(tmp_path, processed, HYPERPARAMETERS)
    result = run("training", root)
    assert result.returncode == 0, result.stderr
    match = OBJECTIVE.search(result.stdout)
    assert match and float(match.group(1)) > 0
    model = json.loads((root / "model" / "model.json").read_text())
    assert model["metadata"]["hyperparameters"]["fourier_k"] == 6
    assert model["metadata"]["metrics"]["cv_mse"] == pytest.approx(float(match.group(1)), rel=1e-6)
    assert model["metadata"]["diagnostics"]["ljung_box"]
    # a restarted (spot) job resumes from the checkpoint and reports the same objective
    shutil.rmtree(root / "model")
    again = run("training", root)
    assert OBJECTIVE.search(again.stdout).group(1) == match.group(1)
    assert (root / "model" / "model.json").is_file()


def test_training_failure_writes_the_failure_file(tmp_path, processed):
    root = _training_root(tmp_path, processed, {**HYPERPARAMETERS, "fourier_k": "eleven"})
    result = run("training", root)
    assert result.returncode == 2
    assert "must be numbers" in (root / "output" / "failure").read_text()


def test_evaluation_reads_a_model_tarball_and_gates(tmp_path, processed):
    root = _training_root(tmp_path, processed, HYPERPARAMETERS)
    assert run("training", root).returncode == 0
    eval_root = tmp_path / "eval"
    inputs = eval_root / "processing" / "input"
    for channel in ("train", "test"):
        shutil.copytree(processed / channel, inputs / channel)
    (inputs / "model").mkdir(parents=True)
    with tarfile.open(inputs / "model" / "model.tar.gz", "w:gz") as archive:  # as SageMaker packs it
        for item in (root / "model").iterdir():
            archive.add(item, arcname=item.name)
    result = run("evaluation", eval_root, *ARGS)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((eval_root / "processing/output/evaluation/evaluation.json").read_text())
    assert evaluation["gate"]["passed"] is True and evaluation["champion"] is None
    assert evaluation["challenger"]["mase"] < evaluation["seasonal_naive"]["mase"]
    forecast = (eval_root / "processing/output/forecast/forecast.csv").read_text().splitlines()
    assert forecast[0] == "timestamp,mean,lower_80,upper_80,lower_95,upper_95"
    assert forecast[1].startswith("2017-01-27") and len(forecast) == 27

    # the same model as champion: a re-run on the same data is not newer, so it is not promoted
    shutil.copytree(root / "model", inputs / "champion")
    shutil.rmtree(eval_root / "processing" / "output")
    result = run("evaluation", eval_root, *ARGS)
    evaluation = json.loads((eval_root / "processing/output/evaluation/evaluation.json").read_text())
    assert evaluation["champion"]["mase"] == pytest.approx(evaluation["challenger"]["mase"])
    assert evaluation["gate"]["passed"] is False


def test_the_state_machines_job_arguments_parse_into_the_same_settings():
    """What the CDK app passes as ContainerArguments is what the entrypoints read."""
    from dataclasses import replace

    from pipeline_code.entrypoints import evaluation, processing
    from pipeline_code.engine.settings import Settings
    from pipeline_code.pipeline.settings_args import settings_from_args
    from stacks.settings import InfraSettings

    infra = replace(InfraSettings(), horizon=13, cv_window=300, eval_origins=10, min_improvement=0.02)
    for module, arguments in ((processing, infra.processing_arguments()),
                              (evaluation, infra.evaluation_arguments())):
        settings = settings_from_args(module.build_parser().parse_args(arguments))
        assert settings.data.horizon == 13 and settings.cv.window == 300
        assert settings.gate.eval_origins == 10
        assert settings.data.season_length == pytest.approx(Settings().data.season_length, rel=1e-6)
    assert settings.gate.min_improvement == 0.02
