"""The local runner: every stage of the state machine, on this machine, in a folder laid out like the
bucket (``raw/``, ``runs/<run-id>/{processed,reports,models}/``, ``forecasts/``) plus ``registry/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline_code.pipeline.registry import APPROVED, PENDING, LocalRegistry, RegistryError, Version
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


def new_run_id(digest: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{digest[:8]}"


def receive_upload(data: Path, raw_dir: Path, max_bytes: int) -> tuple[Path, str]:
    """Check an upload before handling it, then copy it into ``raw_dir`` keeping its permissions.

    Refused without reading a byte: a missing file, a symbolic link, anything but a regular file, a
    file over ``max_bytes``. The copy is read once, in chunks (memory stays flat), and hashed on the
    way for the run id. Returns the copy and the run id.
    """
    try:
        seen = os.lstat(data)
    except FileNotFoundError:
        raise PipelineError("upload", f"no such file: {data}") from None
    _check_upload(data, seen, max_bytes)
    try:  # O_NOFOLLOW: a symlink swapped in after lstat is refused; O_NONBLOCK: a FIFO cannot hang us
        fd = os.open(data, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise PipelineError("upload", f"cannot open {data}: {err.strerror}") from None
    raw_dir.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as source:
        opened = os.fstat(source.fileno())
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            raise PipelineError("upload", f"{data} was replaced while it was being read")
        _check_upload(data, opened, max_bytes)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=raw_dir, prefix=".upload-", delete=False) as copy:
            tmp = Path(copy.name)
            try:
                copied = 0
                while chunk := source.read(1 << 20):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise PipelineError("upload", f"{data} grew past the limit of {max_bytes} bytes"
                                            " while it was being read")
                    digest.update(chunk)
                    copy.write(chunk)
                os.fchmod(copy.fileno(), stat.S_IMODE(opened.st_mode))
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    run_id = new_run_id(digest.hexdigest())
    raw = raw_dir / f"{run_id}-{data.name}"
    os.replace(tmp, raw)
    return raw, run_id


def _check_upload(data: Path, info: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise PipelineError("upload", f"{data} is a symbolic link; upload the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise PipelineError("upload", f"{data} is not a regular file")
    if info.st_size > max_bytes:
        raise PipelineError("upload", f"[oversize] file is {info.st_size} bytes; the limit is {max_bytes} bytes")


def run_pipeline(
    data: Path, workdir: Path, settings: Settings, *, jobs: int | None = None,
    progress: bool = True, manual_approval: bool = False, log: Callable[[str], None] = print,
) -> RunResult:
    """Check the registry and the upload -> preprocess -> tune -> train -> evaluate -> gate ->
    register -> export."""
    from pipeline_code.engine.tuning import tune

    data, workdir = Path(data), Path(workdir)
    registry = LocalRegistry(workdir / "registry")
    try:  # an unreadable registry stops the run before the work, not after tuning
        registry.approved()
    except RegistryError as err:
        raise PipelineError("registry", str(err)) from None
    raw, run_id = receive_upload(data, workdir / "raw", settings.data.max_file_bytes)
    run_dir = workdir / "runs" / run_id
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
    try:
        report = stage("preprocess", lambda: run_processing(raw, processed, settings))
    except PipelineError:
        raw.unlink(missing_ok=True)  # a refused upload does not stay in raw/
        raise
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
