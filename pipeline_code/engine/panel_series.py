"""One series of a panel: forecast every candidate from each shared cutoff, choose (per evaluation
point) by the series' own CV MASE, and fit the chosen model on all the data.

Runs in the workers of ``panel_fit`` (processes over chunks of series), so it depends on nothing but
the series and the :class:`Plan` shared by the whole panel. Everything is in the series' own index:
the plan's cutoffs are global period numbers and ``first`` is the series' first point's; a split
trains on ``y[:origin]`` only, so it cannot see the series' future.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline_code.engine.core.forecaster import point_path
from pipeline_code.engine.core.paths import log_path
from pipeline_code.engine.cv import seasonal_naive_scale, window_forecasts
from pipeline_code.engine.estimator import final_section
from pipeline_code.engine.families.base import Context, Section, WindowForecasts
from pipeline_code.engine.families.combination import COMBINATION, combine
from pipeline_code.engine.families.seasonal_naive import section as seasonal_naive_section
from pipeline_code.engine.settings import NO_SEASON_WINDOW_MIN

# A split is scored only with at least this many seasons of training data before its cutoff (the
# seasonal families and the MASE scale need a season of differences; ``min_train``).
MIN_SEASONS = 2


def min_train(period: int) -> tuple[int, str]:
    """The training values a split needs before its cutoff, and the rule in words: ``MIN_SEASONS``
    seasons or, with no season (period 1), one series' lowest CV window (``NO_SEASON_WINDOW_MIN``: two
    values would leave the families, and the MASE scale, almost nothing to fit)."""
    if period > 1:
        return MIN_SEASONS * period, f"{MIN_SEASONS} seasons of {period}"
    return NO_SEASON_WINDOW_MIN, f"{NO_SEASON_WINDOW_MIN} values with no season"


@dataclass(frozen=True)
class Plan:
    """What every series of one fit or backtest shares."""

    candidates: dict[str, dict[str, Any]]  # key -> candidate; a combination after its members
    choose_from: tuple[str, ...]  # the keys a series chooses among (one key: a global choice)
    fallback: str  # the key of the model of a series that cannot choose
    cutoffs: np.ndarray  # global period numbers of every split, ascending
    # (global period number of the evaluation cutoff, or None for the final fit; positions in
    # ``cutoffs`` of the splits its choice looks at)
    evaluations: tuple[tuple[int | None, tuple[int, ...]], ...]
    ctx: Context  # ``window``: the longest CV window (each series' is capped by its length)
    fit: bool = True  # fit the final model (the final evaluation only)
    # the pooled families' statistics summed over the panel (family name -> one matrix per cutoff,
    # then the final fit's): each series' fit is shrunk toward these (``families.global_ar``)
    pooled: dict[str, np.ndarray] = field(default_factory=dict)

    def pooled_at(self, positions: np.ndarray | None) -> dict[str, np.ndarray]:
        """The pooled statistics of the splits at ``positions`` (None: the final fit's)."""
        return {name: (rows[-1] if positions is None else rows[positions]) for name, rows in self.pooled.items()}

    @property
    def min_train(self) -> int:
        return min_train(self.ctx.period)[0]


@dataclass
class Splits:
    """A candidate's forecasts from the series' scored splits (positions in the plan's cutoffs)."""

    positions: np.ndarray
    centre: np.ndarray
    variance: np.ndarray
    actual: np.ndarray
    mase_scale: np.ndarray

    @property
    def error_scale(self) -> np.ndarray:
        """The scale of each split's log errors: the model's one-step predictive standard deviation."""
        return np.sqrt(self.variance[:, 0])

    def normalised(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.log(self.actual) - self.centre) / self.error_scale[:, None]

    def take(self, rows: np.ndarray) -> "Splits":
        return Splits(self.positions[rows], self.centre[rows], self.variance[rows], self.actual[rows],
                      self.mase_scale[rows])


@dataclass
class Chosen:
    """The choice at one evaluation point: the candidate's key, why it is the fallback (if so), its
    splits that chose it, the rolling choice's normalised errors (what calibrates the intervals) and
    (in a backtest) its forecast from the evaluation cutoff."""

    key: str
    reason: str | None
    splits: Splits
    rolling: np.ndarray
    at: Splits | None = None


@dataclass
class Outcome:
    """What a worker returns for one series."""

    item: str
    scores: dict[str, float]  # each candidate's CV MASE on the final choice's splits
    choices: list[Chosen]  # one per plan evaluation
    section: Section | None = None  # the final fit
    error_scale: float = 0.0  # its one-step predictive standard deviation
    window: int = 0
    objective: tuple[float, int] = (0.0, 0)  # sum and count of the rolling-choice MASE per split
    # the same sum and count had every series used one candidate (key -> (sum, count)): what the
    # global choices would have scored, from the same forecasts
    objectives: dict[str, tuple[float, int]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # candidate -> why it failed


def run(item: str, observed: np.ndarray, target: np.ndarray, first: int, plan: Plan) -> Outcome:
    """Cross-validate, choose and (for the final evaluation) fit one series."""
    n = target.size
    origins = plan.cutoffs - first
    ok = scorable(plan, origins, n)
    ctx = series_context(plan, origins, n)
    window = ctx.window
    constant = bool(n > 1 and np.ptp(target) == 0)  # one observation is too short, not constant
    if ok.any() and not constant:
        scale = np.zeros(origins.size)
        scale[ok] = seasonal_naive_scale(target, origins[ok], window, ctx.period)
        ok &= scale > 0
    positions = np.flatnonzero(ok) if not constant else np.array([], dtype=int)
    data = {False: np.asarray(observed, float), True: np.asarray(target, float)}
    splits, failures = _forecast_all(data, target, origins, positions, plan, ctx)

    choices = []
    for when, selection in plan.evaluations:
        usable = np.flatnonzero(np.isin(positions, selection))
        if constant:
            key, reason = plan.fallback, f"constant: every value is {target[0]:g}"
        elif usable.size == 0:
            start = max(0, int(origins[selection[0]]))
            key, reason = plan.fallback, (f"too short: {n} observation{'s' * (n != 1)}, {start} before the "
                                          f"first cutoff; the families need {plan.min_train}")
        else:
            key, reason = _choose(splits, usable, plan.choose_from, failures)
            key = key or plan.fallback
        at = None
        if when is not None:
            at = _forecast_at(splits, positions, int(np.searchsorted(plan.cutoffs, when)), key, plan.fallback)
        total, count, rolling = _rolling(splits, usable, plan, plan.choose_from)
        choices.append(Chosen(key, reason, splits[key].take(usable), rolling, at))

    final = plan.evaluations[-1][0] is None  # a backtest's choices are not tuned on
    objectives = {k: _rolling(splits, usable, plan, (k,))[:2] for k in plan.candidates} if final else {}
    out = Outcome(item, {k: _mase(splits[k], usable) for k in plan.choose_from}, choices, window=window,
                  objective=(total, count), objectives=objectives, failures=failures)
    if plan.fit and final:
        out.section, out.error_scale, note = _final_fit(data, choices[-1].key, plan, ctx)
        if note:
            none = np.array([], dtype=int)
            reason = "; ".join(r for r in (choices[-1].reason, note) if r)
            choices[-1] = Chosen(plan.fallback, reason, splits[plan.fallback].take(none), rolling[:0])
    return out


def scorable(plan: Plan, origins: np.ndarray, n: int) -> np.ndarray:
    """Which splits of a series of ``n`` points (its ``origins``) have the training data and the
    actuals to be scored."""
    return (origins >= plan.min_train) & (origins + plan.ctx.horizon <= n)


def series_context(plan: Plan, origins: np.ndarray, n: int) -> Context:
    """A series' fitting context: its CV window capped by its earliest scorable split's data."""
    ok = scorable(plan, origins, n)
    window = int(min(plan.ctx.window, origins[ok].min() if ok.any() else n))
    return Context(plan.ctx.season_length, window, plan.ctx.horizon, plan.ctx.periods, 1)


def _forecast_all(data, target, origins, positions, plan: Plan, ctx: Context
                  ) -> tuple[dict[str, Splits], dict[str, str]]:
    """Every candidate's forecasts from the scored splits; a fit that fails is NaN (failed) with the
    reason, never an exception."""
    o = origins[positions]
    actual = target[o[:, None] + np.arange(ctx.horizon)[None, :]] if o.size else np.zeros((0, ctx.horizon))
    scale = seasonal_naive_scale(target, o, ctx.window, ctx.period) if o.size else np.zeros(0)
    out: dict[str, Splits] = {}
    failures: dict[str, str] = {}
    singles: dict[str, WindowForecasts] = {}
    for key, candidate in plan.candidates.items():
        if not o.size:
            wf = _failed(o, ctx.horizon, None)
        elif candidate["family"] == COMBINATION:
            wf = combine([singles[m["family"]] for m in candidate["members"]], candidate["weights"])
        else:
            try:
                wf = window_forecasts(data, candidate, o, ctx, plan.pooled_at(positions))
            except Exception as err:  # noqa: BLE001 - a family that cannot fit this series is scored failed
                wf = _failed(o, ctx.horizon, f"{type(err).__name__}: {err}")
            singles[key] = wf
        if wf.failed.any() and o.size:
            failures[key] = wf.reason or "failed"
        out[key] = Splits(positions, wf.centre, wf.variance, actual, scale)
    return out, failures


def _failed(origins: np.ndarray, horizon: int, reason: str | None) -> WindowForecasts:
    nan = np.full((origins.size, horizon), np.nan)
    return WindowForecasts(origins, nan, nan.copy(), np.ones(origins.size, bool), reason)


def _point(s: Splits) -> np.ndarray:
    return np.exp(s.centre + 0.5 * s.variance)


def _split_mase(s: Splits) -> np.ndarray:
    """Per split: mean absolute error over the MASE scale (NaN where the fit failed)."""
    return np.mean(np.abs(s.actual - _point(s)), axis=1) / s.mase_scale


def _mase(s: Splits, rows: np.ndarray) -> float:
    """CV MASE over ``rows``: infinite if any of them failed, NaN without rows."""
    if rows.size == 0:
        return float("nan")
    values = _split_mase(s)[rows]
    return float(values.mean()) if np.all(np.isfinite(values)) else float("inf")


def _choose(splits: dict[str, Splits], rows: np.ndarray, keys: tuple[str, ...], failures: dict[str, str]
            ) -> tuple[str | None, str | None]:
    """The key with the lowest CV MASE over ``rows`` (the first on ties), or None with why."""
    scores = [_mase(splits[k], rows) for k in keys]
    best = int(np.argmin(scores))
    if np.isfinite(scores[best]):
        return keys[best], None
    reasons = "; ".join(f"{k}: {failures.get(k, 'failed')}" for k in keys)
    return None, f"every candidate failed ({reasons})"


def _forecast_at(splits: dict[str, Splits], positions: np.ndarray, position: int, key: str,
                 fallback: str) -> Splits | None:
    """The chosen candidate's (or, if it failed there, the fallback's) forecast from one split; None
    when the series is not scored there."""
    row = np.flatnonzero(positions == position)
    for k in (key, fallback):
        s = splits[k].take(row)
        if row.size and np.all(np.isfinite(s.centre)) and np.all(np.isfinite(s.variance)):
            return s
    return None


def _rolling(splits: dict[str, Splits], rows: np.ndarray, plan: Plan, keys: tuple[str, ...]
             ) -> tuple[float, int, np.ndarray]:
    """The choice among ``keys`` out of sample: at each split, the key chosen on the earlier splits
    whose horizon ended before it (one key: the same splits with nothing to choose). Returns
    the sum and count of its MASE per split (the tuning objective) and its normalised log errors
    (the calibration: the chosen model's errors on the splits that chose it would be optimistic)."""
    total, count, errors = 0.0, 0, []
    when = plan.cutoffs[splits[plan.fallback].positions[rows]]
    for i, row in enumerate(rows):
        prior = rows[:i][when[:i] + plan.ctx.horizon <= when[i]]
        if prior.size == 0:
            continue
        key = _choose(splits, prior, keys, {})[0] or plan.fallback
        for k in (key, plan.fallback):
            value = _split_mase(splits[k])[row]
            if np.isfinite(value):
                total, count = total + float(value), count + 1
                errors.append(splits[k].take(np.array([row])).normalised())
                break
    return total, count, np.concatenate(errors) if errors else np.zeros((0, plan.ctx.horizon))


def _final_fit(data, key: str, plan: Plan, ctx: Context) -> tuple[Section, float, str | None]:
    """The chosen candidate fitted on all the data; if that fails, the fallback, then naive. The note
    (None when the choice serves) says what failed and what serves instead."""
    failed = []
    for k in dict.fromkeys((key, plan.fallback)):
        try:
            section = final_section(data, plan.candidates[k], ctx, plan.pooled_at(None))
            _check_servable(section, data[True].size, ctx.periods)
        except Exception as err:  # noqa: BLE001 - the fallback takes over, with the reason reported
            failed.append(f"{k} final fit failed: {type(err).__name__}: {err}")
            continue
        note = f"{failed[0]}; {k} serves" if failed else None
        return section, _one_step_sd(section, data[True].size), note
    section = naive_section(data[True], ctx.window)
    note = "; ".join([*failed, "naive serves (the last value repeated)"])
    return section, _one_step_sd(section, data[True].size), note


def _check_servable(section: Section, n: int, periods: int) -> None:
    """ValueError unless the section's point forecast and variance are finite for every period served:
    an item serving could not forecast gets the fallback at fit time, not a 500 when it is asked for."""
    centre, variance = point_path(section.core, section.spec, section.parameters, n - 1, periods)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.flatnonzero(~(np.isfinite(np.exp(centre + 0.5 * variance)) & np.isfinite(variance)))
    if bad.size:
        raise ValueError(f"its forecast is not finite at step {bad[0] + 1} of {periods}")


def naive_section(y: np.ndarray, window: int) -> Section:
    """The last value repeated (a seasonal naive section of period 1, its point that value): what a
    series too short for one season gets."""
    return seasonal_naive_section(np.log(np.asarray(y, float))[-window:], 1)


def _one_step_sd(section: Section, n: int) -> float:
    _, variance = log_path(section.core, section.spec, section.parameters, n - 1, 1)
    return float(np.sqrt(max(float(variance[0]), 0.0)))
