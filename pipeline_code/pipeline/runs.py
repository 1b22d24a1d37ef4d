"""Run records: ``runs/<run-id>/run.json`` written by the local runner, read by ``forecast-mlops runs``.

A record carries a uniform ``state``, the same word locally and in the cloud:

* ``queued``   waiting for the run before it (the watch folder's queue; an upload not yet started);
* ``running``  started, not finished (locally with the runner's process id and, on Linux, which process
  that was: a record whose process is gone, or whose pid now names another process, reads as ``failed``,
  "interrupted"; a run folder without a record reads as ``failed``, "no record");
* ``promoted`` finished, registered as Approved: it serves;
* ``gated``    finished, registered as PendingManualApproval: the gate (or manual approval) held it;
* ``failed``   a stage failed; nothing was registered;
* ``refused``  the input or the run document was refused at validation; nothing ran.

Records written before ``state`` existed (``{"status": "Succeeded", "promoted": ...}``) are read too.
A record that does not read (not JSON, or a field of the wrong kind) lists as ``unreadable`` with the
reason (RecordError); showing it fails with the file and the problem. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline_code.pipeline import layout

QUEUED, RUNNING, PROMOTED, GATED, FAILED, REFUSED = "queued", "running", "promoted", "gated", "failed", "refused"
STATES = (QUEUED, RUNNING, PROMOTED, GATED, FAILED, REFUSED)
UNREADABLE = "unreadable"  # not a state: what ``runs list`` shows for a damaged record (RecordError)
HEADLINE_METRICS = ("mase", "coverage_80", "coverage_95")
QUEUE_FILE = "watch-queue.json"  # the watch folder's queue, in the work folder


class RunNotFound(LookupError):
    """No run of that id (or prefix)."""


class RecordError(ValueError):
    """A record (run.json, tuning.json) that does not read: the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


