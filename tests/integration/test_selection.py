"""The Select job of one series' cloud run: the tuning job's trials read from their archives, and the
model search.serve picks from them (the combination path runs end to end in
tests/cloud/test_same_forecast.py, "combined")."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pipeline_code.engine.settings import SETTINGS_FILE, Settings
from pipeline_code.pipeline.trials import TrialError, read_trials, select_served

HARMONIC = {"family": "harmonic_arima", "use_counterfactual_data": 1, "detrend": 0, "deseasonalize": 1,
            "fourier_k": 2}
NAIVE = {"family": "seasonal_naive", "use_counterfactual_data": 1}


def archive(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    """A model.tar.gz as SageMaker packs /opt/ml/model (optionally with "./" names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def trial(folder: Path, job: str, candidate: dict, cv_mase: float, prefix: str = "") -> Path:
    model = {"format": "forecast-mlops.model", "family": candidate["family"],
             "metadata": {"hyperparameters": candidate, "metrics": {"cv_mase": cv_mase, "cv_mse": 1.0}}}
    return archive(folder / job / "output" / "model.tar.gz",
                   {"model.json": json.dumps(model).encode(), "arrays.npz": job.encode()}, prefix)


def test_trials_are_read_from_each_jobs_output_archive_and_nothing_else(tmp_path):
    trial(tmp_path, "t0-001-aa", HARMONIC, 0.8)
    trial(tmp_path, "t0-002-bb", NAIVE, 1.1, prefix="./")
    archive(tmp_path / "served" / "model.tar.gz", {"model.json": b"{}"})  # an earlier served model: no trial
    found = read_trials(tmp_path)
    assert [(t["trial"], t["hyperparameters"], t["cv_mase"]) for t in found] == [
        ("t0-001-aa", HARMONIC, 0.8), ("t0-002-bb", NAIVE, 1.1)]


@pytest.mark.parametrize("files, message", [
    ({"arrays.npz": b"x"}, "t0-001-aa: no model.json in model.tar.gz"),
    ({"model.json": b"{not json"}, "t0-001-aa: unreadable model.tar.gz"),
    ({"model.json": json.dumps({"metadata": {"hyperparameters": HARMONIC}}).encode()},
     "t0-001-aa: model.json has no candidate and cv_mase"),
])
def test_a_bad_trial_archive_is_refused_naming_the_trial(tmp_path, files, message):
    archive(tmp_path / "t0-001-aa" / "output" / "model.tar.gz", files)
    with pytest.raises(TrialError, match=message):
        read_trials(tmp_path)


def test_a_truncated_archive_is_refused_naming_the_trial(tmp_path):
    path = trial(tmp_path, "t0-001-aa", HARMONIC, 0.8)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(TrialError, match="t0-001-aa: unreadable model.tar.gz"):
        read_trials(tmp_path)


def test_with_fewer_members_than_the_top_the_best_trials_own_model_is_unpacked(tmp_path):
    trial(tmp_path / "trials", "t0-001-aa", HARMONIC, 0.9)
    trial(tmp_path / "trials", "t0-002-bb", {**HARMONIC, "fourier_k": 3}, 0.7)
    trial(tmp_path / "trials", "t0-003-cc", NAIVE, 1.2)
    record = select_served(tmp_path / "trials", tmp_path / "train", tmp_path / "test", tmp_path / "model",
                           Settings())
    assert record["serve"] == "lowest" and record["trials"] == 3 and record["members"] == ["t0-002-bb"]
    assert record["hyperparameters"] == {**HARMONIC, "fourier_k": 3}
    assert (tmp_path / "model" / "arrays.npz").read_bytes() == b"t0-002-bb"


def run_selection(root: Path) -> subprocess.CompletedProcess:
    settings = root / "processing" / "input" / "settings"
    settings.mkdir(parents=True)
    (settings / SETTINGS_FILE).write_text(Settings().to_json())
    return subprocess.run([sys.executable, "-m", "pipeline_code.entrypoints.selection"],
                          env={"FORECAST_MLOPS_ML_ROOT": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_job_writes_the_model_and_why(tmp_path):
    trial(tmp_path / "processing" / "input" / "trials" / "runs" / "r1" / "models", "t0-001-aa", NAIVE, 1.0)
    result = run_selection(tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "processing" / "output"
    assert json.loads((output / "selection" / "selection.json").read_text())["members"] == ["t0-001-aa"]
    assert (output / "model" / "model.json").is_file()


def test_the_job_with_no_trial_fails_with_the_reason_and_writes_no_model(tmp_path):
    (tmp_path / "processing" / "input" / "trials").mkdir(parents=True)
    result = run_selection(tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no trial's output/model.tar.gz under trials/" in result.stderr
    output = tmp_path / "processing" / "output"
    assert "no trial" in (output / "selection" / "failure").read_text()
    assert not (output / "model").exists()
