"""The hyperparameter search: every candidate cross-validated, in parallel, objective = CV MSE."""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.cv import cross_validate
from pipeline_code.engine.core.spec import ModelSpec, max_fourier_k
from pipeline_code.engine.settings import Settings

_DATA: dict[bool, np.ndarray] = {}


@dataclass
class TuningResult:
    """Every candidate with its objective; ``best`` has the lowest CV MSE."""

    candidates: list[dict[str, Any]]
    seconds: float
    jobs: int
    splits: int

    @property
    def best(self) -> dict[str, Any]:
        return min(self.candidates, key=lambda c: c["cv_mse"])

    def best_spec(self, season_length: float) -> ModelSpec:
        return spec_from_hyperparameters(self.best["hyperparameters"], season_length)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": "cv_mse",
            "seconds": self.seconds,
            "jobs": self.jobs,
            "splits_per_candidate": self.splits,
            "best": self.best,
            "candidates": self.candidates,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))


def spec_from_hyperparameters(hp: dict[str, Any], season_length: float) -> ModelSpec:
    return ModelSpec.from_dict({**hp, "season_length": season_length})


def candidate_space(settings: Settings) -> list[dict[str, int]]:
    """The search space, without Fourier orders the season length cannot carry."""
    k_max = max_fourier_k(settings.data.season_length)
    return [c for c in settings.search.candidates() if c["fourier_k"] <= k_max]


def tune(
    observed: np.ndarray,
    counterfactual: np.ndarray,
    settings: Settings,
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> TuningResult:
    """Cross-validate every candidate on the training part.

    Each candidate trains on the observed or the counterfactual series (its
    ``use_counterfactual_data``); all are scored against the counterfactual-cleaned series, i.e. on
    how well they forecast normal behaviour.
    """
    jobs = jobs or os.cpu_count() or 1
    candidates = candidate_space(settings)
    args = [(c, settings.data.season_length, settings.cv.window, settings.data.horizon, settings.cv.step)
            for c in candidates]
    data = {False: np.asarray(observed, float), True: np.asarray(counterfactual, float)}
    started = time.perf_counter()
    bar = _progress(len(args), progress)
    results: list[dict[str, Any]] = []
    if jobs == 1:
        _init(data)
        for arg in args:
            results.append(_evaluate(arg))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(data,)) as pool:
            for result in pool.map(_evaluate, args, chunksize=max(1, len(args) // (jobs * 8))):
                results.append(result)
                bar.update(1)
    bar.close()
    splits = results[0]["splits"] if results else 0
    return TuningResult(results, time.perf_counter() - started, jobs, splits)


def _init(data: dict[bool, np.ndarray]) -> None:
    _DATA.clear()
    _DATA.update(data)


def _evaluate(arg: tuple) -> dict[str, Any]:
    hp, season_length, window, horizon, step = arg
    started = time.perf_counter()
    spec = spec_from_hyperparameters(hp, season_length)
    result = cross_validate(
        _DATA[spec.use_counterfactual_data], spec, window=window, horizon=horizon, step=step,
        target=_DATA[True],
    )
    metrics = result.metrics()
    return {
        "hyperparameters": hp,
        "cv_mse": metrics["mse"],
        "cv_mae": metrics["mae"],
        "cv_mase": metrics["mase"],
        "splits": int(result.origins.size),
        "seconds": time.perf_counter() - started,
    }


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
