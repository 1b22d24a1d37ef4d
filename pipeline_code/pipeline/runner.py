"""The local runner: every stage of the state machine, on this machine, in a folder laid out like the
bucket (``raw/``, ``runs/<run-id>/{processed,reports,models}/``, ``forecasts/``) plus ``registry/``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_code.pipeline import runs
from pipeline_code.pipeline.registry import APPROVED, PENDING, LocalRegistry, RegistryError, Version
from pipeline_code.pipeline.uploads import UploadError, receive_upload
from pipeline_code.engine.settings import NOTHING_REGISTERED, SETTINGS_FILE, Settings
from pipeline_code.pipeline.panel_shards import fit_panel_in_shards
from pipeline_code.pipeline.layout import FORECASTS, LATEST, TUNING_FILE, publish_forecast
from pipeline_code.pipeline.stages import (
    EVALUATION_FILE, fit_ranked, run_evaluation, run_processing, served_model_dir,
)


class PipelineError(RuntimeError):
    """A run that stopped at a stage. Before registration nothing was registered and the approved model
    is untouched; ``registered`` says what was (a failed export after registration)."""

    def __init__(self, stage: str, reason: str, *, registered: str | None = None) -> None:
        self.stage = stage
        self.reason = reason
        self.registered = registered
        super().__init__(f"{stage} failed: {reason}")

    def outcome(self) -> str:
        """What the run left behind, for the user."""
        return self.registered or NOTHING_REGISTERED


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    version: Version
    promoted: bool
    evaluation: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def run_pipeline(
    data: Path, workdir: Path, settings: Settings, *, jobs: int | None = None,
    progress: bool = True, manual_approval: bool = False, log: Callable[[str], None] = print,
    derived: dict[str, Any] | None = None,
) -> RunResult:
    """Check the registry and the upload -> preprocess -> tune -> train -> evaluate -> gate ->
    register -> export."""
    from pipeline_code.engine.tuning import tune

    data, workdir = Path(data), Path(workdir)
    registry = LocalRegistry(workdir / "registry", on_wait=log)
    try:  # an unreadable registry, or an approved artifact that does not load, stops the run before the work
        registry.check_approved()
    except RegistryError as err:
        raise PipelineError("registry", str(err)) from None
    try:
        raw, run_id = receive_upload(data, workdir / "raw", settings.data.max_file_bytes)
    except UploadError as err:
        raise PipelineError("upload", str(err)) from None
    run_dir = workdir / "runs" / run_id
    record = runs.start_record(run_dir, run_id, data.name)  # state "running" (docs/operations.md)
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        log(f"[{run_id}] {name} ...")
        started = time.perf_counter()
        try:
            with _noticing_interrupts() as interrupted:
                result = fn()
        except Exception as err:  # every failure ends the run with a reason, like Catch -> Fail
            if interrupted:  # Ctrl-C turned into another error by the code it hit (below)
                runs.finish_record(run_dir, record, runs.FAILED, stage=name, reason="interrupted (Ctrl-C)")
                raise KeyboardInterrupt from err
            _fail(run_dir, record, name, err)
            raise PipelineError(name, str(err)) from err
        except KeyboardInterrupt:
            runs.finish_record(run_dir, record, runs.FAILED, stage=name, reason="interrupted (Ctrl-C)")
            raise
        timings[name] = round(time.perf_counter() - started, 3)
        return result

    # The run document, as every stage reads it (docs/design.md, "The run document").
    (run_dir / "input").mkdir(parents=True, exist_ok=True)
    (run_dir / "input" / SETTINGS_FILE).write_text(settings.to_json())
    processed = run_dir / "processed"
    reports = run_dir / "reports"
    try:
        report = stage("preprocess", lambda: run_processing(raw, processed, settings, jobs=jobs or 1))
    except PipelineError:
        raw.unlink(missing_ok=True)  # a refused upload does not stay in raw/
        raise
    if report.get("panel"):
        log(f"  {report['series']} series, {report['observations']} observations;"
            f" filled points {report['filled_points']}")
    elif report["episode"]:
        ep = report["episode"]
        log(f"  structural break {ep['start']}..{ep['end']} replaced by a counterfactual")
    if report.get("older_rows_unused"):
        log(f"  {report['older_rows_unused']}")
    if not report.get("panel") and report["filled_points"]["middle"]:
        log(f"  filled points {report['filled_points']} (gaps of up to data.max_gap_periods"
            f" {settings.data.max_gap_periods}, interpolated)")

    def do_tune():
        from pipeline_code.engine.plots import plot_tuning
        from pipeline_code.pipeline.stages import read_processed

        train = read_processed(processed / "train", settings.data.freq)
        result = tune(train.series.values, train.counterfactual, settings, jobs=jobs, progress=progress)
        result.write(reports / TUNING_FILE)
        plot_tuning(reports / "tuning.png", result.candidates)
        return result

    if report.get("panel"):
        from pipeline_code.pipeline.panel_stages import tune_panel

        best = stage("tune", lambda: tune_panel(processed / "train", reports, settings, jobs=jobs or 1))
        log(f"  {len(best['candidates'])} global choice(s) in {best['seconds']:.1f}s;"
            f" best {best['hyperparameters']} panel CV MASE {best['cv_mase']:.4f}")
        if best.get("unscored"):
            log(f"  {best['unscored']}")
        choice = best["hyperparameters"]
    else:
        tuning = stage("tune", do_tune)
        best = tuning.best
        log(f"  {tuning.scope()} in {tuning.seconds:.1f}s;"
            f" served ({tuning.serve}) {best['hyperparameters']} CV MASE {best['cv_mase']:.4f}")
        choice = tuning.ranking()
    model_dir = run_dir / "models" / "best"
    # A panel's final model is fitted shard by shard, as the cloud's sharded fit does (panel_shards.py); one
    # series' is the tune's choice, or the next of its ranking when that fails to fit (as the Select job's).
    fit = fit_panel_in_shards if report.get("panel") else fit_ranked
    trained = stage("train", lambda: fit(
        processed / "train", processed / "test", choice, model_dir, settings,
        report_dir=reports, jobs=jobs or 1))
    selection = None if report.get("panel") else _fallback(trained, log)
    champion = registry.approved()
    evaluation = stage("evaluate", lambda: run_evaluation(
        processed / "train", processed / "test", model_dir,
        champion.model_dir if champion else None, reports / "evaluation", settings, jobs=jobs or 1))
    passed = evaluation["gate"]["passed"]
    log(f"  gate: {'passed' if passed else 'not passed'} - {evaluation['gate']['reason']}")
    status = APPROVED if passed and not manual_approval else PENDING
    version = stage("register", lambda: registry.register(
        served_model_dir(model_dir, reports / "evaluation", evaluation), status=status, run_id=run_id,
        evaluation=evaluation, gated_against=champion.name if champion else None))
    if status == APPROVED and version.status != APPROVED:  # another run or a rollback changed it meanwhile
        now = registry.approved()
        log(f"  the approved model changed during this run ({champion.name if champion else 'none'} -> "
            f"{now.name if now else 'none'}): the gate's comparison no longer holds, so {version.name} waits "
            f"for a decision (forecast-mlops models approve {version.name}) or a new run")
        status, champion = PENDING, now
        evaluation["gate"]["reason"] += "; the approved model changed during the run, so it waits for a decision"
    promoted = status == APPROVED

    def export() -> None:
        # The forecast, and for a panel the per-item backtest beside it (docs/panel.md).
        for folder in [run_id, LATEST] if promoted else [run_id]:
            publish_forecast(reports / "evaluation", workdir / FORECASTS / folder)

    try:
        stage("export", export)
    except PipelineError as err:
        raise PipelineError(err.stage, err.reason, registered=(
            f"{version.name} was registered as {status}" + (" and serves" if promoted else "")
            + f"; its forecast is in runs/{run_id}/reports/evaluation/")) from err
    log(f"  registered {version.name} as {status}" + (
        f" (the model `forecast-mlops serve --model {workdir / 'registry'}` serves)" if promoted
        else f"; the approved model stays {champion.name if champion else 'none'}"))
    runs.finish_record(
        run_dir, record, runs.state_of("succeeded", promoted=promoted),
        status="Succeeded", version=version.name, promoted=promoted,
        timings=timings, evaluation=str(Path("reports") / "evaluation" / EVALUATION_FILE),
        settings=str(Path("input") / SETTINGS_FILE), derived_settings=derived or {},
        spec=runs.describe_spec(evaluation.get("spec")), metrics=runs.headline(evaluation.get("challenger")),
        reason=evaluation["gate"]["reason"], selection=selection)
    return RunResult(run_id, run_dir, version, promoted, evaluation, timings)


def _fallback(fit: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Say which candidates failed to fit before the one fitted (``stages.fit_ranked``'s record), if any;
    the record without its metrics, for the run record."""
    for failure in fit["failed"]:
        log(f"  {runs.describe_spec(failure['hyperparameters'])} failed to fit: {failure['reason']}")
    if any(f["hyperparameters"] == fit["hyperparameters"] for f in fit["failed"]):
        log(f"  none of the {len(fit['failed'])} tried passes serving's check; kept for the gate:"
            f" {runs.describe_spec(fit['hyperparameters'])}")
    elif fit["failed"]:
        log(f"  fitted instead: {runs.describe_spec(fit['hyperparameters'])},"
            f" CV MASE {fit['metrics']['cv_mase']:.4f} (the tune's candidate {len(fit['failed']) + 1} by rank)")
    return {key: value for key, value in fit.items() if key != "metrics"}


@contextmanager
def _noticing_interrupts() -> Iterator[list[int]]:
    """A list that is non-empty once SIGINT arrived inside the block, which still raises KeyboardInterrupt
    as usual: code that catches it, such as a pybind11 extension being imported (its ImportError:
    "initialization failed"), must not turn a Ctrl-C into a failure of the stage. Outside the main
    thread, where no handler can be set, the list stays empty."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored (a background job) or not set from Python: left as it is
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _fail(run_dir: Path, record: dict[str, Any], stage: str, err: Exception) -> None:
    from pipeline_code.engine.dataset import DataValidationError

    outcome = "refused" if isinstance(err, DataValidationError) else "failed"  # refused at validation
    runs.finish_record(run_dir, record, runs.state_of(outcome), status="Failed", stage=stage, reason=str(err))
