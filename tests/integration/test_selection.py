"""The Select job of one series' cloud run: the tuning job's trials (one per family) read from their
archives and merged into the local tune's result (the whole chain runs in
tests/integration/test_entrypoints.py and, through the state machine, tests/cloud/test_same_forecast.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.engine.settings import SETTINGS_FILE, Settings
from pipeline_code.engine.tuning import candidate_space, selection_grid
from pipeline_code.pipeline.trials import NOT_SCORED, TrialError, merge_trials, read_trials, run_trial, select_served

# A small search of the NumPy families: 4 harmonic candidates and seasonal naive, on 700 weeks.
SETTINGS = Settings.from_dict({"cv": {"window": 260, "step": 4}, "search": {
    "fourier_k": [2, 6], "use_counterfactual_data": [1], "detrend": [0], "families": ["harmonic_arima", "seasonal_naive"],
    "serve_top": 2}})


def archive(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    """A model.tar.gz as SageMaker packs /opt/ml/model (optionally with "./" names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


@pytest.fixture(scope="module")
def trials(tmp_path_factory, gasoline) -> Path:
    """Each family's trial, packed as the tuning job's training jobs leave them under the run's models/."""
    root = tmp_path_factory.mktemp("trials")
    train = root / "train"
    train.mkdir()
    rows = ["timestamp,value,value_counterfactual,is_counterfactual,is_outlier"]
    rows += [f"{t.isoformat()},{v},{v},0,0" for t, v in zip(gasoline.timestamps[:700], gasoline.values[:700])]
    (train / "train.csv").write_text("\n".join(rows) + "\n")
    for name in SETTINGS.search.families:
        model = root / "model" / name
        run_trial(train, name, model, SETTINGS)
        archive(root / "models" / f"t0-{name}" / "output" / "model.tar.gz",
                {p.name: p.read_bytes() for p in model.iterdir()}, prefix="./" if name == "seasonal_naive" else "")
    archive(root / "models" / "served" / "model.tar.gz", {"model.json": b"{}"})  # an earlier served model: no trial
    return root


def test_trials_are_read_from_each_jobs_output_archive_and_nothing_else(trials):
    found = read_trials(trials / "models")
    assert [(t["trial"], t["family"]) for t in found] == [("t0-harmonic_arima", "harmonic_arima"),
                                                          ("t0-seasonal_naive", "seasonal_naive")]
    space = candidate_space(SETTINGS)
    assert [c["index"] for t in found for c in t["candidates"]] == list(range(len(space)))
    splits = selection_grid(700, SETTINGS).size
    assert all(f.shape == (splits, SETTINGS.data.horizon) for t in found for f in t["forecasts"].values())


def test_only_the_named_tuning_jobs_trials_are_read(trials, tmp_path):
    """A retried tuning job leaves the earlier attempt's trials under the same prefix."""
    import shutil

    for name in ("t0-harmonic_arima", "t0-seasonal_naive"):
        shutil.copytree(trials / "models" / name, tmp_path / name.replace("t0-", "t1-"))
        shutil.copytree(trials / "models" / name, tmp_path / name)
    shutil.copytree(trials / "models" / "t0-seasonal_naive", tmp_path / "t10-seasonal_naive")
    assert [t["trial"] for t in read_trials(tmp_path, "t1")] == ["t1-harmonic_arima", "t1-seasonal_naive"]
    assert len(read_trials(tmp_path)) == 5
    with pytest.raises(TrialError, match="no trial's output/model.tar.gz of tuning job t2 under"):
        select_served(tmp_path, tmp_path, tmp_path, tmp_path / "model", SETTINGS, tuning_job="t2")


def test_merged_trials_are_the_local_tune(trials, gasoline):
    from pipeline_code.engine.tuning import tune

    target = gasoline.values[:700]
    merged, source = merge_trials(read_trials(trials / "models"), SETTINGS, target)
    local = tune(target, target, SETTINGS, jobs=1, progress=False)
    assert [c["cv_mase"] for c in merged.candidates] == [c["cv_mase"] for c in local.candidates]
    assert merged.best["hyperparameters"] == local.best["hyperparameters"]
    assert merged.serve == "equal top 2" and source[len(candidate_space(SETTINGS)) - 1] == "t0-seasonal_naive"


def test_a_family_whose_trial_failed_is_scored_failed_and_the_rest_still_serve(trials, gasoline):
    (harmonic, _) = read_trials(trials / "models")
    merged, _ = merge_trials([harmonic], SETTINGS, gasoline.values[:700])
    naive = merged.candidates[len(candidate_space(SETTINGS)) - 1]
    assert naive["failed"] == NOT_SCORED and naive["cv_mase"] == np.inf
    assert merged.failures() == {"seasonal_naive": NOT_SCORED}
    assert merged.best["hyperparameters"]["family"] == "harmonic_arima"  # one member: the lowest serves


def test_a_trial_of_another_run_document_is_refused_naming_it(trials, gasoline):
    other = Settings.from_dict({**SETTINGS.to_dict(), "search": {**SETTINGS.to_dict()["search"], "fourier_k": [3, 6]}})
    with pytest.raises(TrialError, match=r"t0-harmonic_arima: candidate 0 .* is not this run document's candidate"):
        merge_trials(read_trials(trials / "models"), other, gasoline.values[:700])


@pytest.mark.parametrize("files, message", [
    ({"forecasts.npz": b"x"}, "t0-001-aa: no trial.json in model.tar.gz"),
    ({"trial.json": b"{not json"}, "t0-001-aa: not a trial"),
    ({"trial.json": json.dumps({"format": "forecast-mlops.model"}).encode()}, "t0-001-aa: not a trial .*format"),
    ({"trial.json": json.dumps({"format": "forecast-mlops.trial", "candidates": [{"index": 0}]}).encode()},
     "t0-001-aa: not a trial"),
])
def test_a_bad_trial_archive_is_refused_naming_the_trial(tmp_path, files, message):
    archive(tmp_path / "t0-001-aa" / "output" / "model.tar.gz", files)
    with pytest.raises(TrialError, match=message):
        read_trials(tmp_path)


def test_a_truncated_archive_is_refused_naming_the_trial(tmp_path, trials):
    path = tmp_path / "t0-001-aa" / "output" / "model.tar.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes((trials / "models" / "t0-seasonal_naive" / "output" / "model.tar.gz").read_bytes()[:20])
    with pytest.raises(TrialError, match="t0-001-aa: unreadable model.tar.gz"):
        read_trials(tmp_path)


def run_selection(root: Path) -> subprocess.CompletedProcess:
    settings = root / "processing" / "input" / "settings"
    settings.mkdir(parents=True)
    (settings / SETTINGS_FILE).write_text(Settings().to_json())
    return subprocess.run([sys.executable, "-m", "pipeline_code.entrypoints.selection"],
                          env={"FORECAST_MLOPS_ML_ROOT": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_job_with_no_trial_fails_with_the_reason_and_writes_no_model(tmp_path):
    (tmp_path / "processing" / "input" / "trials").mkdir(parents=True)
    result = run_selection(tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no trial's output/model.tar.gz under trials/" in result.stderr
    output = tmp_path / "processing" / "output"
    assert "no trial" in (tmp_path / "output" / "message").read_text()  # the job's ExitMessage
    assert not (output / "model").exists()
