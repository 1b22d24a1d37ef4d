"""The search: every candidate of every model family cross-validated on the same splits with the same
objective (``OBJECTIVE``, CV MASE), in parallel; combinations of the best families compete too."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.cv import (
    accuracy, cross_validate_candidate, seasonal_naive_scale, selection_origins, sliding_origins,
)
from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.families.combination import (
    build as build_combinations, equal_top, ranked_members,
)
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.settings import (
    COMBINATION, EQUAL_TOP, LOWEST, OBJECTIVE, Settings, check_offered,
)
from pipeline_code.engine.workers import worker_pool

_DATA: dict[str, Any] = {}


class TuningError(RuntimeError):
    """Every candidate of every family failed: nothing can be trained."""


@dataclass
class TuningResult:
    """Every candidate (and combination) with its objective; ``best`` is the one served (``search.serve``:
    equal weights of the best members, or the lowest ``OBJECTIVE``)."""

    candidates: list[dict[str, Any]]
    seconds: float
    jobs: int
    splits: int
    family_seconds: dict[str, float] = field(default_factory=dict)  # per family: seconds per CV split
    # each single candidate's CV point forecasts (splits, horizon), by its ``index``; not written
    forecasts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    served: int | None = None  # the candidate ``search.serve`` picks; None: the lowest objective
    serve: str = LOWEST  # how it was picked, for the report

    @property
    def best(self) -> dict[str, Any]:
        if self.served is not None:
            return self.candidates[self.served]
        return min(self.candidates, key=lambda c: c[OBJECTIVE])

    def ranking(self) -> list[dict[str, Any]]:
        """The hyperparameters of the candidates and combinations that fitted, in the order the train stage
        tries them (``stages.fit_ranked``): ``best`` first, then the rest by the objective (``lowest``'s
        order, ties in index order)."""
        best = self.best
        rest = sorted((c for c in self.candidates if c is not best and np.isfinite(c[OBJECTIVE])),
                      key=lambda c: c[OBJECTIVE])
        return [c["hyperparameters"] for c in [best, *rest]]

    def best_spec(self, season_length: float) -> ModelSpec:
        """The best harmonic candidate's specification."""
        harmonic = [c for c in self.candidates if c["hyperparameters"]["family"] == HARMONIC]
        return spec_from_hyperparameters(min(harmonic, key=lambda c: c[OBJECTIVE])["hyperparameters"],
                                         season_length)

    def scope(self) -> str:
        """What was scored, for logs: "93 candidates and 3 combinations x 30 splits"."""
        combos = sum(c["hyperparameters"]["family"] == COMBINATION for c in self.candidates)
        singles = f"{len(self.candidates) - combos} candidates"
        return f"{singles}{f' and {combos} combinations' if combos else ''} x {self.splits} splits"

    def failures(self) -> dict[str, str]:
        """Why candidates failed, one reason per family (the report states them)."""
        out: dict[str, str] = {}
        for c in self.candidates:
            if c.get("failed"):
                out.setdefault(c["hyperparameters"]["family"], c["failed"])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": OBJECTIVE,
            "serve": self.serve,
            "seconds": self.seconds,
            "jobs": self.jobs,
            "splits_per_candidate": self.splits,
            "seconds_per_split": self.family_seconds,
            "failures": self.failures(),
            "best": self.best,
            "candidates": self.candidates,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_number))


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, np.generic) else str(value)


def spec_from_hyperparameters(hp: dict[str, Any], season_length: float) -> ModelSpec:
    return ModelSpec.from_dict({**hp, "season_length": season_length})


def candidate_space(settings: Settings) -> list[dict[str, Any]]:
    """Every candidate of every family in ``settings.search.families`` (each dict names its family)."""
    return [c for name in settings.search.families for c in family(name).candidates(settings)]


