"""Temporal hierarchies (``families.thief``): the reconciliation is the structurally scaled WLS
projection, the family forecasts what AutoETS on each aggregation level, reconciled, forecasts, and
its offer and its windows follow the rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline_code.engine.families import registry
from pipeline_code.engine.families.thief import levels, reconcile, reconciliation
from pipeline_code.engine.settings import Settings

from .test_families import LONG_WINDOW, candidates_of, monthly

CTX, SETTINGS = LONG_WINDOW  # seven seasons of 12 months


def summing(m: int) -> np.ndarray:
    """Each level's rows, written out by hand: row j of level k sums periods j*k .. j*k + k - 1."""
    rows = []
    for k in levels(m):
        for j in range(m // k):
            row = np.zeros(m)
            row[j * k:(j + 1) * k] = 1.0
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("m", [4, 12])
def test_the_reconciliation_is_weighted_least_squares_with_structural_scaling(m):
    assert levels(12) == [1, 2, 3, 4, 6, 12] and levels(4) == [1, 2, 4]
    s = summing(m)
    weights = 1.0 / s.sum(axis=1)  # a level-k node's variance is taken as k
    base = np.random.default_rng(m).normal(size=s.shape[0])
    expected = np.linalg.lstsq(s * np.sqrt(weights)[:, None], base * np.sqrt(weights), rcond=None)[0]
    np.testing.assert_allclose(reconciliation(m) @ base, expected, rtol=1e-10, atol=1e-12)
    bottom = np.random.default_rng(1).normal(size=m)
    np.testing.assert_allclose(reconciliation(m) @ (s @ bottom), bottom, atol=1e-12)  # coherent stays


def test_reconcile_takes_each_season_of_a_longer_horizon_on_its_own():
    m, s = 4, summing(4)
    first, second = np.arange(1.0, 5.0), np.arange(10.0, 14.0)
    per_level = [np.concatenate([(s @ first)[a:b], (s @ second)[a:b]])[None, :]
                 for a, b in ((0, 4), (4, 6), (6, 7))]
    np.testing.assert_allclose(reconcile(per_level, m, 6), [[1, 2, 3, 4, 10, 11]])


def test_the_family_forecasts_reconciled_autoets_forecasts_of_blocks_ending_at_the_origin():
    """Yardstick: statsforecast's AutoETS on each level's sums, by hand, then the WLS projection."""
    from statsforecast.models import AutoETS

    y, origin = monthly(150, seed=5), 125  # all history: 10 whole seasons, 5..124 (the first 5 left out)
    candidate = next(c for c in candidates_of("thief", SETTINGS)
                     if c["scale"] == "log" and c["history"] == "all")
    out = registry.family("thief").fit_windows(y, candidate, np.array([origin]), CTX)
    z = np.log(y[5:origin])
    base = np.concatenate([
        AutoETS(season_length=max(1, 12 // k), model="AZZ").forecast(y=z.reshape(-1, k).sum(axis=1), h=12 // k)["mean"]
        for k in levels(12)])
    np.testing.assert_allclose(out.centre[0], np.linalg.lstsq(
        summing(12) / np.sqrt(summing(12).sum(axis=1))[:, None], base / np.sqrt(summing(12).sum(axis=1)),
        rcond=None)[0], rtol=1e-6)
    assert not out.failed.any()


def test_windows_see_only_their_past():
    y = monthly()
    candidate = candidates_of("thief", SETTINGS)[0]
    before = registry.family("thief").fit_windows(y, candidate, np.array([90, 110]), CTX)
    poked = y.copy()
    poked[110:] *= 3.0
    after = registry.family("thief").fit_windows(poked, candidate, np.array([90, 110]), CTX)
    np.testing.assert_allclose(before.centre, after.centre)


def test_it_is_offered_for_whole_seasons_that_a_window_holds_seven_times():
    assert {(c["history"], c["scale"]) for c in candidates_of("thief", SETTINGS)} == {
        (h, s) for h in ("window", "all") for s in ("log", "raw")}
    assert candidates_of("thief", Settings()) == []  # weekly: 52.18 periods is not a whole season
    short = replace(SETTINGS, cv=replace(SETTINGS.cv, window=83))
    assert candidates_of("thief", short) == []
    daily = replace(SETTINGS, data=replace(SETTINGS.data, season_length=7.0))
    assert candidates_of("thief", daily)


def test_a_window_shorter_than_seven_seasons_fails_alone():
    y = monthly()
    candidate = next(c for c in candidates_of("thief", SETTINGS) if c["history"] == "all")
    out = registry.family("thief").fit_windows(y, candidate, np.array([80, 100]), CTX)
    assert out.failed.tolist() == [True, False] and "7 whole seasons" in out.reason
