"""A local model registry: the Model Registry's role on a laptop.

Layout::

    registry/
      versions/v0001/model/          the artifact (model.json, arrays.npz)
      versions/v0001/version.json    written once, at registration: run id, gate, metrics, spec
      approved.json                  {"version": "v0002", "path": "versions/v0002/model",
                                      "history": ["v0001"]}
      .lock                          the registry's lock file

``approved.json`` is the only record of approval; a version's status is derived from it: Approved (the
version it names), Superseded (approved earlier: in its ``history``), PendingManualApproval (never
approved), Rejected (its latest decision in ``audit.jsonl`` is a rejection). Approving is one atomic rename of that file, so a crash leaves one approved version, the old
or the new, never two.

Registration and approval run under the lock (``filelock``: ``fcntl.flock`` on POSIX, released by the
kernel when its holder dies, so a killed run never blocks the next). Registration sweeps staging
folders left by a killed run, takes the next free number, builds the version in a staging folder
``versions/.vNNNN-xxxx`` and renames it into place; a kill at any step leaves either no new version or a
complete one. Version arguments must be names of this registry's versions (``v`` and four digits).

People's decisions (``decide``: approve, reject, rollback) are checked (a version to serve must pass
serving's load checks, ``_check_artifact``), made under the lock and appended to ``audit.jsonl``, one
JSON line each: who, when, why, and what was approved before.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

APPROVED = "Approved"
PENDING = "PendingManualApproval"
SUPERSEDED = "Superseded"
REJECTED = "Rejected"
STATUSES = (APPROVED, PENDING, SUPERSEDED, REJECTED)
DECISIONS = ("approve", "reject", "rollback")
VERSION_NAME = re.compile(r"v\d{4}")
APPROVED_FILE = "approved.json"
# ``register``'s default: approve whatever the approved version is now.
ANY_CHAMPION = object()
RECORD_FILE = "version.json"
AUDIT_FILE = "audit.jsonl"
LOCK_TIMEOUT_SECONDS = 120.0


class RegistryError(RuntimeError):
    """The registry has no such version, nothing approved, or a file it cannot read."""


def _checkpoint(step: str) -> None:
    """Test hook between the steps of register and approve: does nothing here. The crash-matrix test
    (tests/integration/test_registry_crashes.py) replaces it in a child process to kill -9 itself at
    each step."""


@dataclass(frozen=True)
class Version:
    name: str
    folder: Path
    record: dict[str, Any]
    status: str

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"


@dataclass(frozen=True)
class _Pointer:
    """approved.json read: the approved version and the ones approved before it."""

    version: str | None
    history: tuple[str, ...]
    rejected: frozenset[str] = frozenset()


class LocalRegistry:
    """Versions of model artifacts and one approved pointer."""

    def __init__(self, root: str | Path, *, on_wait: Callable[[str], None] | None = None) -> None:
        """``on_wait`` hears, once, that another process holds the lock and this one waits for it."""
        self.root = Path(root)
        self._lock_path = self.root / ".lock"
        self._on_wait = on_wait

    @staticmethod
    def is_registry(path: str | Path) -> bool:
        return (Path(path) / "versions").is_dir() or (Path(path) / APPROVED_FILE).is_file()

    # --- reading ---------------------------------------------------------------------------------

    def versions(self) -> list[Version]:
        """Every registered version in order; staging folders and stray files are not versions."""
        pointer = self._pointer()
        return [self._version(name, pointer) for name in self._names()]

    def survey(self) -> tuple[list[Version], dict[str, str]]:
        """Every version that reads, and what is wrong with each that does not (an unreadable
        ``version.json`` is listed, not an end to the listing); an unreadable pointer still raises."""
        pointer = self._pointer()
        versions: list[Version] = []
        unreadable: dict[str, str] = {}
        for name in self._names():
            try:
                versions.append(self._version(name, pointer))
            except RegistryError as err:
                unreadable[name] = str(err)
        return versions, unreadable

    def get(self, name: str) -> Version:
        return self._version(name, self._pointer())

    def approved(self) -> Version | None:
        pointer = self._pointer()
        return self._version(pointer.version, pointer) if pointer.version else None

    def check_approved(self) -> Version | None:
        """The approved version, whose artifact must load as serving loads it (a run checks this before
        any work: its evaluation backtests the approved model)."""
        version = self.approved()
        if version is not None:
            try:
                _forecaster(version)
            except RegistryError as err:
                raise RegistryError(f"the approved version {err}; approve or roll back to another version"
                                    " (forecast-mlops models) before a run compares with it") from None
        return version

    # --- writing ---------------------------------------------------------------------------------

    def register(self, model_dir: Path, *, status: str, run_id: str, evaluation: dict[str, Any],
                 gated_against: str | None | object = ANY_CHAMPION) -> Version:
        """Copy an artifact in as the next version; approve it when ``status`` is Approved.

        ``gated_against`` is the approved version the gate compared with (None: none was approved).
        When the approved version is another by now (a run that finished meanwhile, or a rollback),
        that comparison no longer holds: the version is registered Pending instead, for a person to
        decide (or a new run to gate against the model that serves now).
        """
        if status not in (APPROVED, PENDING):
            raise ValueError(f"status must be {APPROVED} or {PENDING}")
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._sweep_staging(versions)
            _checkpoint("register:swept")
            if status == APPROVED and gated_against is not ANY_CHAMPION and self._pointer().version != gated_against:
                status = PENDING
            # Past names too (the audit log, the pointer's history): a deleted version's number is never
            # reused, so no new version inherits an old decision.
            number = max((int(n[1:]) for n in (*self._names(), *self._known_names())), default=0) + 1
            if number > 9999:
                raise RegistryError(f"registry {self.root} is full (v9999 is the last version name)")
            name = f"v{number:04d}"
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=versions))
            # mkdtemp's 0700 would hide the version from other readers: the versions folder's mode instead
            staging.chmod(versions.stat().st_mode & 0o777)
            shutil.copytree(model_dir, staging / "model")
            _checkpoint("register:copied")
            _stamp_version(staging / "model", name)
            record = {
                "version": name,
                "run_id": run_id,
                "registered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "gate": evaluation.get("gate"),
                "metrics": evaluation.get("challenger"),
                "spec": evaluation.get("spec"),
            }
            _write_json(staging / RECORD_FILE, record)
            _checkpoint("register:staged")
            os.replace(staging, versions / name)
            _fsync_dir(versions)
            _checkpoint("register:committed")
            if status == APPROVED:
                return self._approve(name)
            return self._version(name, self._pointer())

    def approve(self, name: str) -> Version:
        """Point ``approved.json`` at ``name``, unchecked: people's approvals and rollbacks go through
        ``decide``, which runs serving's checks first.

        An unreadable ``approved.json`` is replaced (its history is lost): approving is how to repair it.
        """
        with self._locked():
            return self._approve(name)

    def decide(self, action: str, name: str, *, reason: str | None = None, by: str | None = None) -> Version:
        """A person's decision, checked and recorded in ``audit.jsonl`` (who, when, why):

        * ``approve`` a pending or rejected version: it serves (not the approved one; not one approved
          before: that is a rollback);
        * ``reject`` a pending or superseded version: it stays undeployed (not the approved one: roll
          back first);
        * ``rollback`` to a version approved before: it serves again.

        A version to serve (approve, rollback) must pass serving's load checks (``_check_artifact``): its
        artifact loads and forecasts finite values; any refusal is a RegistryError, nothing changed.
        An unreadable ``approved.json`` is rewritten by an approval or a rollback (its history is lost;
        the audit line says what was unreadable); a rejection then waits for that repair.
        """
        if action not in DECISIONS:
            raise ValueError(f"action must be one of {', '.join(DECISIONS)}")
        if not self.is_registry(self.root):  # refused without creating the registry (or its lock)
            raise RegistryError(f"no version {name}: {self.root} holds no registry yet; nothing changed")
        with self._locked():
            try:
                pointer, unreadable = self._pointer(), None
            except RegistryError as err:  # an unreadable approved.json: approving repairs it
                if action == "reject":
                    raise
                pointer, unreadable = _Pointer(None, (), self._rejected()), str(err)
            version = self._version(name, pointer)
            check_decision(action, version.name, version.status)
            if action != "reject":
                _check_artifact(version)
            _checkpoint(f"decide:{action}:checked")
            if action != "reject":
                self._approve(name)
            self._append_audit({
                "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "action": action,
                "version": name, "by": by or _who(), "reason": reason, "approved_before": pointer.version,
                **({"repaired": unreadable} if unreadable else {}),
            })
            return self.get(name)

    def audit(self) -> list[dict[str, Any]]:
        """The decisions, oldest first (unreadable lines are skipped: the log is append-only)."""
        path = self.root / AUDIT_FILE
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    # --- internals -------------------------------------------------------------------------------

    def _append_audit(self, record: dict[str, Any]) -> None:
        """One line, appended and flushed to disk (only ever called under the lock)."""
        path = self.root / AUDIT_FILE
        # A line cut short by a crash would swallow this one: start on a line of its own.
        torn = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, ("\n" if torn else "").encode() + (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rejected(self) -> frozenset[str]:
        latest: dict[str, str] = {}
        for record in self.audit():
            if isinstance(record.get("version"), str):
                latest[record["version"]] = record.get("action")
        return frozenset(v for v, action in latest.items() if action == "reject")

    def _approve(self, name: str) -> Version:
        self._record(name)  # a valid name of an existing version, with a readable record
        try:
            previous = self._pointer()
        except RegistryError:
            previous = _Pointer(None, ())
        history = [v for v in (*previous.history, previous.version) if v and v != name]
        _checkpoint("approve:checked")
        _write_json(self.root / APPROVED_FILE, {
            "version": name, "path": f"versions/{name}/model", "history": list(dict.fromkeys(history)),
        })
        _checkpoint("approve:committed")
        return self.get(name)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self._lock_path, timeout=LOCK_TIMEOUT_SECONDS)
        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if self._on_wait is not None:
                    self._on_wait(f"registry {self.root} is in use by another run or decision; waiting up to"
                                  f" {LOCK_TIMEOUT_SECONDS:.0f}s for it")
                lock.acquire()
        except Timeout:
            raise RegistryError(
                f"registry {self.root} is locked by another run (waited {LOCK_TIMEOUT_SECONDS:.0f}s on"
                f" {self._lock_path.name})") from None
        except OSError as err:  # e.g. a folder, or a file this user may not open, in the lock's place
            raise RegistryError(
                f"registry {self.root}: its lock file {self._lock_path.name} cannot be opened"
                f" ({err.strerror or err}); remove or fix it, nothing was changed") from None
        try:
            yield
        finally:
            lock.release()

    def _known_names(self) -> set[str]:
        """Version names the audit log or the approved pointer's history mention (readable ones)."""
        names = {r["version"] for r in self.audit() if isinstance(r.get("version"), str)}
        try:
            pointer = self._pointer()
            names |= {*pointer.history, *([pointer.version] if pointer.version else [])}
        except RegistryError:
            pass
        return {n for n in names if VERSION_NAME.fullmatch(n)}

    def _names(self) -> list[str]:
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if VERSION_NAME.fullmatch(p.name) and p.is_dir())

    @staticmethod
    def _sweep_staging(versions: Path) -> None:
        """Remove staging folders of killed runs (only ever called under the lock)."""
        for path in versions.iterdir():
            if path.name.startswith(".v") and path.is_dir():
                shutil.rmtree(path)

    def _check_name(self, name: Any) -> str:
        if not isinstance(name, str) or not VERSION_NAME.fullmatch(name):
            raise RegistryError(f"{name!r} is not a version name: versions are named v0001, v0002, ...")
        return name

    def _record(self, name: Any) -> dict[str, Any]:
        path = self.root / "versions" / self._check_name(name) / RECORD_FILE
        if not path.is_file():
            raise RegistryError(f"no version {name} in {self.root}")
        record = _read_json(path)
        if record.get("version") != name:
            raise RegistryError(f"{path} names version {record.get('version')!r}, not {name}")
        return record

    def _version(self, name: str, pointer: _Pointer) -> Version:
        record = self._record(name)
        if name == pointer.version:
            status = APPROVED
        elif name in pointer.rejected:
            status = REJECTED
        elif name in pointer.history or record.get("status") == APPROVED:  # records before approved.json history
            status = SUPERSEDED
        else:
            status = PENDING
        return Version(name, self.root / "versions" / name, record, status)

    def _pointer(self) -> _Pointer:
        path = self.root / APPROVED_FILE
        if not path.is_file():
            return _Pointer(None, (), self._rejected())
        repair = ("approve or roll back to a version to rewrite it"
                  " (forecast-mlops models approve|rollback vNNNN --workdir DIR)")
        try:
            document = _read_json(path)
        except RegistryError as err:
            raise RegistryError(f"{err}; {repair}") from None
        name, history = document.get("version"), document.get("history", [])
        problem = None
        if not isinstance(name, str) or not VERSION_NAME.fullmatch(name):
            problem = f"'version' must be a version name such as v0001, found {name!r}"
        elif document.get("path") != f"versions/{name}/model":
            problem = f"'path' must be 'versions/{name}/model', found {document.get('path')!r}"
        elif not isinstance(history, list) or not all(
                isinstance(v, str) and VERSION_NAME.fullmatch(v) for v in history):
            problem = "'history' must be a list of version names"
        elif not (self.root / "versions" / name / RECORD_FILE).is_file():
            problem = f"it approves {name}, which is not in the registry"
        if problem:
            raise RegistryError(f"{path}: {problem}; {repair}")
        return _Pointer(name, tuple(history), self._rejected())


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def check_decision(action: str, name: str, status: str) -> None:
    """Refuse a decision that the version's status does not allow (the cloud's registry too)."""
    refusals = {
        ("approve", APPROVED): f"{name} is already approved (it is the version served)",
        ("approve", SUPERSEDED): f"{name} was approved before; to serve it again: models rollback {name}",
        ("reject", APPROVED): f"{name} is the approved version; roll back to an earlier one first",
        ("reject", REJECTED): f"{name} is already rejected",
        ("rollback", APPROVED): f"{name} is already the approved version",
        ("rollback", PENDING): f"{name} was never approved; to serve it: models approve {name}",
        ("rollback", REJECTED): f"{name} was rejected; to serve it anyway: models approve {name}",
    }
    if (action, status) in refusals:
        raise RegistryError(refusals[(action, status)] + "; nothing changed")


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _check_artifact(version: Version) -> None:
    """Serving's load checks, before a person's approval or rollback serves ``version``, as the gate runs
    them before an approval: the artifact loads, and ``check_forecasts`` finds its forecasts finite for
    ``serve.max_periods`` steps at every level (``_max_periods``; a panel: its first item, as serving
    checks on loading it). No override: serving refuses such a model, so approving it only breaks serving."""
    from pipeline_code.engine.core.artifact_checks import ModelCheckError, check_forecasts

    forecaster = _forecaster(version)
    max_periods, source = _max_periods(version)
    try:
        check_forecasts(forecaster, max_periods)
    except ModelCheckError as err:
        raise RegistryError(
            f"{version.name} cannot be served: {err} (serving's forecast check: finite forecasts for"
            f" serve.max_periods {max_periods} steps, {source}; serving refuses such a model); approve or roll"
            " back to another version, or run the pipeline again; nothing changed") from None


