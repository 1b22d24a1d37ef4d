"""The single-series selection validation's rules (bench/selection_validation_bench.py)."""

from __future__ import annotations

import numpy as np

from bench import selection_validation_bench as bench
from pipeline_code.engine.cv import accuracy
from pipeline_code.engine.families.combination import build


def _pool(seed: int = 0):
    """Four members (family, history) with CV forecasts of growing error, and test forecasts."""
    rng = np.random.default_rng(seed)
    actual = 100 + rng.normal(0, 5, (12, 4))
    noise = [1.0, 2.0, 3.0, 8.0]
    forecasts = np.stack([actual + rng.normal(0, s, actual.shape) for s in noise])
    names = [("ets", "all"), ("theta", "window"), ("arima", "window"), ("seasonal_naive", None)]
    pool = []
    for i, ((fam, history), f) in enumerate(zip(names, forecasts)):
        hp = {"family": fam, **({"history": history} if history else {})}
        m = accuracy(actual, f, np.ones(actual.shape[0]))
        pool.append({"index": 10 + i, "hyperparameters": hp, "cv_mse": m["mse"], "cv_mase": m["mase"]})
    arrays = {"cv_actual": actual, "cv_scale": np.ones(actual.shape[0]), "cv_forecasts": forecasts,
              "test_actual": actual[:3], "test_scale": np.ones(3), "test_forecasts": forecasts[:, :3]}
    return {"pool": pool}, arrays


def test_the_current_rule_offers_what_the_tune_offers():
    meta, a = _pool()
    offered = bench._choices(meta, a, "cv_mse")
    forecasts = {c["index"]: f for c, f in zip(meta["pool"], a["cv_forecasts"])}
    combos = build(meta["pool"], forecasts, a["cv_actual"], (2, 3))
    rows = {c["index"]: r for r, c in enumerate(meta["pool"])}
    expected = []
    for combo in combos:
        w = np.zeros(len(meta["pool"]))
        w[[rows[i] for i in combo["indices"]]] = combo["hyperparameters"]["weights"]
        expected.append(w)
    assert len(offered) == len(meta["pool"]) + len(combos)
    for w in expected:
        assert any(np.allclose(w, o, atol=1e-6) for o in offered)


def test_lowest_takes_the_lowest_cv_objective_and_one_se_the_widest_of_the_near_ties():
    meta, a = _pool()
    lowest = bench.lowest("cv_mse")(meta, a)
    scores = {tuple(w): bench._split_scores(a, w, "cv_mse").mean() for w in bench._choices(meta, a, "cv_mse")}
    assert scores[tuple(lowest)] == min(scores.values())
    wide = bench.one_se("cv_mse")(meta, a)
    assert np.count_nonzero(wide) >= np.count_nonzero(lowest)
    d = bench._split_scores(a, wide, "cv_mse") - bench._split_scores(a, lowest, "cv_mse")
    assert d.mean() <= d.std(ddof=1) / np.sqrt(d.size)


def test_equal_all_leaves_seasonal_naive_out_and_test_mase_scores_the_weighted_forecast():
    meta, a = _pool()
    w = bench.equal_all("cv_mse")(meta, a)
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 0])
    mean = (a["test_forecasts"][:3]).mean(axis=0)
    assert np.isclose(bench.test_mase(a, w), np.mean(np.abs(a["test_actual"] - mean)))


def _growing_series() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(150)
    return np.exp(4 + 0.015 * t + 0.2 * np.sin(2 * np.pi * t / 12) + np.cumsum(rng.normal(0, 0.03, t.size))
                  + rng.normal(0, 0.05, t.size))


def _replayed(serve: str):
    """(the bench's offline weights for ``serve``'s rule, the tune's served weights, the lowest CV
    MSE's weights) on a growing series with three families."""
    from dataclasses import replace

    from pipeline_code.engine.tuning import tune
    from tests.engine.test_families import MONTHLY_SETTINGS

    search = replace(MONTHLY_SETTINGS.search, families=("harmonic_arima", "seasonal_naive", "theta"),
                     serve=serve)
    settings = replace(MONTHLY_SETTINGS, search=search)
    y = _growing_series()
    tuning = tune(y, y, settings, jobs=1, progress=False)
    cv, pool = bench.cv_arrays(tuning, y, settings)
    meta = {"pool": pool}
    best = tuning.best["hyperparameters"]
    members = best["members"] if best["family"] == "combination" else [best]
    weights = best["weights"] if best["family"] == "combination" else [1.0]
    served = np.zeros(len(pool))
    served[[next(r for r, c in enumerate(pool) if c["hyperparameters"] == m) for m in members]] = weights
    rule = bench.RULES[bench.ADOPTED if serve == "equal_top" else bench.LOWEST]
    return rule(meta, cv), served, bench.lowest("cv_mse")(meta, cv)