@dataclass(frozen=True)
class RunSummary:
    """One line of ``runs list``: the same fields for a local work folder and a deployed stack."""

    run_id: str
    state: str
    data: str | None = None
    started_at: datetime | None = None
    duration_s: float | None = None
    spec: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class RunDetail:
    """``runs show``: the summary, timings per stage, the evaluation summary, links to reports."""

    summary: RunSummary
    timings: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:  # local run ids start with the start time: 20261125T154726123456Z-<hash>
            parsed = datetime.strptime(value.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ")
        except ValueError:
            return None
    try:  # in UTC: an offset at the edge of the calendar ("0001-01-01T00:00+05:00") does not convert
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except OverflowError:
        return None


def describe_spec(hyperparameters: Any) -> str | None:
    """A short name for the chosen specification: the family and its settings, ``k=v`` joined."""
    if not isinstance(hyperparameters, dict) or not hyperparameters:
        return None
    flat = flat_parameters(hyperparameters)
    family = flat.pop("family", None)
    rest = ",".join(f"{k}={v}" for k, v in sorted(flat.items()))
    return f"{family}({rest})" if family else rest


def flat_parameters(hyperparameters: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters as short strings: a combination's members by family, its weights rounded."""
    out = {}
    for key, value in hyperparameters.items():
        if key == "members" and isinstance(value, list):
            value = "+".join(str(m.get("family", "?")) if isinstance(m, dict) else str(m) for m in value)
        elif isinstance(value, list):
            value = "/".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
        out[key] = str(value)
    return out


def headline(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    out = {}
    for name in HEADLINE_METRICS:
        try:
            out[name] = float(metrics[name])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def state_of(outcome: str, *, promoted: bool | None = None) -> str:
    """The state of a finished run from its registration (``promoted``) or failure kind."""
    if outcome == "succeeded":
        return PROMOTED if promoted else GATED
    return REFUSED if outcome == "refused" else FAILED


# --- writing (the local runner) -------------------------------------------------------------------

def replace_json(path: Path, document: dict[str, Any]) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``: a reader (or a Ctrl-C) sees
    the old document or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace ``run.json`` atomically."""
    replace_json(Path(run_dir) / layout.RUN_RECORD, record)


def start_record(run_dir: Path, run_id: str, data: str) -> dict[str, Any]:
    """The ``running`` record written when a run starts; returned for ``finish_record``."""
    record = {"run_id": run_id, "state": RUNNING, "data": data, "started_at": now(),
              "pid": os.getpid(), "host": socket.gethostname(), "process": process_identity(os.getpid())}
    write_record(run_dir, record)
    return record


def process_identity(pid: int) -> str | None:
    """Which process ``pid`` is, not just its number (Linux: the boot id and the process's start time in
    clock ticks since boot, so a pid reused later, or after a reboot, differs); None where unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after "(comm)"
    except (OSError, IndexError):
        return None


def finish_record(run_dir: Path, started: dict[str, Any], state: str, **fields: Any) -> None:
    """The final record: the start record, the end time and duration, and ``fields``."""
    record = {key: value for key, value in started.items() if key not in ("pid", "host", "process")}
    finished = now()
    begun = parse_time(started.get("started_at"))
    record.update(fields, state=state, finished_at=finished)
    if begun:
        record["duration_s"] = round((parse_time(finished) - begun).total_seconds(), 3)
    write_record(run_dir, record)


# --- reading (the local work folder) --------------------------------------------------------------

def local_runs(workdir: Path) -> list[RunSummary]:
    """Every run of the work folder and the watch's queue, newest first; a damaged record is one
    ``unreadable`` run with the reason."""
    runs_dir = Path(workdir) / layout.RUNS.rstrip("/")
    found = []
    for path in _run_dirs(runs_dir):
        try:
            found.append(_summary(path.name, _record(path), path))
        except RecordError as err:
            found.append(RunSummary(run_id=path.name, state=UNREADABLE, started_at=parse_time(path.name),
                                    reason=f"{err.path.name}: {err.problem}"))
    found += queued(workdir)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda r: (r.started_at or epoch, r.run_id), reverse=True)


def local_run(workdir: Path, run_id: str) -> RunDetail:
    """One run in full; ``run_id`` may be a unique prefix. Raises RunNotFound, or RecordError for a
    damaged record."""
    runs_dir = Path(workdir) / layout.RUNS.rstrip("/")
    path = runs_dir / run_id
    if not (run_id and path.is_dir() and run_id not in (".", "..") and "/" not in run_id):
        matches = [p for p in _run_dirs(runs_dir) if p.name.startswith(run_id)] if run_id else []
        if len(matches) != 1:
            why = "matches several runs" if matches else "is not a run"
            raise RunNotFound(f"{run_id!r} {why} of {workdir} (forecast-mlops runs list --workdir {workdir}"
                              " shows them)")
        path = matches[0]
    record = _record(path)
    evaluation = _read(path / layout.EVALUATION_REPORT / layout.EVALUATION_FILE)
    summary = _summary(path.name, record, path, evaluation)
    reports = path / "reports"
    links = {name: str(target) for name, target in (
        ("run document", path / layout.RUN_DOCUMENT),
        ("evaluation", reports / "evaluation" / layout.EVALUATION_FILE),
        ("tuning", reports / layout.TUNING_FILE),
        ("forecast", reports / "evaluation" / layout.FORECAST_FILE),
    ) if target.is_file()}
    for plot in sorted(reports.rglob("*.png")) if reports.is_dir() else ():
        links[f"plot {plot.relative_to(reports)}"] = str(plot)
    return RunDetail(summary, record.get("timings") or {}, evaluation_summary(evaluation), links)


def evaluation_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The parts of evaluation.json that ``runs show`` prints (cloud and local alike)."""
    if not evaluation:
        return {}
    out: dict[str, Any] = {"gate": evaluation.get("gate")}
    for contender in ("challenger", "champion", "seasonal_naive"):
        if isinstance(evaluation.get(contender), dict):
            out[contender] = headline(evaluation[contender]) or evaluation[contender]
    if evaluation.get("champion_version"):
        out["champion_version"] = evaluation["champion_version"]
    if isinstance(evaluation.get("backtest"), dict):
        out["backtest"] = evaluation["backtest"]
    return out


def queued(workdir: Path) -> list[RunSummary]:
    """The watch folder's queue (``watch-queue.json``), as ``queued`` runs without an id yet."""
    document = _read(Path(workdir) / QUEUE_FILE)
    entries = document.get("queued") if isinstance(document.get("queued"), list) else []
    return [RunSummary(run_id="-", state=QUEUED, data=e.get("name"), started_at=parse_time(e.get("since")),
                       reason="waits for the run before it")
            for e in entries if isinstance(e, dict)]


def _run_dirs(runs_dir: Path) -> list[Path]:
    try:
        return [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []


def read_record(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; RecordError says why it does not read (FileNotFoundError: none)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise RecordError(path, f"cannot be read ({err.strerror or err})") from None
    except ValueError as err:
        raise RecordError(path, f"is not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise RecordError(path, f"is not a JSON object (a {type(document).__name__})")
    return document


def _record(run_dir: Path) -> dict[str, Any]:
    """``run.json`` checked: {} when there is none, RecordError when a field is of the wrong kind."""
    path = run_dir / layout.RUN_RECORD
    try:
        record = read_record(path)
    except FileNotFoundError:
        return {}
    problem = _damage(record)
    if problem:
        raise RecordError(path, problem)
    return record


def _damage(record: dict[str, Any]) -> str | None:
    """What in a run record cannot be shown, or None."""
    if record.get("state") not in STATES and record.get("status") not in ("Succeeded", "Failed"):
        return f"state {record.get('state')!r} is not one of {', '.join(STATES)}"
    timings = record.get("timings")
    if timings is not None and not isinstance(timings, dict):
        return f"timings is a {type(timings).__name__}, not seconds per stage"
    for stage, seconds in (timings or {}).items():
        if not _seconds(seconds):
            return f"timings: {stage!r} is {_short(seconds)}, not a number of seconds"
    if record.get("duration_s") is not None and not _seconds(record["duration_s"]):
        return f"duration_s is {_short(record['duration_s'])}, not a number of seconds"
    pid = record.get("pid")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
        return f"pid is {_short(pid)}, not a process id"
    return None


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _read(path: Path) -> dict[str, Any]:
    """``read_record``, lenient: {} for a file that is missing or does not read (optional reports)."""
    try:
        return read_record(path)
    except (FileNotFoundError, RecordError):
        return {}


def _summary(run_id: str, record: dict[str, Any], path: Path,
             evaluation: dict[str, Any] | None = None) -> RunSummary:
    state, reason = record.get("state"), record.get("reason")
    if not record:  # the runner writes run.json first: a folder without one did not run, or lost it
        state, reason = FAILED, f"no record: {layout.RUN_RECORD} is missing"
    elif state not in STATES:  # a record from before ``state``
        state = state_of("succeeded", promoted=bool(record.get("promoted"))) if record.get(
            "status") == "Succeeded" else FAILED
    if state == RUNNING and not _alive(record):
        state, reason = FAILED, f"interrupted: the runner (process {record.get('pid')}) is gone"
    if state in (PROMOTED, GATED) and ("metrics" not in record or "spec" not in record):
        evaluation = evaluation if evaluation is not None else _read(
            path / layout.EVALUATION_REPORT / layout.EVALUATION_FILE)
    evaluation = evaluation or {}
    gate = evaluation.get("gate") if isinstance(evaluation.get("gate"), dict) else {}
    if state == FAILED and record.get("stage") and reason:
        reason = f"{record['stage']}: {reason}"
    return RunSummary(
        run_id=run_id, state=state, data=record.get("data"),
        started_at=parse_time(record.get("started_at")) or parse_time(run_id),
        duration_s=record.get("duration_s") if record.get("duration_s") is not None else (
            round(sum(record["timings"].values()), 3) if record.get("timings") else None),
        spec=record.get("spec") if isinstance(record.get("spec"), str) else describe_spec(
            record.get("spec") or evaluation.get("spec")),
        metrics=headline(record.get("metrics") or evaluation.get("challenger")),
        reason=reason or gate.get("reason"),
        version=record.get("version"),
    )


def _alive(record: dict[str, Any]) -> bool:
    """Whether a ``running`` record's process still runs: its pid is alive and, when the record says
    which process it was (``process``), is still that process, not a reused pid. On another host, or
    without a pid: assume it does."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") not in (None, socket.gethostname()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded, current = record.get("process"), process_identity(pid)
    return recorded is None or current is None or recorded == current
