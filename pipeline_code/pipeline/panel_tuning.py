"""A panel's tuning, locally and in the cloud alike (docs/panel.md): every global choice scored on the
train part, and the best of them.

Both tuners score a choice by the panel objective (``PanelFit.objective``, the mean over series of the
rolling choice's CV MASE) on the tuning's cutoffs (``Settings.tuning``: at least
``series.tune_cutoffs``), an unscored choice ranking last (``trial_files.ranked``). One per-series fit
per history and scale forecasts every family choice at those (``score_choices``). The local search
(``panel_stages.tune_panel``) does that for every history and scale; the cloud's tuning job is a Grid
over them, one trial each (``panel_trial``), and the sharded fit reads every trial back and takes the
same best choice (``best_of_trials``). The model a panel run registers is the sharded fit's, on train +
test (``panel_shards.fit_panel_in_shards``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline_code.engine.settings import PER_SERIES, Settings
from pipeline_code.pipeline.trial_files import TRIAL_JSON, UNSCORED, TrialError, no_trials, ranked, read_archives

PANEL_TRIAL_FORMAT = "forecast-mlops.panel-trial"


def global_candidates(settings: Settings) -> list[dict[str, str]]:
    """Every combination of the panel's global choices, family first: the order in which the first of
    equal objectives wins."""
    return [{"family": f, "history": h, "scale": s} for f in settings.panel_families()
            for h in settings.panel_histories() for s in settings.panel_scales()]


def score_choices(panel: Any, counterfactual: Any, settings: Settings, history: str, scale: str, *,
                  jobs: int = 1) -> list[dict[str, Any]]:
    """Every family choice at ``history`` and ``scale``, scored off one per-series fit on the tuning's
    cutoffs (``report["objectives"]``: what a fit with that choice scores, as a test checks)."""
    from pipeline_code.engine.panel_fit import fit_panel

    fitted = fit_panel(panel, settings.tuning(), choice={"family": PER_SERIES, "history": history, "scale": scale},
                       jobs=jobs, counterfactual=counterfactual)
    scored = []
    for name in settings.panel_families():
        candidate = {"family": name, "history": history, "scale": scale}
        if name == PER_SERIES:
            scored.append({"hyperparameters": candidate, "cv_mase": ranked(fitted.objective),
                           "families": fitted.report["families"], "seconds": fitted.report["seconds"]})
        else:  # read off the same fit
            scored.append({"hyperparameters": candidate, "seconds": 0.0,
                           "cv_mase": ranked(fitted.report["objectives"][name])})
    return scored


def best_choice(scored: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """The scored choices in ``global_candidates`` order (what is missing, e.g. a failed trial's, is left
    out), and the best: the lowest objective, the first of equals."""
    order = global_candidates(settings)
    ordered = sorted(scored, key=lambda c: order.index(c["hyperparameters"]))
    return {"candidates": ordered, "best": min(ordered, key=lambda c: c["cv_mase"])}


def panel_trial(train_dir: Path, hyperparameters: dict[str, Any], model_dir: Path, settings: Settings, *,
                jobs: int = 1) -> dict[str, Any]:
    """A tuning job's trial: every family choice at the trial's ``history`` and ``scale``, scored on the
    train part and written to ``model_dir`` (``trial.json``); its best objective is the trial's."""
    from pipeline_code.pipeline.panel_stages import read_processed_panel

    panel, counterfactual = read_processed_panel(train_dir, freq=settings.data.freq)
    scored = score_choices(panel, counterfactual, settings, hyperparameters["history"], hyperparameters["scale"],
                           jobs=jobs)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / TRIAL_JSON).write_text(json.dumps({"format": PANEL_TRIAL_FORMAT, "candidates": scored}, indent=1))
    return {"cv_mase": min((c["cv_mase"] for c in scored), default=UNSCORED)}


def best_of_trials(folder: Path, settings: Settings, tuning_job: str | None = None) -> dict[str, Any]:
    """The best global choice of the panel trials under ``folder`` (of ``tuning_job``, when given), as the
    local search takes it; a choice that is not one of this run document's is refused (a trial of
    another run)."""
    known = global_candidates(settings)
    scored = []
    for job, document, _ in read_archives(folder, PANEL_TRIAL_FORMAT, tuning_job=tuning_job):
        for c in document.get("candidates", []):
            choice = c.get("hyperparameters") if isinstance(c, dict) else c
            if choice not in known:
                raise TrialError(f"{job}: {choice} is not a global choice of this run document")
            scored.append(c)
    if not scored:
        raise no_trials(folder, tuning_job)
    return best_choice(scored, settings)["best"]
