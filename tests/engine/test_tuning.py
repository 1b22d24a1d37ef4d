import json
from dataclasses import replace

import numpy as np

from pipeline_code.engine.settings import Settings
from pipeline_code.engine.tuning import candidate_space, tune


def test_search_space_is_the_full_grid():
    candidates = [c for c in candidate_space(Settings()) if c["family"] == "harmonic_arima"]
    assert len(candidates) == 80
    assert {c["fourier_k"] for c in candidates} == set(range(1, 11))
    others = {c["family"] for c in candidate_space(Settings())} - {"harmonic_arima"}
    assert others == set(Settings().search.families) - {"harmonic_arima"}


def test_monthly_season_limits_the_fourier_orders():
    settings = Settings()
    settings = replace(settings, data=replace(settings.data, season_length=12))
    assert max(c["fourier_k"] for c in candidate_space(settings) if "fourier_k" in c) == 5


def test_parallel_search_equals_serial_and_writes_every_candidate(gasoline, small_settings, tmp_path):
    y = gasoline.values[:700]
    cf = y * np.where(np.arange(y.size) % 97 == 0, 1.01, 1.0)
    serial = tune(y, cf, small_settings, jobs=1, progress=False)
    parallel = tune(y, cf, small_settings, jobs=2, progress=False)
    assert [c["cv_mse"] for c in serial.candidates] == [c["cv_mse"] for c in parallel.candidates]
    assert serial.best["cv_mse"] == min(c["cv_mse"] for c in serial.candidates)
    serial.write(tmp_path / "tuning.json")
    written = json.loads((tmp_path / "tuning.json").read_text())
    singles = [c for c in written["candidates"] if c["hyperparameters"]["family"] != "combination"]
    assert len(singles) == len(candidate_space(small_settings))
    assert all({"hyperparameters", "cv_mse", "seconds"} <= set(c) for c in written["candidates"])