def test_the_adopted_rule_replays_the_tunes_choice():
    """The bench's offline rule for the engine's default picks what ``tune`` serves."""
    offline, served, _ = _replayed("equal_top")
    assert np.count_nonzero(served) == 3 and np.allclose(offline, served, atol=1e-6)


def test_the_lowest_rule_minimises_cv_mase_not_cv_mse():
    """``search.serve: lowest`` serves the lowest CV MASE, which on a growing series is not the lowest
    CV MSE (the latest, largest splits decide that one)."""
    offline, served, lowest_mse = _replayed("lowest")
    assert np.allclose(offline, served, atol=1e-6)
    assert not np.allclose(served, lowest_mse)


def test_every_validation_series_is_a_regular_positive_series_outside_the_benchmark():
    from bench.accuracy_bench import SERIES as BENCHMARK
    from pipeline_code.engine.core.calendar import parse_freq

    assert len(bench.SERIES) == 51 and not set(bench.SERIES) & set(BENCHMARK)
    benchmark_items = {item for _, item, _, _ in BENCHMARK.values()}
    for name, (_, item, _, origins) in bench.SERIES.items():
        assert item not in benchmark_items, name
        series, settings, _ = bench.load(name)
        calendar = parse_freq(series.freq)
        assert all(calendar.shift(a, 1) == b for a, b in zip(series.timestamps, series.timestamps[1:])), name
        assert np.all(np.isfinite(series.values)) and np.all(series.values > 0), name
        assert len(series) - settings.data.horizon - origins + 1 >= settings.min_observations(), name


def test_an_added_familys_members_are_scored_against_the_cached_pools(tmp_path):
    """The extended pools' default rule against the cached pools', per series, as a geometric mean."""
    cached, extended = tmp_path / "cached", tmp_path / "extended"
    cached.mkdir(), extended.mkdir()
    rule, ratios = bench.RULES[bench.ADOPTED], []
    for seed in (0, 1):
        meta, a = _pool(seed)
        bench._save(cached, f"s{seed}", meta, a)
        added = {"index": bench.EXTRA_INDEX, "hyperparameters": {"family": "ces", "history": "window"},
                 "cv_mse": 0.0, "cv_mase": 0.0}  # ranks first: served
        bench._save(extended, f"s{seed}", {"pool": [*meta["pool"], added]},
                    {**a, "cv_forecasts": np.concatenate([a["cv_forecasts"], a["cv_actual"][None]]),
                     "test_forecasts": np.concatenate([a["test_forecasts"], a["test_actual"][None] + 0.5])})
        served = (a["test_forecasts"][:2].sum(axis=0) + a["test_actual"] + 0.5) / 3
        ratios.append(np.mean(np.abs(a["test_actual"] - served)) / bench.test_mase(a, rule(meta, a)))
    lines = bench.added_family(cached, extended, ["s0", "s1"], "ces")
    assert f"**{np.exp(np.mean(np.log(ratios))):.3f} (" in lines[2]
    assert "2 series better, 0 worse, 2 in all; `ces` is offered on 2 (its rules: season, window) and a served member on 2." in lines[2]


def test_median_rules_take_the_per_step_median_of_their_members():
    meta, a = _pool()
    top = bench.median_top(3)(meta, a)
    assert top.rows == tuple(bench._ranked(meta, "cv_mase")[:3])
    expected = np.median(a["test_forecasts"][list(top.rows)], axis=0)
    assert bench.test_mase(a, top) == np.mean(np.abs(a["test_actual"] - expected))
    # one outlying member carries the mean of three away; their median stays between the other two
    a["test_forecasts"][top.rows[2]] += 1e6
    others = a["test_forecasts"][list(top.rows[:2])]
    assert np.array_equal(bench.combine(a["test_forecasts"], top), others.max(axis=0))
    assert bench.test_mase(a, bench.equal_top(3, "cv_mase")(meta, a)) > 1e5
    families = bench.median_of_families(("ets", "arima", "missing", "theta"))(meta, a)
    assert [meta["pool"][r]["hyperparameters"]["family"] for r in families.rows] == ["ets", "arima", "theta"]
    assert bench._describe(meta, families) == "median of ets/all, arima/window, theta/window"
