"""The statsforecast baselines on a short synthetic weekly series (skipped without statsforecast)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("statsforecast")

from pipeline_code.engine.baselines import DEFAULT_TRANSFORM, backtest_baselines, fourier_terms  # noqa: E402
from pipeline_code.engine.cv import seasonal_naive_scale  # noqa: E402

SEASON = 365.25 / 7
WINDOW, HORIZON = 160, 8
LEVELS = (0.8, 0.95)


def _series(n: int = 200, seed: int = 0) -> np.ndarray:
    """log y = level + trend + annual cycle + AR(1) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    e = np.zeros(n)
    shocks = rng.normal(0, 0.02, n)
    for i in range(1, n):
        e[i] = 0.6 * e[i - 1] + shocks[i]
    return np.exp(9 + 0.0005 * t + 0.08 * np.sin(2 * np.pi * t / SEASON) + e)


@pytest.fixture(scope="module")
def result():
    y = _series()
    origins = np.array([y.size - HORIZON - 1, y.size - HORIZON])
    out = backtest_baselines(
        y, season_length=SEASON, window=WINDOW, horizon=HORIZON, origins=origins, levels=LEVELS,
        models=("AutoTheta", "AutoARIMA+Fourier"), fourier_k=2, transform="log",
    )
    return y, origins, out


def test_shapes_and_finite_mase(result):
    y, origins, out = result
    assert set(out) == {"AutoTheta", "AutoARIMA+Fourier"}
    for bt in out.values():
        assert bt.forecast.shape == bt.actual.shape == (origins.size, HORIZON)
        assert set(bt.intervals) == set(LEVELS)
        assert np.all(np.isfinite(bt.forecast))
        m = bt.metrics()
        assert np.isfinite(m["mase"]) and 0 < m["mase"] < 5
        assert {"coverage_80", "coverage_95"} <= set(m)
        np.testing.assert_allclose(bt.scale, seasonal_naive_scale(y, origins, WINDOW, 52))


def test_intervals_nest(result):
    _, _, out = result
    for bt in out.values():
        lo80, hi80 = bt.intervals[0.8]
        lo95, hi95 = bt.intervals[0.95]
        assert np.all(lo95 <= lo80 + 1e-9) and np.all(lo80 < hi80) and np.all(hi80 <= hi95 + 1e-9)
        assert np.all(lo95 <= bt.forecast * 1.05) and np.all(bt.forecast <= hi95 * 1.05)


def test_origin_alignment(result):
    """Row i forecasts y[o:o+h] from a fit on y[o-window:o] only, as a direct fit does."""
    from statsforecast.models import AutoTheta

    y, origins, out = result
    bt = out["AutoTheta"]
    for i, o in enumerate(origins):
        np.testing.assert_array_equal(bt.actual[i], y[o : o + HORIZON])
        direct = AutoTheta(season_length=52).forecast(np.log(y[o - WINDOW : o]), h=HORIZON, level=[95])
        sd = (direct["hi-95"] - direct["lo-95"]) / (2 * 1.959963984540054)
        np.testing.assert_allclose(bt.forecast[i], np.exp(direct["mean"] + 0.5 * sd**2), rtol=1e-8)
    # Perturbing data after the last training point of the first origin leaves that row unchanged.
    y2 = y.copy()
    y2[origins[0]:] *= 1.5
    again = backtest_baselines(
        y2, season_length=SEASON, window=WINDOW, horizon=HORIZON, origins=origins[:1], levels=LEVELS,
        models=("AutoTheta",), transform="log",
    )
    np.testing.assert_allclose(again["AutoTheta"].forecast[0], bt.forecast[0], rtol=1e-10)


def test_matches_statsforecast_cross_validation(result):
    """Same numbers as StatsForecast.cross_validation(input_size=window) with cutoff o - 1."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoTheta

    y, origins, out = result
    z = np.log(y[: origins[-1] + HORIZON])
    df = pd.DataFrame({"unique_id": 0, "ds": np.arange(z.size), "y": z})
    cv = StatsForecast(models=[AutoTheta(season_length=52)], freq=1).cross_validation(
        df=df, h=HORIZON, step_size=1, n_windows=origins.size, input_size=WINDOW, level=[80, 95]
    )
    cv = cv.sort_values(["cutoff", "ds"])
    np.testing.assert_array_equal(np.unique(cv["cutoff"]), origins - 1)
    lo80 = np.exp(cv["AutoTheta-lo-80"].to_numpy().reshape(origins.size, HORIZON))
    np.testing.assert_allclose(out["AutoTheta"].intervals[0.8][0], lo80, rtol=1e-8)


def test_original_scale_and_default_transform():
    y = _series()
    origins = np.array([y.size - HORIZON])
    out = backtest_baselines(y, season_length=SEASON, window=WINDOW, horizon=HORIZON, origins=origins,
                             levels=(80, 95), models=("AutoTheta",), transform="none")
    bt = out["AutoTheta"]
    assert set(bt.intervals) == {0.8, 0.95}
    assert np.isfinite(bt.metrics()["mase"])
    info: dict = {}
    backtest_baselines(y, season_length=SEASON, window=WINDOW, horizon=HORIZON, origins=origins,
                       levels=LEVELS, models=("AutoTheta",), info=info)
    assert info["transform"]["AutoTheta"] == DEFAULT_TRANSFORM["AutoTheta"]


def test_select_fourier_k_by_aicc():
    from pipeline_code.engine.baselines import select_fourier_k

    y = _series()
    t = np.arange(WINDOW)
    k, table = select_fourier_k(np.log(y[:WINDOW]), t, SEASON, ks=(1, 2))
    assert k in (1, 2) and [row["k"] for row in table] == [1, 2]
    assert all(np.isfinite(row["aicc"]) for row in table)


def test_fourier_terms_continue_the_index():
    t = np.arange(100, 110)
    whole = fourier_terms(np.arange(110), SEASON, 3)
    np.testing.assert_allclose(fourier_terms(t, SEASON, 3), whole[100:])


def test_rejects_unknown_model_and_short_window():
    y = _series()
    with pytest.raises(ValueError):
        backtest_baselines(y, season_length=SEASON, window=WINDOW, horizon=HORIZON,
                           origins=np.array([190]), levels=LEVELS, models=("Prophet",))
    with pytest.raises(ValueError):
        backtest_baselines(y, season_length=SEASON, window=WINDOW, horizon=HORIZON,
                           origins=np.array([100]), levels=LEVELS, models=("AutoTheta",))


def test_missing_statsforecast_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "statsforecast", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[bench\]'"):
        backtest_baselines(_series(), season_length=SEASON, window=WINDOW, horizon=HORIZON,
                           origins=np.array([190]), levels=LEVELS, models=("AutoTheta",))
