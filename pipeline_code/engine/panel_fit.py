"""Fit and backtest a panel (many series): a model per series chosen by its CV MASE on cutoffs shared
by the panel (or one global specification), intervals calibrated on the panel's pooled normalised
errors, series spread over processes. Cost is linear in the number of series: each series is fitted
on its own; what is panel-wide is the calibration pool (at most ``panel_cv.POOL_ROWS`` rows) and the
pooled families' statistics (``global_ar``: one small matrix per cutoff, summed over the series
before the workers start).

The global choices, a plain dict (the local tune and the tuning job's trials score every one of them:
``pipeline/panel_tuning.py``):

- ``family``: ``"per_series"`` (each series chooses among ``series.families`` and their equal-weight
  combination), or one of those (``"combination"`` included) for every series, or the equal-weight
  pair of two families (``"ets+global_ar"``; ``Settings.panel_pairs``);
- ``history``: what the statsforecast families and the global AR train on, ``"window"`` (the CV
  window) or ``"all"``;
- ``scale``: what the statsforecast families fit, the log of the series or the series.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

from pipeline_code import __version__
from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.estimator import HISTORY_POINTS
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.families.combination import COMBINATION
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.families.sf import AutoETS
from pipeline_code.engine.panel_cv import (
    LEVELS, ItemBacktest, PanelCV, cutoffs_before, interval, panel_cutoffs, pooled,
)
from pipeline_code.engine.panel_series import Outcome, Plan, Splits, run, series_context
from pipeline_code.engine.settings import CHOICE_KEYS, HISTORIES, PER_SERIES, SCALES, Settings
from pipeline_code.engine.workers import worker_pool

CALIBRATION_METHOD = ("pooled panel conformal: the rolling choice's log errors over each series' one-step "
                      "model standard deviation")
ETS = AutoETS.name
_PLAN: dict[str, Plan] = {}
Task = tuple[str, np.ndarray, np.ndarray, int]
Whole = tuple[Any, "dict[str, np.ndarray] | None"]  # a whole panel and its counterfactual series


@dataclass
class PanelFit:
    """Every series' artifact (``core.artifact``), its choice, the CV on the shared cutoffs (of the
    chosen models, on the cutoffs that chose them: optimistic; ``backtest_panel`` is the honest one)
    and the report."""

    artifacts: dict[str, ModelArtifact]
    choices: dict[str, dict[str, Any]]
    cv: PanelCV
    report: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)  # the panel's, for ``save_panel``

    @property
    def objective(self) -> float:
        """The tuning objective: mean MASE over series of the choice made on earlier cutoffs only."""
        return float(self.report["objective"]["mase"])


def fit_panel(panel: Any, settings: Settings, *, choice: dict | None = None, jobs: int = 1,
              counterfactual: dict[str, np.ndarray] | None = None, whole: Whole | None = None) -> PanelFit:
    """Choose and fit a model per series (see the module docstring for ``choice``). ``whole``: when
    ``panel`` is one shard of a larger panel, that panel and its counterfactual series, whose
    statistics the pooled families sum (so every shard shrinks toward the same pooled model)."""
    started = time.perf_counter()
    choice = resolve_choice(settings, choice)
    step = cutoff_step(settings)
    cutoffs = panel_cutoffs(panel, horizon=settings.data.horizon, cutoffs=settings.series.cutoffs, step=step)
    if choice["family"] == PER_SERIES and settings.series.selection == "global":
        scored, _, _ = run_panel(panel, settings, choice, [], jobs, counterfactual, fit=False, whole=whole)
        choice = {**choice, "family": best_global(scored)}
    outcomes, axis, plan = run_panel(panel, settings, choice, [], jobs, counterfactual, whole=whole)
    pool = _pool(outcomes, -1, settings.data.horizon)
    borrowed = _borrow_scales(outcomes)
    cv = PanelCV({item: _item_cv(o.choices[-1].splits, o.choices[-1].key, pool, axis.dates)
                  for item, o in outcomes.items()}, settings.data.horizon, panel.freq)
    artifacts = {item: _artifact(panel.series[item], o, plan, pool, borrowed.get(item))
                 for item, o in outcomes.items()}
    choices = {item: _choice_record(o, plan, borrowed.get(item)) for item, o in outcomes.items()}
    seconds = time.perf_counter() - started
    objective = _objective(outcomes.values())
    measured = cv.per_item
    report = {
        "items": len(outcomes),
        "horizon": settings.data.horizon,
        "cutoffs": [c.isoformat() for c in cutoffs],
        "cutoff_step": step,
        "choice": choice,
        "families": _counts(c["family"] for c in choices.values()),
        "fallbacks": {item: c["reason"] for item, c in choices.items() if c.get("reason")},
        "failures": {item: o.failures for item, o in outcomes.items() if o.failures},
        "fills": dict(getattr(panel, "fills", {}) or {}),
        "panel": cv.panel,
        "objective": {"mase": objective, "how": "mean over series of the CV MASE of the choice made on "
                      "earlier cutoffs only (each cutoff after the first)"},
        "objectives": _objectives(outcomes.values(), choice, objective, choice_families(settings)),
        "per_item": {item: {**{k: v for k, v in choices[item].items() if k != "hyperparameters"},
                            **measured.get(item, {})} for item in outcomes},
        "calibration": {"method": CALIBRATION_METHOD, "rows": int(pool.shape[0])},
        "seconds": round(seconds, 3),
        "seconds_per_series": round(seconds / max(len(outcomes), 1), 5),
        "jobs": jobs,
    }
    metadata = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "horizon": settings.data.horizon,
        "cutoffs": report["cutoffs"],
        "choice": choice,
        "metrics": {f"cv_{k}": v for k, v in cv.panel.items()},
        "objective": {"cv_mase_rolling": objective},
        "calibration": report["calibration"],
        "libraries": {"forecast_mlops": __version__, "numpy": np.__version__,
                      "python": platform.python_version()},
    }
    return PanelFit(artifacts, choices, cv, report, metadata)


def backtest_panel(panel: Any, settings: Settings, *, choice: dict | None = None, cutoffs: list[date],
                   jobs: int = 1) -> PanelCV:
    """Forecast from each evaluation cutoff with the procedure re-run on the data before it: the
    choice looks at the ``series.cutoffs`` cutoffs whose horizon ends before it, the intervals pool
    those cutoffs' errors; nothing at or after the evaluation cutoff is used but its actuals."""
    if not cutoffs:
        raise ValueError("backtest_panel needs at least one evaluation cutoff")
    choice = resolve_choice(settings, choice)
    whens = sorted(set(cutoffs))
    outcomes, _, _ = run_panel(panel, settings, choice, whens, jobs, None)
    h = settings.data.horizon
    per_item: dict[str, list[tuple[date, str, Splits, np.ndarray]]] = {item: [] for item in outcomes}
    items: dict[str, ItemBacktest] = {}
    for e, when in enumerate(whens):
        pool = _pool(outcomes, e, h)
        for item, o in outcomes.items():
            at = o.choices[e].at
            if at is not None:
                per_item[item].append((when, o.choices[e].key, at, pool))
    for item, rows in per_item.items():
        items[item] = _stack(rows, h)
    return PanelCV(items, h, panel.freq)


