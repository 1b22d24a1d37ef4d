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

import numpy as np
import pytest

from pipeline_code.engine.settings import SETTINGS_FILE, Settings
from pipeline_code.engine.tuning import candidate_space, tune
from pipeline_code.pipeline.stages import read_processed
from tests.conftest import BUNDLED

ARGS = ["--cv-step", "4"]
# The run document the training and selection jobs of these tests read (as the starter writes it): the
# flags above, and a small search of the NumPy families (8 harmonic candidates; ARIMA offers none for
# weekly data), serving equal weights of its two members.
DOCUMENT = Settings.from_dict({"cv": {"step": 4}, "search": {
    "fourier_k": [2, 6], "use_counterfactual_data": [1], "families": ["harmonic_arima", "seasonal_naive", "arima"],
    "serve_top": 2}})
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
    # SageMaker's ExitMessage: the first 1 KB of output/message, which the failure notification carries.
    assert "semicolons" in (tmp_path / "output" / "message").read_text()


@pytest.mark.parametrize("module", ["processing", "evaluation", "selection", "panel_fit"])
def test_a_processing_job_refuses_a_bad_run_document_with_a_reason(tmp_path, module):
    """Version skew between the starter and the image: the document reaches the job, which says why
    it cannot use it instead of crashing."""
    settings = tmp_path / "processing" / "input" / "settings"
    settings.mkdir(parents=True)
    (settings / SETTINGS_FILE).write_text(json.dumps({"cv": {"step": "x"}}))
    result = run(module, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = (tmp_path / "output" / "message").read_text()
    assert "cv.step: expected an integer" in message


def test_a_reason_is_cut_to_1_kb_on_a_character_boundary(tmp_path, monkeypatch):
    from pipeline_code.entrypoints.sagemaker_paths import REASON_BYTES, fail

    target = tmp_path / "output" / "message"
    with pytest.raises(SystemExit):
        fail("é" * 2000, 2, target)
    text = target.read_bytes().decode("utf-8")  # whole characters: still UTF-8
    assert text == "é" * (REASON_BYTES // 2)


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


def trial_of(family: str) -> dict[str, str]:
    """A trial's hyperparameters as the Grid tuning job passes them: strings, its own entry included."""
    return {"family": f'"{family}"', "_tuning_objective_metric": "cv_mase"}


def test_a_trial_scores_every_candidate_of_its_family_and_resumes(tmp_path, processed):
    root = _training_root(tmp_path, processed, trial_of("harmonic_arima"))
    result = run("training", root)
    assert result.returncode == 0, result.stderr
    objective = float(OBJECTIVE.search(result.stdout).group(1))
    trial = json.loads((root / "model" / "trial.json").read_text())
    harmonic = [i for i, c in enumerate(candidate_space(DOCUMENT)) if c["family"] == "harmonic_arima"]
    assert [c["index"] for c in trial["candidates"]] == harmonic and len(harmonic) == 8
    assert objective == pytest.approx(min(c["cv_mase"] for c in trial["candidates"]), rel=1e-6)
    with np.load(root / "model" / "forecasts.npz") as forecasts:
        assert sorted(map(int, forecasts.files)) == harmonic
    # a restarted (spot) job resumes from the checkpoint and reports the same objective
    shutil.rmtree(root / "model")
    again = run("training", root)
    assert OBJECTIVE.search(again.stdout).group(1) == OBJECTIVE.search(result.stdout).group(1)
    assert (root / "model" / "trial.json").is_file()


def test_a_family_that_offers_nothing_here_gets_no_trial(tmp_path, processed):
    """Seasonal ARIMA offers no model for a 52-week season: the run document's Grid leaves it out, and
    a training job that names it anyway is refused (it would score nothing)."""
    assert "arima" in DOCUMENT.search.families and "arima" not in DOCUMENT.offered_families()
    assert DOCUMENT.parameter_ranges()["CategoricalParameterRanges"][0]["Values"] == DOCUMENT.offered_families()
    root = _training_root(tmp_path, processed, trial_of("arima"))
    result = run("training", root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hyperparameter family='arima' is not one of ['harmonic_arima', 'seasonal_naive']" in (
        root / "output" / "failure").read_text()


@pytest.mark.parametrize("hyperparameters, message", [
    ({"family": "prophet"}, "hyperparameter family='prophet' is not one of ['harmonic_arima', 'seasonal_naive']"
                            " for this run document"),
    ({"family": "ets"}, "hyperparameter family='ets' is not one of"),  # not one of the document's families
    ({}, "missing hyperparameter(s) ['family']"),
    ({"family": "seasonal_naive", "cv_window": "417"}, "unknown hyperparameter(s) ['cv_window']"),
    ({"family": "harmonic_arima", "fourier_k": "6"}, "unknown hyperparameter(s) ['fourier_k']"),
])
def test_a_trial_takes_only_a_family_of_the_run_document(tmp_path, processed, hyperparameters, message):
    """Settings reach a training job only through the run document: any other name is refused."""
    root = _training_root(tmp_path, processed, hyperparameters)
    result = run("training", root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in (root / "output" / "failure").read_text()


def test_the_trials_selection_and_evaluation_serve_what_the_local_tune_serves(tmp_path, processed):
    """The cloud's chain for one series: a trial per family, the Select job, then evaluation."""
    select_root = tmp_path / "select"
    inputs = select_root / "processing" / "input"
    for name in DOCUMENT.offered_families():  # the Grid's trials
        root = _training_root(tmp_path / name, processed, trial_of(name))
        assert run("training", root).returncode == 0
        with tarfile.open(_mkdir(inputs / "trials" / f"t-{name}" / "output") / "model.tar.gz", "w:gz") as archive:
            for item in (root / "model").iterdir():  # as SageMaker packs /opt/ml/model
                archive.add(item, arcname=item.name)
    for channel in ("train", "test"):
        shutil.copytree(processed / channel, inputs / channel)
    _mkdir(inputs / "settings").joinpath(SETTINGS_FILE).write_text(DOCUMENT.to_json())
    result = run("selection", select_root)
    assert result.returncode == 0, result.stderr
    output = select_root / "processing" / "output"
    selection = json.loads((output / "selection" / "selection.json").read_text())
    train = read_processed(processed / "train", DOCUMENT.data.freq)
    local = tune(train.series.values, train.counterfactual, DOCUMENT, jobs=1, progress=False)
    assert selection["hyperparameters"] == local.best["hyperparameters"] and selection["trials"] == 2
    assert selection["serve"] == "equal top 2"
    assert selection["members"] == [f"t-{c['family']}" for c in local.best["hyperparameters"]["members"]]
    written = json.loads((output / "selection" / "tuning.json").read_text())
    assert [c["cv_mase"] for c in written["candidates"]] == [c["cv_mase"] for c in local.candidates]

    eval_root = tmp_path / "eval"
    inputs = eval_root / "processing" / "input"
    for channel in ("train", "test"):
        shutil.copytree(processed / channel, inputs / channel)
    with tarfile.open(_mkdir(inputs / "model") / "model.tar.gz", "w:gz") as archive:
        for item in (output / "model").iterdir():
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
    shutil.copytree(output / "model", inputs / "champion")
    shutil.rmtree(eval_root / "processing" / "output")
    result = run("evaluation", eval_root, *ARGS)
    evaluation = json.loads((eval_root / "processing/output/evaluation/evaluation.json").read_text())
    assert evaluation["champion"]["mase"] == pytest.approx(evaluation["challenger"]["mase"])
    assert evaluation["gate"]["passed"] is False


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_training_without_the_settings_channel_fails_clearly(tmp_path, processed):
    root = _training_root(tmp_path, processed, trial_of("seasonal_naive"))
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
