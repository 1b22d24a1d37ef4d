"""The artifact is plain data, round-trips, and serves calibrated intervals."""

import json
import zipfile
from datetime import timedelta

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ArtifactError, ModelArtifact
from pipeline_code.engine.estimator import HarmonicArimaForecaster
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.spec import ModelSpec


@pytest.fixture(scope="module")
def fitted(gasoline):
    return HarmonicArimaForecaster(ModelSpec(fourier_k=4), window=300, horizon=26, step=2).fit(gasoline)


def test_artifact_round_trip_is_plain_json_and_npz(fitted, tmp_path):
    folder = fitted.artifact.save(tmp_path / "model")
    document = json.loads((folder / "model.json").read_text())
    assert (document["format"], document["family"]) == ("forecast-mlops.model", "harmonic_arima")
    with zipfile.ZipFile(folder / "arrays.npz") as archive:
        assert archive.namelist() == ["calibration_errors.npy", "calibration_scales.npy"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["calibration_errors"].dtype == np.float64
        assert arrays["calibration_scales"].shape == (arrays["calibration_errors"].shape[0],)
    loaded = Forecaster.load(folder)
    a, b = fitted.forecaster.predict(52, 0.9), loaded.predict(52, 0.9)
    np.testing.assert_allclose(a.mean, b.mean)
    np.testing.assert_allclose(a.upper, b.upper)


def test_missing_or_foreign_artifact_is_a_clear_error(fitted, tmp_path):
    with pytest.raises(ArtifactError, match="lacks model.json"):
        Forecaster.load(tmp_path)
    folder = fitted.artifact.save(tmp_path / "m")
    document = json.loads((folder / "model.json").read_text())
    document["format"] = "something-else"
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="unsupported artifact format"):
        ModelArtifact.load(folder)


def test_forecast_starts_after_the_last_observation(fitted, gasoline):
    forecast = fitted.forecaster.predict(3, 0.8)
    assert forecast.timestamps[0] == gasoline.timestamps[-1] + timedelta(days=7)
    assert len(forecast.records()) == 3


def test_intervals_nest_and_widen_with_conf(fitted):
    f = fitted.forecaster
    narrow, wide = f.predict(80, 0.5), f.predict(80, 0.99)
    assert np.all(wide.lower <= narrow.lower) and np.all(narrow.upper <= wide.upper)
    assert np.all(narrow.lower < narrow.mean) and np.all(narrow.mean < narrow.upper)
    assert np.all(np.isfinite(f.predict(104, 0.999999).upper))


def test_beyond_the_calibrated_horizon_intervals_keep_growing(fitted):
    forecast = fitted.forecaster.predict(60, 0.9)
    width = np.log(forecast.upper) - np.log(forecast.lower)
    assert width[59] > width[25]


@pytest.mark.parametrize("periods, conf", [(0, 0.9), (5, 0.0), (5, 1.0), (5, -0.1)])
def test_invalid_requests_raise(fitted, periods, conf):
    with pytest.raises(ValueError):
        fitted.forecaster.predict(periods, conf)


def test_calibrated_intervals_hit_their_coverage_out_of_sample():
    """On a long AR(1)+seasonal series, intervals calibrated on the past cover ~conf of the future."""
    rng = np.random.default_rng(3)
    n = 1600
    t = np.arange(n)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.6 * e[i - 1] + 0.03 * rng.standard_t(5)
    y = np.exp(6 + 0.2 * np.sin(2 * np.pi * t / 52.18) + e)
    from pipeline_code.engine.evaluation import backtest_model

    origins = np.arange(1200, 1200 + 300, 3)
    bt = backtest_model(y, ModelSpec(fourier_k=2), window=300, horizon=10, origins=origins,
                        levels=(0.8, 0.95), step=3)
    metrics = bt.metrics()
    assert metrics["coverage_80"] == pytest.approx(0.8, abs=0.06)
    assert metrics["coverage_95"] == pytest.approx(0.95, abs=0.04)
