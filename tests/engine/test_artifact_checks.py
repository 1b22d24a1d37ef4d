"""A truncated, inconsistent or non-finite artifact is refused when it loads, naming the file and the
problem; sound artifacts of every forecasting core load."""

import json
import math
import shutil

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ArtifactError, ModelArtifact
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.estimator import HarmonicArimaForecaster
from tests.conftest import weekly_series


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small fitted harmonic model, saved once; tests change copies of it."""
    t = np.arange(400)
    noise = 0.02 * np.random.default_rng(4).standard_normal(t.size)
    y = np.exp(5 + 0.1 * np.sin(2 * np.pi * t / 52.18) + noise)
    fit = HarmonicArimaForecaster(ModelSpec(fourier_k=2), window=150, horizon=4).fit(weekly_series(y))
    return fit.artifact.save(tmp_path_factory.mktemp("fitted") / "model")


@pytest.fixture
def model(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "v0001")


def edit_json(folder, change) -> None:
    path = folder / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))  # NaN and Infinity are written as JSON's extensions


def refused(folder, *fragments: str) -> str:
    with pytest.raises(ArtifactError) as info:
        ModelArtifact.load(folder)
    message = str(info.value)
    for fragment in (folder.name, *fragments):
        assert fragment in message, message
    with pytest.raises(ArtifactError):
        Forecaster.load(folder)
    return message


def test_the_saved_artifact_loads_and_forecasts(model):
    forecast = Forecaster.load(model).predict(8, 0.9)
    assert np.all(np.isfinite(forecast.mean))


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9])
def test_truncated_arrays_are_refused(model, keep):
    path = model / "arrays.npz"
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    refused(model, "arrays.npz")


@pytest.mark.parametrize("arrays, problem", [
    ({"other": np.zeros((5, 4))}, "lacks the array 'calibration_errors'"),
    ({"calibration_errors": np.zeros(5)}, "shape (5,)"),
    ({"calibration_errors": np.zeros((1, 4))}, "shape (1, 4)"),
    ({"calibration_errors": np.zeros((5, 0))}, "shape (5, 0)"),
    ({"calibration_errors": np.array([[0.1, np.nan], [0.2, 0.1]])}, "non-finite"),
    ({"calibration_errors": np.array([["a", "b"], ["c", "d"]])}, "dtype <U1"),
])
def test_inconsistent_arrays_are_refused(model, arrays, problem):
    np.savez(model / "arrays.npz", **arrays)
    refused(model, "arrays.npz", problem)


def test_pickled_arrays_are_refused_not_unpickled(model):
    np.savez(model / "arrays.npz", calibration_errors=np.array([{"x": 1}, None], dtype=object))
    refused(model, "arrays.npz", "not a readable .npz")


@pytest.mark.parametrize("text", ['{"format": "forecast-mlops.model", "spec": {', "", "[1, 2]"])
def test_truncated_or_foreign_json_is_refused(model, text):
    (model / "model.json").write_text(text)
    refused(model, "model.json")


@pytest.mark.parametrize("key", ["spec", "freq", "last_timestamp", "t_last", "parameters", "history"])
def test_a_missing_key_is_named(model, key):
    edit_json(model, lambda d: d.pop(key))
    refused(model, "model.json", f"missing key(s) ['{key}']")


@pytest.mark.parametrize("key, value, problem", [
    ("t_last", "399", "t_last must be a JSON integer"),
    ("t_last", True, "t_last must be a JSON integer"),
    ("t_last", -1, "t_last must be >= 0"),
    ("parameters", [], "parameters must be a JSON object"),
    ("freq", "fortnightly", "unsupported frequency"),
    ("last_timestamp", "2007-08-31T00:00", "is not an ISO date"),
    ("last_timestamp", "2007-08-30", "is not a W-FRI timestamp"),
    ("history", {"timestamps": ["2007-08-31"], "values": []}, "equal length"),
    ("core", "tbats_native", "unknown forecasting core 'tbats_native'"),
])
def test_wrong_types_and_values_are_named(model, key, value, problem):
    edit_json(model, lambda d: d.__setitem__(key, value))
    refused(model, "model.json", problem)


@pytest.mark.parametrize("key, index, value", [
    ("phi", 0, math.nan), ("beta", 1, math.inf), ("x_tail", -1, -math.inf), ("theta", None, math.nan),
    ("sigma2", None, math.inf), ("error_scale", None, math.nan), ("u_last", None, math.nan),
])
def test_non_finite_parameters_are_refused(model, key, index, value):
    def poison(document):
        if index is None:
            document["parameters"][key] = value
        else:
            document["parameters"][key][index] = value
    edit_json(model, poison)
    refused(model, "model.json", f"parameters.{key}", "finite")


@pytest.mark.parametrize("change, problem", [
    (lambda p: p["beta"].pop(), "parameters.beta has"),
    (lambda p: p["x_tail"].append(0.0), "parameters.x_tail has"),
    (lambda p: p.__setitem__("diff", 2), "parameters.diff must be 0 or 1"),
    (lambda p: p.__setitem__("sigma2", -1.0), "parameters.sigma2 must be a number >= 0"),
    (lambda p: p.__setitem__("phi", ["0.5"]), "parameters.phi must be a list of numbers"),
    (lambda p: p.pop("theta"), "parameters.theta must be a number"),
    (lambda p: p.pop("error_scale"), "parameters.error_scale"),
])
def test_parameters_inconsistent_with_the_model_are_refused(model, change, problem):
    edit_json(model, lambda d: change(d["parameters"]))
    refused(model, "model.json", problem)


def test_a_specification_the_model_cannot_take_is_refused(model):
    edit_json(model, lambda d: d["spec"].__setitem__("fourier_k", 40))
    refused(model, "model.json", "fourier_k=40")


def test_sections_of_other_cores_and_combinations_load_or_are_refused(model):
    harmonic = json.loads((model / "model.json").read_text())
    naive = {"core": "seasonal_naive", "spec": {"period": 52}, "weight": 0.4,
             "parameters": {"last_season": [5.0] * 52, "sigma2": 0.01}}
    path = {"core": "path", "spec": {"family": "auto_ets"}, "weight": 0.6,
            "parameters": {"centre": [5.0] * 104, "variance": [0.01] * 104}}
    member = {"core": "harmonic_arima", "spec": harmonic["spec"], "weight": 0.0,
              "parameters": {k: v for k, v in harmonic["parameters"].items() if k != "error_scale"}}

    def as_combination(members):
        def change(document):
            document.update(core="combination", family="combination", spec={"weights": [0.5] * len(members)})
            document["parameters"] = {"members": members, "error_scale": 0.02}
        return change

    edit_json(model, as_combination([naive, path, member]))
    assert ModelArtifact.load(model).core == "combination"
    edit_json(model, as_combination([naive, {**path, "parameters": {"centre": [5.0], "variance": []}}]))
    refused(model, "members[1]", "parameters.variance has 0 values")
    edit_json(model, as_combination([{**naive, "parameters": {"last_season": [], "sigma2": 0.01}}]))
    refused(model, "members[0]", "last_season")
    edit_json(model, as_combination([]))
    refused(model, "parameters.members must be a non-empty list")