# ---- choices -------------------------------------------------------------------------------------

def resolve_choice(settings: Settings, choice: dict | None) -> dict[str, str]:
    """The global choices with their defaults; a bad key or value is a ValueError naming it."""
    choice = dict(choice or {})
    unknown = sorted(set(choice) - set(CHOICE_KEYS))
    if unknown:
        raise ValueError(f"panel choice: unknown key(s) {unknown}; expected {list(CHOICE_KEYS)}")
    allowed = {"family": choice_families(settings),
               "history": [h for h in HISTORIES if h in settings.search.histories],
               "scale": [s for s in SCALES if s in settings.search.scales]}
    defaults = {"family": PER_SERIES, "history": allowed["history"][0], "scale": allowed["scale"][0]}
    out = {key: str(choice.get(key, defaults[key])) for key in CHOICE_KEYS}
    for key, source in (("family", "series.families"), ("history", "search.histories"), ("scale", "search.scales")):
        if out[key] not in allowed[key]:
            raise ValueError(f"panel choice {key}: {out[key]!r} is not one of {allowed[key]} ({source})")
    return out


def choice_families(settings: Settings) -> list[str]:
    """What the ``family`` choice may be: per series, a family of ``series.families``, or their
    combination (with two or more)."""
    return settings.panel_families()


def choice_from_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, str]:
    """The global choices from a training job's hyperparameters (strings; other keys ignored)."""
    return {k: str(hyperparameters[k]) for k in CHOICE_KEYS if k in hyperparameters}


