"""The local runner: every stage of the state machine, on this machine, in a folder laid out like the
bucket (``raw/``, ``runs/<run-id>/{processed,reports,models}/``, ``forecasts/``) plus ``registry/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline_code.pipeline.registry import APPROVED, PENDING, LocalRegistry, Version
from pipeline_code.engine.settings import Settings
from pipeline_code.pipeline.stages import (
    EVALUATION_FILE, FORECAST_FILE, run_evaluation, run_processing, run_training,
)


class PipelineError(RuntimeError):
    """A run that stopped at a stage; nothing was registered and the approved model is untouched."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage} failed: {reason}")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    version: Version
    promoted: bool
    evaluation: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def new_run_id(data: Path) -> str:
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:8]
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{digest}"


def run_pipeline(
    data: Path, workdir: Path, settings: Settings, *, jobs: int | None = None,
    progress: bool = True, manual_approval: bool = False, log: Callable[[str], None] = print,
) -> RunResult:
    """Upload -> preprocess -> tune -> train -> evaluate -> gate -> register -> export."""
    from pipeline_code.engine.tuning import tune

    data, workdir = Path(data), Path(workdir)
    if not data.is_file():
        raise PipelineError("upload", f"no such file: {data}")
    run_id = new_run_id(data)
    run_dir = workdir / "runs" / run_id
    raw = workdir / "raw" / f"{run_id}-{data.name}"
    raw.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, raw)
    registry = LocalRegistry(workdir / "registry")
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[{run_id}] {name} ...")
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # every failure ends the run with a reason, like Catch -> Fail
            _fail(run_dir, name, err)
            raise PipelineError(name, str(err)) from err
        timings[name] = round(time.perf_counter() - started, 3)
        return result

    processed = run_dir / "processed"
    reports = run_dir / "reports"
    report = stage("preprocess", lambda: run_processing(raw, processed, settings))
    if report["episode"]:
        ep = report["episode"]
        log(f"  structural break {ep['start']}..{ep['end']} replaced by a counterfactual")

    def do_tune():
        from pipeline_code.engine.plots import plot_tuning
        from pipeline_code.pipeline.stages import read_processed

        train = read_processed(processed / "train", settings.data.freq)
        result = tune(train.series.values, train.counterfactual, settings, jobs=jobs, progress=progress)
        result.write(reports / "tuning.json")
        plot_tuning(reports / "tuning.png", result.candidates)
        return result

    tuning = stage("tune", do_tune)
    best = tuning.best
    log(f"  {len(tuning.candidates)} candidates x {tuning.splits} splits in {tuning.seconds:.1f}s;"
        f" best {best['hyperparameters']} CV MSE {best['cv_mse']:.1f}")
    model_dir = run_dir / "models" / "best"
    stage("train", lambda: run_training(
        processed / "train", processed / "test", best["hyperparameters"], model_dir, settings,
        report_dir=reports))
    champion = registry.approved()
    evaluation = stage("evaluate", lambda: run_evaluation(
        processed / "train", processed / "test", model_dir,
        champion.model_dir if champion else None, reports / "evaluation", settings))
    passed = evaluation["gate"]["passed"]
    log(f"  gate: {'passed' if passed else 'not passed'} - {evaluation['gate']['reason']}")
    status = APPROVED if passed and not manual_approval else PENDING
    version = stage("register", lambda: registry.register(
        model_dir, status=status, run_id=run_id, evaluation=evaluation))
    promoted = status == APPROVED

    def export() -> None:
        source = reports / "evaluation" / FORECAST_FILE
        target = workdir / "forecasts" / run_id / FORECAST_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if promoted:
            latest = workdir / "forecasts" / "latest" / FORECAST_FILE
            latest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, latest)

    stage("export", export)
    log(f"  registered {version.name} as {status}"
        + (" (now serving)" if promoted else f"; the approved model stays {champion.name if champion else 'none'}"))
    (run_dir / "run.json").write_text(json.dumps({
        "run_id": run_id, "status": "Succeeded", "version": version.name, "promoted": promoted,
        "timings": timings, "evaluation": str(Path("reports") / "evaluation" / EVALUATION_FILE),
    }, indent=1))
    return RunResult(run_id, run_dir, version, promoted, evaluation, timings)


def _fail(run_dir: Path, stage: str, err: Exception) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(
        {"status": "Failed", "stage": stage, "reason": str(err)}, indent=1))