def _max_periods(version: Version) -> tuple[int, str]:
    """The ``serve.max_periods`` the version's run was gated with, and where it comes from: the version's
    own, from its run's document (``runs/<run_id>/input/settings.json`` in the work folder holding the
    registry; ``version.json`` names the run) when that reads, else the settings default."""
    from pipeline_code.engine.settings import ServeSettings, Settings, SettingsError
    from pipeline_code.pipeline.layout import RUN_DOCUMENT, run_key

    run_id = version.record.get("run_id")
    if isinstance(run_id, str) and run_id not in ("", ".", "..") and Path(run_id).name == run_id:
        document = run_key(run_id, RUN_DOCUMENT)
        try:  # the version's folder is <work>/registry/versions/vNNNN
            return (Settings.from_file(version.folder.parents[2] / document).serve.max_periods,
                    f"from its run document {document}")
        except SettingsError:
            pass
    return ServeSettings().max_periods, f"the settings default: its run {run_id!r} has no readable run document"


def _forecaster(version: Version):
    """The version's forecaster, loaded as serving loads it (a panel's first item's, which serving parses
    on loading it); RegistryError when the artifact does not load."""
    from pipeline_code.engine.core.artifact import ArtifactError
    from pipeline_code.engine.core.forecaster import Forecaster
    from pipeline_code.engine.core.panel_artifact import PanelModel, is_panel

    try:
        if is_panel(version.model_dir):
            panel = PanelModel.load(version.model_dir)
            return panel.forecaster(panel.items[0])
        return Forecaster.load(version.model_dir)
    except ArtifactError as err:
        raise RegistryError(f"{version.name} cannot be served: its artifact is gone or broken ({err});"
                            " nothing changed") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RegistryError(f"{path} is not UTF-8 text ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise RegistryError(f"{path} is not valid JSON: {err.msg.removesuffix(' at')} at line {err.lineno}"
                            f" column {err.colno}") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{path} must hold a JSON object, found {type(document).__name__}")
    return document


def _stamp_version(model_dir: Path, name: str) -> None:
    """The version's name in the artifact's metadata: ``model.json``, or a panel's ``panel.json``."""
    from pipeline_code.engine.core.panel_artifact import PANEL_JSON

    model_json = model_dir / PANEL_JSON if (model_dir / PANEL_JSON).is_file() else model_dir / "model.json"
    document = json.loads(model_json.read_text())
    document.setdefault("metadata", {})["version"] = name
    _write_json(model_json, document)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a temporary file, flush it to disk, rename it over ``path``: readers see old or new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=1))
        handle.flush()
        os.fsync(handle.fileno())
    _checkpoint(f"write:{path.name}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