def selection_grid(n: int, settings: Settings) -> np.ndarray:
    """The CV splits every candidate is scored on (series of length ``n``)."""
    grid = sliding_origins(n, window=settings.cv.window, horizon=settings.data.horizon,
                           step=settings.cv.step)
    return selection_origins(grid, settings.search.selection_splits)


def tune(
    observed: np.ndarray,
    counterfactual: np.ndarray,
    settings: Settings,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> TuningResult:
    """Cross-validate every candidate on the training part, then the combinations.

    Each candidate trains on the observed or the counterfactual series (its
    ``use_counterfactual_data``); all are scored against the counterfactual-cleaned series, i.e. on
    how well they forecast normal behaviour. A candidate whose fit fails on any split is scored
    failed (infinite objective) with the reason; if every one fails, ``TuningError``.
    """
    started = time.perf_counter()
    singles, forecasts = score_candidates(observed, counterfactual, settings, jobs=jobs, progress=progress)
    return select(singles, forecasts, counterfactual, settings, seconds=time.perf_counter() - started,
                  jobs=jobs or os.cpu_count() or 1)


def score_candidates(
    observed: np.ndarray,
    counterfactual: np.ndarray,
    settings: Settings,
    *,
    family_name: str | None = None,
    jobs: int | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
    """Every candidate of ``candidate_space(settings)`` (or ``family_name``'s only: a cloud trial), scored
    on the selection splits: their records, each with its ``index`` in that space, in index order, and
    their CV point forecasts by index (None where the fit failed)."""
    jobs = jobs or os.cpu_count() or 1
    check_offered(settings, panel=False)  # search.families offers a model for the data's season
    candidates = candidate_space(settings)
    data = {False: np.asarray(observed, float), True: np.asarray(counterfactual, float)}
    origins = selection_grid(data[True].size, settings)
    shared = {"data": data, "origins": origins, "ctx": Context.from_settings(settings)}
    chosen = [i for i, c in enumerate(candidates) if family_name in (None, c["family"])]
    # the costly families first, one candidate per task, so the two workers finish together
    tasks = [(i, candidates[i]) for i in sorted(chosen, key=lambda i: family(candidates[i]["family"]).batched)]
    bar = _progress(len(tasks), progress)
    results: dict[int, dict[str, Any]] = {}
    forecasts: dict[int, np.ndarray] = {}
    # workers end if this process is killed, and at once on Ctrl-C or an error
    with nullcontext() if jobs == 1 else worker_pool(jobs, _init, (shared,)) as pool:
        if pool is None:
            _init(shared)
        outputs = map(_evaluate, tasks) if pool is None else pool.map(_evaluate, tasks)
        try:
            for index, result, forecast in outputs:
                results[index], forecasts[index] = result, forecast
                bar.update(1)
        finally:
            bar.close()
    return [results[i] for i in chosen], forecasts


def select(singles: list[dict[str, Any]], forecasts: dict[int, np.ndarray], counterfactual: np.ndarray,
           settings: Settings, *, seconds: float, jobs: int) -> TuningResult:
    """The tune's result from every scored single (``score_candidates``' records, all of the candidate
    space in index order, locally or merged from the cloud's trials): the combinations scored too, and
    ``search.serve``'s pick. ``TuningError`` if every single failed."""
    if not any(np.isfinite(c[OBJECTIVE]) for c in singles):
        reasons = "; ".join(f"{f}: {r}" for f, r in TuningResult(singles, 0, jobs, 0).failures().items())
        raise TuningError(f"every candidate of every family failed to fit ({reasons})")
    target = np.asarray(counterfactual, float)
    origins = selection_grid(target.size, settings)
    ctx = Context.from_settings(settings)
    scored, served, rule = _with_combinations(singles, forecasts, target, origins, ctx, settings)
    return TuningResult(scored, seconds, jobs, int(origins.size), _seconds_per_split(singles, origins.size),
                        forecasts, served, rule)


def _with_combinations(singles: list[dict[str, Any]], forecasts: dict[int, np.ndarray], target: np.ndarray,
                       origins: np.ndarray, ctx: Context, settings: Settings) -> tuple[list, int | None, str]:
    """The singles and the scored combinations; the index of the one ``search.serve`` picks (None: the
    lowest objective) and the rule's name."""
    actual = target[origins[:, None] + np.arange(ctx.horizon)[None, :]]
    scale = seasonal_naive_scale(target, origins, ctx.window, ctx.period)
    served_k = settings.search.serve_top
    top = serves_top(singles, settings)
    combos = []
    for combo in build_combinations(singles, forecasts, actual,
                                    tuple(set(settings.search.combination_sizes) | ({served_k} if top else set()))):
        weights = np.asarray(combo["hyperparameters"]["weights"])
        mean = sum(w * forecasts[i] for w, i in zip(weights, combo["indices"]))
        combos.append(_scored(combo["hyperparameters"], accuracy(actual, mean, scale), origins.size,
                              sum(singles[i]["seconds"] for i in combo["indices"])))
    scored = singles + combos
    if not top:
        return scored, None, LOWEST
    kind = equal_top(served_k)
    return scored, next(i for i, c in enumerate(scored) if c["hyperparameters"].get("kind") == kind), kind


def serves_top(singles: list[dict[str, Any]], settings: Settings) -> bool:
    """Whether ``search.serve`` serves equal weights of the best members: its rule is ``equal_top`` and
    ``search.serve_top`` members fitted (fewer, e.g. a narrowed ``search.families``: the lowest objective)."""
    return settings.search.serve == EQUAL_TOP and len(ranked_members(singles)) >= settings.search.serve_top


def _seconds_per_split(singles: list[dict[str, Any]], splits: int) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for c in singles:
        out.setdefault(c["hyperparameters"]["family"], []).append(c["seconds"] / max(splits, 1))
    return {name: float(np.mean(v)) for name, v in out.items()}


def _init(shared: dict[str, Any]) -> None:
    _DATA.clear()
    _DATA.update(shared)


def _evaluate(task: tuple[int, dict[str, Any]]) -> tuple[int, dict[str, Any], np.ndarray]:
    index, candidate = task
    started = time.perf_counter()
    try:
        result = cross_validate_candidate(_DATA["data"], _DATA["data"][True], candidate, _DATA["origins"],
                                          _DATA["ctx"])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            metrics = result.metrics()
        failed = result.forecasts.reason if result.failed.any() else _undefined(result, metrics)
        forecast = result.forecast
    except Exception as err:  # noqa: BLE001 - a family that cannot fit is scored failed, not a crash
        metrics = {"mse": np.inf, "mae": np.inf, "mase": np.inf}
        failed, forecast = f"{type(err).__name__}: {err}", None
    scored = _scored(candidate, metrics, _DATA["origins"].size, time.perf_counter() - started)
    if failed:
        scored["failed"] = failed
    scored["index"] = index
    return index, scored, forecast


def _undefined(result: CVResult, metrics: dict[str, float]) -> str | None:
    """Why a candidate that fitted every split has no finite objective, else None."""
    if np.isfinite(metrics[OBJECTIVE.removeprefix("cv_")]):
        return None
    zero = int(np.sum(result.scale == 0))
    if zero:
        return (f"CV MASE undefined: the seasonal-naive error that scales it is zero in {zero} of"
                f" {result.scale.size} splits' windows (the series repeats itself exactly)")
    return "non-finite CV error (its forecasts overflow)"


def _scored(hp: dict[str, Any], metrics: dict[str, float], splits: int, seconds: float) -> dict[str, Any]:
    return {"hyperparameters": hp, "cv_mse": float(metrics["mse"]), "cv_mae": float(metrics["mae"]),
            "cv_mase": float(metrics["mase"]), "splits": int(splits), "seconds": seconds}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="tuning", unit="candidate", file=sys.stderr, leave=False)