def family_candidate(name: str, settings: Settings, history: str, scale: str) -> dict[str, Any]:
    """A family's candidate for a panel: the first of its search space training on the counterfactual
    series and on the chosen history and scale, where the family offers them (a family of
    ``search.window_only`` fits the window alone: its candidate for all history is the window's, on the
    chosen scale); or simply its first. ETS with ``series.ets_model``."""
    found = family(name).candidates(settings)
    if not found:
        raise ValueError(f"family {name!r} has no candidate for these settings")
    wanted = {k: v for k, v in (("history", history), ("scale", scale)) if any(c.get(k) == v for c in found)}
    candidate = next((c for c in found if all(c.get(k, v) == v for k, v in wanted.items())
                      and int(c.get("use_counterfactual_data", 1)) == 1), found[0])
    return {**candidate, "model": settings.series.ets_model} if name == ETS else candidate


def panel_candidates(settings: Settings, choice: dict[str, str]) -> tuple[dict[str, dict], tuple[str, ...], str]:
    """Candidates to forecast (key -> candidate), the keys to choose among, and the fallback's key."""
    names = list(settings.series.families)
    fallback = settings.series.fallback
    candidates = {name: family_candidate(name, settings, choice["history"], choice["scale"])
                  for name in dict.fromkeys([*names, fallback])}
    groups = {**({COMBINATION: tuple(names)} if len(names) > 1 else {}), **settings.panel_pairs()}
    for key, group in groups.items():
        candidates[key] = {"family": COMBINATION, "kind": "equal", "members": [candidates[n] for n in group],
                           "weights": [round(1.0 / len(group), 12)] * len(group)}
    if choice["family"] == PER_SERIES:
        keys = tuple([*names, *([COMBINATION] if len(names) > 1 else [])])
    else:
        keys = (choice["family"],)
    return candidates, keys, fallback


def pooled_families(settings: Settings) -> list[str]:
    """The families of ``series.families`` (and the fallback) that a panel fits on every series at once."""
    names = dict.fromkeys([*settings.series.families, settings.series.fallback])
    return [name for name in names if getattr(family(name), "pooled", False)]


def best_global(outcomes: dict[str, Outcome]) -> str:
    """The key with the lowest mean CV MASE over the series every key scored on."""
    keys = next(iter(outcomes.values())).scores.keys() if outcomes else []
    rows = [o.scores for o in outcomes.values() if all(np.isfinite(o.scores[k]) for k in keys)]
    if not rows:
        raise ValueError("no series has a CV score for every family: cannot choose a global one")
    return min(keys, key=lambda k: float(np.mean([r[k] for r in rows])))


def cutoff_step(settings: Settings) -> int:
    return settings.series.cutoff_step or settings.data.horizon


# ---- running over the series -----------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """The panel's global period numbers: period 0 is the earliest first timestamp."""

    start: date
    freq: str
    dates: list[date]  # every split's cutoff, ascending (positions as in the plan)

    def number(self, day: date) -> int:
        return parse_freq(self.freq).steps_between(self.start, day)


def run_panel(panel: Any, settings: Settings, choice: dict[str, str], evaluation: list[date], jobs: int,
              counterfactual: dict[str, np.ndarray] | None, *, fit: bool = True, whole: Whole | None = None
              ) -> tuple[dict[str, Outcome], Axis, Plan]:
    """Run every series with one plan: without ``evaluation`` cutoffs, the choice after the data (and
    the final fit, if ``fit``); else a choice and a forecast at each evaluation cutoff. The pooled
    families' statistics are summed over ``whole`` (as in ``fit_panel``), else over ``panel``."""
    final = not evaluation
    calendar = parse_freq(panel.freq)
    h, k, step = settings.data.horizon, settings.series.cutoffs, cutoff_step(settings)
    whens = [calendar.shift(panel.end, 1)] if final else list(evaluation)
    selections = [cutoffs_before(w, horizon=h, cutoffs=k, step=step, calendar=calendar) for w in whens]
    dates = sorted(set(d for s in selections for d in s) | (set() if final else set(whens)))
    start = min(panel.series[i].timestamps[0] for i in panel.items)
    axis = Axis(start, panel.freq, dates)
    plan = _plan(settings, choice, axis, [] if final else whens, selections, fit=final and fit)
    tasks = _tasks(panel, axis, counterfactual or {})
    pooling = tasks if whole is None else _tasks(whole[0], axis, whole[1] or {})
    plan = replace(plan, pooled=_pooled(plan, pooling))
    return _run_all(tasks, plan, jobs), axis, plan


