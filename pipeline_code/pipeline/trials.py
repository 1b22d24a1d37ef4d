"""One series' cloud tuning: a trial per family, and the model ``search.serve`` serves from them (the
cloud's counterpart of the local tune; docs/design.md, "Select").

The tuning job is a Grid search over the family (``Settings.parameter_ranges``). Each trial scores every
candidate of its family on the train part's selection splits, as the local tune scores them
(``engine.tuning.score_candidates``), and writes them to ``/opt/ml/model``: ``trial.json`` (each
candidate's record, with its index in the run document's candidate space) and ``forecasts.npz`` (its CV
point forecasts). SageMaker packs that folder to ``<S3OutputPath>/<job>/output/model.tar.gz``
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html). The Select
job reads every trial under the run's ``models/`` prefix, merges them into the whole space and picks as
the local tune picks (``engine.tuning.select``, combinations included), then fits that model as the
local train stage does (``stages.fit_ranked``: the next of the tune's ranking when it fails to fit): the
same data and run document give the same model both ways.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.settings import COMBINATION, OBJECTIVE, Settings
from pipeline_code.engine.tuning import TuningResult, candidate_space, score_candidates, select
from pipeline_code.pipeline.layout import TUNING_FILE
from pipeline_code.pipeline.stages import fit_ranked, read_processed
from pipeline_code.pipeline.trial_files import TRIAL_JSON, UNSCORED, TrialError, no_trials, read_archives

TRIAL_FORECASTS = "forecasts.npz"
TRIAL_FORMAT = "forecast-mlops.trial"
SELECTION_FILE = "selection.json"
# A candidate of the space that no trial scored (its family's training job failed): scored failed.
NOT_SCORED = "not scored: its family's trial wrote no result (the training job failed)"


def run_trial(train_dir: Path, family_name: str, model_dir: Path, settings: Settings, *,
              jobs: int = 1) -> dict[str, float]:
    """Score every candidate of ``family_name`` on the train part; write the trial to ``model_dir``.
    Returns its metrics: the family's lowest objective (``UNSCORED`` when none fitted, or when the family
    offers no candidate for these settings, e.g. ``arima`` on weekly data)."""
    train = read_processed(train_dir, settings.data.freq)
    singles, forecasts = score_candidates(train.series.values, train.counterfactual, settings,
                                          family_name=family_name, jobs=jobs)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / TRIAL_JSON).write_text(json.dumps(
        {"format": TRIAL_FORMAT, "family": family_name, "candidates": singles}, indent=1))
    np.savez(model_dir / TRIAL_FORECASTS, **{str(i): f for i, f in forecasts.items() if f is not None})
    best = min((c for c in singles if math.isfinite(c[OBJECTIVE])), key=lambda c: c[OBJECTIVE], default=None)
    return {OBJECTIVE: best[OBJECTIVE], "cv_mse": best["cv_mse"]} if best else {OBJECTIVE: UNSCORED, "cv_mse": UNSCORED}


def read_trials(folder: Path, tuning_job: str | None = None) -> list[dict[str, Any]]:
    """Every trial under ``folder`` (of ``tuning_job``, when given: ``trial_files.read_archives``), in
    job-name order: its ``trial`` (the training job's name), ``family``, ``candidates`` (records with
    their ``index``) and ``forecasts`` (CV point forecasts by index)."""
    trials = []
    for job, document, files in read_archives(folder, TRIAL_FORMAT, (TRIAL_FORECASTS,), tuning_job=tuning_job):
        try:
            candidates = [{**c, "index": int(c["index"]), OBJECTIVE: float(c[OBJECTIVE]),
                           "hyperparameters": dict(c["hyperparameters"])} for c in document["candidates"]]
            stored = np.load(io.BytesIO(files.get(TRIAL_FORECASTS, b"")), allow_pickle=False) if candidates else {}
            forecasts = {int(name): np.asarray(stored[name], float) for name in stored}
        except (ValueError, KeyError, TypeError, AttributeError, OSError, zlib.error) as err:
            raise TrialError(f"{job}: not a trial ({type(err).__name__}: {err})") from None
        trials.append({"trial": job, "family": document.get("family"), "candidates": candidates,
                       "forecasts": forecasts})
    return trials


def merge_trials(trials: list[dict[str, Any]], settings: Settings, counterfactual: np.ndarray, *,
                 jobs: int = 1) -> tuple[TuningResult, dict[int, str]]:
    """The tune's result from the trials, as the local tune would have it, and the trial that scored each
    candidate. A candidate no trial scored is scored failed; one that is not this run document's
    candidate at its index is refused (a trial of another run)."""
    space = candidate_space(settings)
    found: dict[int, dict[str, Any]] = {}
    source: dict[int, str] = {}
    forecasts: dict[int, np.ndarray] = {}
    for t in trials:
        for c in t["candidates"]:
            i = c["index"]
            if not 0 <= i < len(space) or c["hyperparameters"] != space[i]:
                raise TrialError(f"{t['trial']}: candidate {i} {c['hyperparameters']} is not this run "
                                 "document's candidate")
            found[i], source[i] = c, t["trial"]
            if i in t["forecasts"]:
                forecasts[i] = t["forecasts"][i]
    inf = float("inf")
    singles = [found.get(i) or {"hyperparameters": c, "cv_mse": inf, "cv_mae": inf, OBJECTIVE: inf, "splits": 0,
                                "seconds": 0.0, "failed": NOT_SCORED, "index": i}
               for i, c in enumerate(space)]
    result = select(singles, forecasts, counterfactual, settings,
                    seconds=sum(c["seconds"] for c in found.values()), jobs=jobs)
    return result, source


def select_served(trials_dir: Path, train_dir: Path, test_dir: Path, model_dir: Path, settings: Settings,
                  *, jobs: int = 1, report_dir: Path | None = None, tuning_job: str | None = None) -> dict[str, Any]:
    """Write to ``model_dir`` the model ``search.serve`` picks from the trials under ``trials_dir``, fitted
    as the local train stage fits it (``fit_ranked``: the next of the tune's ranking when it fails to fit),
    and the tune's result to ``report_dir`` (as the local run's ``tuning.json``). Returns what the job
    reports (``selection.json``): the rule, the number of trials, ``fit_ranked``'s record (the candidate
    fitted, the tune's choice, the candidates that failed and why, the fit's CV metrics) and the trials
    the fitted candidate's members came from."""
    trials = read_trials(trials_dir, tuning_job)
    if not trials:
        raise no_trials(trials_dir, tuning_job)
    train = read_processed(train_dir, settings.data.freq)
    result, source = merge_trials(trials, settings, train.counterfactual, jobs=jobs)
    if report_dir is not None:
        from pipeline_code.engine.plots import plot_tuning

        report_dir.mkdir(parents=True, exist_ok=True)
        result.write(report_dir / TUNING_FILE)
        plot_tuning(report_dir / "tuning.png", result.candidates)
    fit = fit_ranked(train_dir, test_dir, result.ranking(), model_dir, settings, report_dir, jobs=jobs)
    candidate = fit["hyperparameters"]
    members = candidate["members"] if candidate["family"] == COMBINATION else [candidate]
    return {"serve": result.serve, "trials": len(trials), **fit,
            "members": [source[next(i for i in source if result.candidates[i]["hyperparameters"] == m)]
                        for m in members]}
