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

from pipeline_code.engine.settings import SETTINGS_FILE, Settings
from tests.conftest import BUNDLED

ARGS = ["--cv-step", "4"]
# The run document every job of these tests reads (as the starter writes it): the flags above, resolved.
DOCUMENT = Settings.from_dict({"cv": {"step": 4}})
OBJECTIVE = re.compile(r"cv_mase=([0-9.eE+-]+);")  # the tuning job's metric regex


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
    (root / "input" / "data" / "settings").mkdir()
    (root / "input" / "data" / "settings" / SETTINGS_FILE).write_text(DOCUMENT.to_json())
    return root


HYPERPARAMETERS = {  # as a SageMaker tuning job passes them: all strings, its own entry included
    "use_counterfactual_data": "1", "detrend": "0", "deseasonalize": "0", "fourier_k": "6",
    "_tuning_objective_metric": "cv_mase",
}


def test_training_prints_the_objective_and_writes_the_model(tmp_path, processed):
    root = _training_root(tmp_path, processed, HYPERPARAMETERS)
    result = run("training", root)
    assert result.returncode == 0, result.stderr
    match = OBJECTIVE.search(result.stdout)
    assert match and float(match.group(1)) > 0
    model = json.loads((root / "model" / "model.json").read_text())
    assert model["metadata"]["hyperparameters"]["fourier_k"] == 6
    assert model["metadata"]["metrics"]["cv_mase"] == pytest.approx(float(match.group(1)), rel=1e-6)
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


@pytest.mark.parametrize("extra", [{"cv_window": "417"}, {"cv-window": "417"}, {"deseasonalise": "0"}])
def test_training_takes_only_the_tuned_hyperparameters(tmp_path, processed, extra):
    """Settings reach a training job only through the run document: any other name is refused."""
    root = _training_root(tmp_path, processed, {**HYPERPARAMETERS, **extra})
    result = run("training", root)
    assert result.returncode == 2
    assert f"unknown hyperparameter(s) {sorted(extra)}" in (root / "output" / "failure").read_text()


def test_training_without_the_settings_channel_fails_clearly(tmp_path, processed):
    root = _training_root(tmp_path, processed, HYPERPARAMETERS)
    shutil.rmtree(root / "input" / "data" / "settings")
    assert run("training", root).returncode == 2
    assert "no run document" in (root / "output" / "failure").read_text()


def test_processing_reads_its_settings_input(tmp_path):
    """The state machine passes no arguments: the document in the job's settings input is the way in."""
    inputs = tmp_path / "processing" / "input"
    (inputs / "raw").mkdir(parents=True)
    shutil.copy(BUNDLED, inputs / "raw" / "upload.csv")
    (inputs / "settings").mkdir()
    document = Settings.from_dict({"data": {"horizon": 13}, "cv": {"window": 300}, "gate": {"eval_origins": 10}})
    (inputs / "settings" / SETTINGS_FILE).write_text(document.to_json())
    result = run("processing", tmp_path)
    assert result.returncode == 0, result.stderr
    test = (tmp_path / "processing" / "output" / "test" / "test.csv").read_text().splitlines()
    assert len(test) == 1 + 13
    report = json.loads((tmp_path / "processing" / "output" / "report" / "processing.json").read_text())
    assert Settings.from_dict(report["settings"]) == document