def _plan(settings: Settings, choice: dict[str, str], axis: Axis, whens: list[date],
          selections: list[list[date]], *, fit: bool) -> Plan:
    candidates, keys, fallback = panel_candidates(settings, choice)
    numbers = np.array([axis.number(d) for d in axis.dates], dtype=np.int64)
    position = {d: i for i, d in enumerate(axis.dates)}
    points: list[int | None] = [axis.number(w) for w in whens] if whens else [None]
    evaluations = tuple((p, tuple(position[d] for d in s)) for p, s in zip(points, selections))
    ctx = Context.from_settings(settings)
    return Plan(candidates, keys, fallback, numbers, evaluations, ctx, fit)


def _tasks(panel: Any, axis: Axis, counterfactual: dict[str, np.ndarray]) -> list[Task]:
    """Per series: its id, observed and target values, and its first period's global number."""
    tasks = []
    for item in panel.items:
        s = panel.series[item]
        observed = np.asarray(s.values, float)
        tasks.append((item, observed, np.asarray(counterfactual.get(item, observed), float),
                      axis.number(s.timestamps[0])))
    return tasks


def _pooled(plan: Plan, tasks: list[Task]) -> dict[str, np.ndarray]:
    """The pooled families' statistics summed over every series (each on its target), at each cutoff
    and for the final fit (all of each series): what each series' fit of such a family uses. Only
    data before a cutoff enters its sum, so nothing leaks a series' future into a split."""
    out: dict[str, np.ndarray] = {}
    for candidate in plan.candidates.values():
        name = candidate["family"]
        fitter = family(name) if name != COMBINATION else None
        if fitter is None or not getattr(fitter, "pooled", False) or name in out:
            continue
        total = None
        for _, _, target, first in tasks:
            ctx = series_context(plan, plan.cutoffs - first, target.size)  # as the series' own fit
            origins = np.clip(np.append(plan.cutoffs - first, target.size), 0, target.size)
            stats = fitter.statistics(target, candidate, origins, ctx)
            total = stats if total is None else total + stats
        if total is not None:
            out[name] = total
    return out


