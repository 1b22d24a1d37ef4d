"""The first run always serves: when the challenger loses to seasonal naive and nothing is approved
yet, evaluation fits seasonal naive and that is the model to register."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np

from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.settings import Settings
from pipeline_code.pipeline.stages import run_evaluation, run_processing, run_training, served_model_dir

from ..conftest import write_csv


def test_a_first_run_whose_challenger_loses_to_seasonal_naive_serves_seasonal_naive(tmp_path):
    """A season of 52 arbitrary values repeated (seasonal naive is nearly exact) against one Fourier
    pair without trend (it cannot follow the pattern)."""
    rng = np.random.default_rng(3)
    pattern = rng.uniform(80, 120, 52)
    n = 520
    values = np.tile(pattern, n // 52 + 1)[:n] * rng.normal(1, 0.005, n)
    stamps = [date(2005, 1, 7) + timedelta(days=7 * i) for i in range(n)]
    base = Settings()
    settings = replace(
        base, data=replace(base.data, horizon=13), cv=replace(base.cv, window=156, step=2),
        preprocess=replace(base.preprocess, break_start=None),
        search=replace(base.search, families=("harmonic_arima",)),
        gate=replace(base.gate, eval_origins=8))
    processed = tmp_path / "processed"
    run_processing(write_csv(tmp_path / "seasonal.csv", stamps, values), processed, settings)
    weak = {"family": "harmonic_arima", "use_counterfactual_data": 1, "detrend": 0, "deseasonalize": 0,
            "fourier_k": 1}
    model_dir = tmp_path / "model"
    run_training(processed / "train", processed / "test", weak, model_dir, settings)
    out = tmp_path / "evaluation"
    evaluation = run_evaluation(processed / "train", processed / "test", model_dir, None, out, settings)
    assert evaluation["seasonal_naive"]["mase"] < evaluation["challenger"]["mase"]
    assert evaluation["gate"]["passed"] and evaluation["gate"]["serve"] == "seasonal_naive"
    served = served_model_dir(model_dir, out, evaluation)
    assert served == out / "served-model"
    forecaster = Forecaster.load(served)
    assert forecaster.artifact.family == "seasonal_naive" and evaluation["served_family"] == "seasonal_naive"
    forecast = forecaster.predict(13, 0.9)
    np.testing.assert_allclose(forecast.mean, values[-52:-39], rtol=0.02)
    exported = (out / "forecast.csv").read_text().splitlines()
    assert len(exported) == 14 and float(exported[1].split(",")[1]) == forecast.mean[0]  # every digit

    # with an approved model the gate guards against regressions instead: nothing is served
    evaluation = run_evaluation(processed / "train", processed / "test", model_dir, model_dir,
                                tmp_path / "again", settings)
    assert not evaluation["gate"]["passed"] and served_model_dir(model_dir, out, evaluation) == model_dir
