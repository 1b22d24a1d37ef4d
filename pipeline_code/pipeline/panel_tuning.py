"""A panel's tuning trial: one global choice scored as the local tuner scores it (docs/panel.md).

The tuning job's training jobs and ``panel_stages.tune_panel`` must rank the global choices alike, or
the cloud and the local pipeline serve different models for the same data: both score a candidate by
the panel objective (``PanelFit.objective``, the mean over series of the rolling choice's CV MASE) on
the **train** part only, on the tuning's cutoffs (``Settings.tuning``: at least
``series.tune_cutoffs``), an unscored choice ranking last (``ranked``). The trial's model is that fit;
the model a panel run registers is the sharded fit's, on train + test
(``panel_shards.fit_panel_in_shards``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline_code.engine.settings import Settings

# The objective of a global choice that no series could be scored with (every series too short for
# the tuning's cutoffs, or the choice failing on every series): the worst, yet a number. SageMaker reads
# a trial's objective with a regular expression, which ``nan`` or ``inf`` would not match, and then the
# tuning job has no best training job; ranked last, such a choice is taken only when every choice is
# unscored, and then each series gets ``series.fallback`` in the fit, whichever choice it is.
UNSCORED = 1e9


def ranked(objective: float) -> float:
    """A choice's objective as both tuners rank it: ``UNSCORED`` when it is not a finite number."""
    return objective if math.isfinite(objective) else UNSCORED


def panel_trial(train_dir: Path, hyperparameters: dict[str, Any], model_dir: Path, settings: Settings, *,
                jobs: int = 1) -> dict[str, Any]:
    """Fit the panel's train part with these global choices, save it to ``model_dir``; its CV metrics,
    ``cv_mase`` the objective."""
    from pipeline_code.engine.panel_fit import choice_from_hyperparameters, fit_panel
    from pipeline_code.pipeline.panel_stages import read_processed_panel, save_fitted

    panel, counterfactual = read_processed_panel(train_dir, freq=settings.data.freq)
    fitted = fit_panel(panel, settings.tuning(), choice=choice_from_hyperparameters(hyperparameters),
                       jobs=jobs, counterfactual=counterfactual)
    metrics = {**fitted.metadata["metrics"], "cv_mase": ranked(fitted.objective)}
    save_fitted(model_dir, fitted, panel, metrics)
    return metrics