def _run_all(tasks: list[Task], plan: Plan, jobs: int) -> dict[str, Outcome]:
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    if jobs == 1:
        _init(plan)
        return {o.item: o for o in _run_chunk(tasks)}
    size = max(1, min(64, -(-len(tasks) // (jobs * 4))))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    with worker_pool(jobs, _init, (plan,)) as pool:  # workers end if this process is killed
        return {o.item: o for chunk in pool.map(_run_chunk, chunks) for o in chunk}


def _init(plan: Plan) -> None:
    _PLAN["plan"] = plan


def _run_chunk(tasks: list[Task]) -> list[Outcome]:
    plan = _PLAN["plan"]
    return [run(item, observed, target, first, plan) for item, observed, target, first in tasks]


# ---- results -------------------------------------------------------------------------------------

def _pool(outcomes: dict[str, Outcome], e: int, horizon: int) -> np.ndarray:
    """The calibration pool of evaluation ``e``: every series' rolling-choice normalised errors, or
    (with a single cutoff, so nothing rolls) the chosen models' errors on the cutoffs that chose them."""
    rolling = [o.choices[e].rolling for o in outcomes.values()]
    if any(r.size for r in rolling):
        return pooled(rolling, horizon)
    return pooled([o.choices[e].splits.normalised() for o in outcomes.values()], horizon)


def _item_cv(splits: Splits, key: str, pool: np.ndarray, dates: list[date]) -> ItemBacktest:
    rows = [(dates[p], key, splits.take(np.array([i])), pool) for i, p in enumerate(splits.positions)]
    return _stack(rows, splits.centre.shape[1])


def _stack(rows: list[tuple[date, str, Splits, np.ndarray]], h: int) -> ItemBacktest:
    """One item's scored splits, each with its interval from its own pool."""
    lower: dict[float, list[np.ndarray]] = {level: [] for level in LEVELS}
    upper: dict[float, list[np.ndarray]] = {level: [] for level in LEVELS}
    for _, _, s, pool in rows:
        for level in LEVELS:
            lo, hi = interval(s.centre + 0.5 * s.variance, s.error_scale, pool, level)
            lower[level].append(lo)
            upper[level].append(hi)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, h))

    return ItemBacktest(
        cutoffs=[when for when, _, _, _ in rows],
        families=[key for _, key, _, _ in rows],
        actual=cat([s.actual for _, _, s, _ in rows]),
        forecast=cat([np.exp(s.centre + 0.5 * s.variance) for _, _, s, _ in rows]),
        lower={level: cat(v) for level, v in lower.items()},
        upper={level: cat(v) for level, v in upper.items()},
        scale=np.concatenate([s.mase_scale for _, _, s, _ in rows]) if rows else np.zeros(0),
    )


def _borrow_scales(outcomes: dict[str, Outcome]) -> dict[str, str]:
    """Give each fallback item at least the panel's median interval scale; returns a note per item
    that borrowed it.

    The pooled errors are log errors over each series' own one-step scale, so a scale is what sets an
    item's interval width. A fallback item (too short, constant, or no candidate fitted) has no
    out-of-sample errors of its own, and its model's one-step spread may rest on one difference, or on
    none (a zero-width interval); the median scale of the items served by their own choice (of every
    item with a scale when none is) is the panel's honest guess instead, when it is wider.
    """
    def scales(found):
        return [o.error_scale for o in found if np.isfinite(o.error_scale) and o.error_scale > 0]

    fallbacks = [o for o in outcomes.values() if o.choices[-1].reason]
    known = scales(o for o in outcomes.values() if not o.choices[-1].reason) or scales(outcomes.values())
    if not known:
        return {}
    panel = float(np.median(known))
    notes = {}
    for o in fallbacks:
        if not o.error_scale >= panel:
            notes[o.item] = (f"interval scale {panel:.4g}, the panel's median (its own model's, "
                             f"{o.error_scale:.4g}, has no out-of-sample errors behind it)")
            o.error_scale = panel
    return notes


def _choice_record(o: Outcome, plan: Plan, interval: str | None = None) -> dict[str, Any]:
    chosen = o.choices[-1]
    record: dict[str, Any] = {"family": chosen.key, "hyperparameters": plan.candidates[chosen.key],
                              "cv_mase": {k: v for k, v in o.scores.items()}, "window": o.window}
    if chosen.reason:
        record["reason"] = chosen.reason
    if interval:
        record["interval"] = interval
    return record


def _artifact(series: Any, o: Outcome, plan: Plan, pool: np.ndarray, interval: str | None = None
              ) -> ModelArtifact:
    chosen = o.choices[-1]
    section = o.section
    history = series.tail(HISTORY_POINTS)
    metadata = {"item_id": o.item, "hyperparameters": plan.candidates[chosen.key],
                "training": {"start": series.timestamps[0].isoformat(), "end": series.timestamps[-1].isoformat(),
                             "observations": len(series), "window": o.window, "horizon": plan.ctx.horizon},
                "metrics": {"cv_mase": o.scores.get(chosen.key, float("nan"))}}
    if chosen.reason:
        metadata["fallback"] = chosen.reason
    if interval:
        metadata["interval"] = interval
    return ModelArtifact(
        spec=section.spec, freq=series.freq, last_timestamp=series.timestamps[-1].isoformat(),
        t_last=len(series) - 1, parameters={**section.parameters, "error_scale": o.error_scale},
        calibration_errors=pool,
        history={"timestamps": [t.isoformat() for t in history.timestamps], "values": history.values},
        metadata=metadata, family=chosen.key if chosen.key == COMBINATION else plan.candidates[chosen.key]["family"],
        core=section.core,
    )


def _objective(outcomes) -> float:
    return _mean_objective(o.objective for o in outcomes)


def _objectives(outcomes, choice: dict[str, str], objective: float, families: list[str]) -> dict[str, float]:
    """The objective of each ``family`` choice (at this history), from the same forecasts: every fit
    forecasts every candidate, so one per-series fit compares the global choices with it."""
    outcomes = list(outcomes)
    out = {choice["family"]: objective}
    for k in families:
        if k not in out and k != PER_SERIES and all(k in o.objectives for o in outcomes):
            out[k] = _mean_objective(o.objectives[k] for o in outcomes)
    return out


def _mean_objective(sums) -> float:
    per_series = [total / count for total, count in sums if count]
    return float(np.mean(per_series)) if per_series else float("nan")


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))
