"""A tuning job's trials as SageMaker leaves them, read back: each training job's ``/opt/ml/model``
packed to ``<S3OutputPath>/<job>/output/model.tar.gz``
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html), holding
the trial's ``trial.json`` (and, for one series, ``forecasts.npz``). One series' trials are read by
``pipeline/trials.py``, a panel's by ``pipeline/panel_tuning.py``; both tuners' objective for a trial
that scored nothing is ``UNSCORED``.
"""

from __future__ import annotations

import json
import math
import tarfile
import zlib
from pathlib import Path
from typing import Any

from pipeline_code.pipeline.layout import MODEL_ARCHIVE

TRIAL_OUTPUT = "output"  # <job>/output/model.tar.gz; the served model (models/served/) is no trial
TRIAL_JSON = "trial.json"
# The objective of a trial or choice that scored nothing (no candidate of the family fitted or is offered
# here; a panel's choice that no series could be scored with): the worst, yet a number. SageMaker reads a
# trial's objective with a regular expression, which ``nan`` or ``inf`` would not match, and then the
# tuning job has no best training job.
UNSCORED = 1e9


class TrialError(ValueError):
    """A trial's archive is unreadable, or is not a trial of this run document."""


def ranked(objective: float) -> float:
    """An objective as the tuners rank it: ``UNSCORED`` when it is not a finite number."""
    return objective if math.isfinite(objective) else UNSCORED


def _members(archive: Path, names: set[str]) -> dict[str, bytes]:
    """The files ``names`` of ``archive``, read without extracting anything."""
    try:
        with tarfile.open(archive) as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers()
                    if m.isfile() and m.name.removeprefix("./") in names}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:  # truncated: EOFError
        raise TrialError(f"{archive.parent.parent.name}: unreadable {archive.name} ({err})") from None


def read_archives(folder: Path, fmt: str, extra: tuple[str, ...] = (), *,
                  tuning_job: str | None = None) -> list[tuple[str, dict[str, Any], dict[str, bytes]]]:
    """Every trial under ``folder`` (``<job>/output/model.tar.gz``, at any depth; only ``tuning_job``'s
    training jobs, ``<tuning job>-...``, when it is given), in job-name order: the training job's name,
    its ``trial.json`` (whose ``format`` must be ``fmt``) and the ``extra`` files it holds. A failed
    trial wrote no archive and is not here."""
    out = []
    for archive in sorted(Path(folder).rglob(MODEL_ARCHIVE)):
        job = archive.parent.parent.name
        if archive.parent.name != TRIAL_OUTPUT or (tuning_job and not job.startswith(f"{tuning_job}-")):
            continue
        files = _members(archive, {TRIAL_JSON, *extra})
        if TRIAL_JSON not in files:
            raise TrialError(f"{job}: no {TRIAL_JSON} in {archive.name}")
        try:
            document = json.loads(files.pop(TRIAL_JSON))
            if not isinstance(document, dict) or document.get("format") != fmt:
                raise ValueError(f"format {document.get('format') if isinstance(document, dict) else None!r}, "
                                 f"not {fmt!r}")
        except ValueError as err:
            raise TrialError(f"{job}: not a trial ({type(err).__name__}: {err})") from None
        out.append((job, document, files))
    return out


def no_trials(folder: Path, tuning_job: str | None = None) -> TrialError:
    of = f" of tuning job {tuning_job}" if tuning_job else ""
    return TrialError(f"no trial's {TRIAL_OUTPUT}/{MODEL_ARCHIVE}{of} under {Path(folder).name}/")
