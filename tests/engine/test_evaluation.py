import numpy as np
import pytest

from pipeline_code.engine.evaluation import (
    backtest_seasonal_naive, gate, hold_older_data, ljung_box, same_candidate,
)


def test_ljung_box_matches_statsmodels():
    from statsmodels.stats.diagnostic import acorr_ljungbox

    x = np.random.default_rng(1).standard_normal(400).cumsum()[:400] * 0.1 + np.random.default_rng(2).standard_normal(400)
    ours = ljung_box(x, 10, dof=2)
    theirs = acorr_ljungbox(x, lags=[10], model_df=2)
    assert ours[0] == pytest.approx(float(theirs["lb_stat"].iloc[0]))
    assert ours[1] == pytest.approx(float(theirs["lb_pvalue"].iloc[0]))


def test_seasonal_naive_repeats_last_season():
    y = np.arange(1.0, 401.0)
    bt = backtest_seasonal_naive(y, 52, window=104, horizon=60, origins=np.array([250]), levels=(0.8,))
    np.testing.assert_array_equal(bt.forecast[0, :52], y[250 - 52 : 250])
    np.testing.assert_array_equal(bt.forecast[0, 52:], y[250 - 52 : 250 - 44])
    np.testing.assert_array_equal(bt.actual[0], y[250:310])


BASE = {"mase": 1.0}


@pytest.mark.parametrize(
    "challenger, champion, same_spec, passed",
    [
        (0.8, None, False, True),  # first run: only seasonal naive to beat
        (1.1, None, False, True),  # first run: serves (seasonal naive, the better contender)
        (0.70, 0.80, False, True),  # clearly better than the champion
        (0.795, 0.80, False, False),  # not 1% better
        (0.80, 0.80, True, True),  # same spec refitted on newer data
        (0.81, 0.80, True, False),  # a refresh that got worse
    ],
)
def test_gate(challenger, champion, same_spec, passed):
    decision = gate({"mase": challenger}, None if champion is None else {"mase": champion}, BASE,
                    min_improvement=0.01, same_spec=same_spec)
    assert decision["passed"] is passed
    assert decision["reason"]


@pytest.mark.parametrize("challenger, passed, serve", [(0.8, True, "challenger"), (1.1, False, None)])
def test_with_a_model_of_another_kind_approved_the_challenger_must_beat_seasonal_naive(challenger, passed, serve):
    """A panel after an approved single series (or the reverse) is no first run: nothing to fall back on."""
    decision = gate({"mase": challenger}, None, BASE, min_improvement=0.01, same_spec=False,
                    other_kind_approved=True)
    assert (decision["passed"], decision["serve"]) == (passed, serve)


@pytest.mark.parametrize("challenger, naive, serve", [
    (float("inf"), float("inf"), None), (float("nan"), float("inf"), None),
    (float("inf"), 1.0, "seasonal_naive"), (0.9, float("nan"), "challenger"),
])
def test_a_contender_without_a_finite_mase_is_never_served(challenger, naive, serve):
    decision = gate({"mase": challenger}, None, {"mase": naive}, min_improvement=0.01, same_spec=False)
    assert decision["serve"] == serve and decision["passed"] is (serve is not None)


def test_a_combination_is_the_same_candidate_whatever_its_members_order():
    a, b = {"family": "harmonic_arima", "fourier_k": 8}, {"family": "mstl", "history": "all"}
    first = {"family": "combination", "members": [a, b], "weights": [0.5, 0.5]}
    assert same_candidate(first, {"family": "combination", "members": [b, a], "weights": [0.5, 0.5]})
    assert not same_candidate(first, {"family": "combination", "members": [b, a], "weights": [0.7, 0.3]})
    assert not same_candidate(first, {"family": "combination", "members": [a], "weights": [1.0]})
    assert same_candidate(a, dict(a)) and not same_candidate(a, b) and not same_candidate(None, None)


def test_data_older_than_the_approved_model_is_not_approved_automatically():
    passed = gate({"mase": 0.5}, {"mase": 1.0}, BASE | {"mase": 2.0}, min_improvement=0.01, same_spec=False)
    held = hold_older_data(passed, data_end="2008-05-02", approved_end="2017-01-20")
    assert not held["passed"] and held["serve"] is None and "before the approved model's (2017-01-20)" in held["reason"]
    assert hold_older_data(passed, data_end="2017-01-27", approved_end="2017-01-20") is passed
    assert hold_older_data(passed, data_end="2008-05-02", approved_end="") is passed
