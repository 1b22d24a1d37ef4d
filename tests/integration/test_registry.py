"""The local registry: staging leftovers, one approved version, version names only, readable errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from pipeline_code.pipeline.registry import (
    APPROVED, PENDING, SUPERSEDED, LocalRegistry, RegistryError,
)
from tests.integration.test_registry_crashes import artifact


@pytest.fixture
def model(tmp_path) -> Path:
    return artifact(tmp_path / "model")


@pytest.fixture
def registry(tmp_path, model) -> LocalRegistry:
    """v0001 approved, v0002 pending."""
    registry = LocalRegistry(tmp_path / "work" / "registry")
    registry.register(model, status=APPROVED, run_id="run-1", evaluation={})
    registry.register(model, status=PENDING, run_id="run-2", evaluation={})
    return registry


def leave_staging_folder(registry: LocalRegistry, name: str = ".v0003-abc123") -> Path:
    """What a kill -9 just before the rename leaves: a complete version under a staging name."""
    staging = registry.root / "versions" / name
    shutil.copytree(registry.root / "versions" / "v0002", staging)
    return staging


def test_a_leftover_staging_folder_is_not_a_version_and_is_swept(registry, model):
    staging = leave_staging_folder(registry)
    assert [v.name for v in registry.versions()] == ["v0001", "v0002"]
    version = registry.register(model, status=PENDING, run_id="run-3", evaluation={})
    assert version.name == "v0003" and not staging.exists()


def test_a_staging_folder_cannot_be_approved(registry):
    leave_staging_folder(registry)
    with pytest.raises(RegistryError, match="not a version name"):
        registry.approve(".v0003-abc123")
    assert registry.approved().name == "v0001"


def test_approving_leaves_exactly_one_approved_version(registry, model):
    registry.approve("v0002")
    registry.register(model, status=APPROVED, run_id="run-3", evaluation={})
    statuses = {v.name: v.status for v in registry.versions()}
    assert statuses == {"v0001": SUPERSEDED, "v0002": SUPERSEDED, "v0003": APPROVED}
    registry.approve("v0001")  # a rollback
    assert [v.name for v in registry.versions() if v.status == APPROVED] == ["v0001"]
    pointer = json.loads((registry.root / "approved.json").read_text())
    assert pointer == {"version": "v0001", "path": "versions/v0001/model", "history": ["v0002", "v0003"]}


@pytest.mark.parametrize("name", [
    "../../../other/registry/versions/v0002", "v0002/../../../other/registry/versions/v0002",
    "/abs/versions/v0002", "v2", "v00002", "V0002", "v0002 ", "..", "",
])
def test_version_arguments_name_this_registrys_versions_only(registry, model, tmp_path, capsys, name):
    other = LocalRegistry(tmp_path / "other" / "registry")
    other.register(model, status=APPROVED, run_id="o-1", evaluation={})
    other.register(model, status=PENDING, run_id="o-2", evaluation={})
    before = {p: p.read_bytes() for p in other.root.rglob("*.json")}
    assert main(["models", "approve", name, "--workdir", str(registry.root.parent)]) == 2
    assert "not a version name" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in other.root.rglob("*.json")} == before
    assert registry.approved().name == "v0001"


def test_an_unknown_version_is_named(registry):
    with pytest.raises(RegistryError, match="no version v0009"):
        registry.approve("v0009")


CORRUPT_POINTERS = {
    "not json": ("{", "approved.json is not valid JSON: Expecting property name"),
    "a list": ("[]", "approved.json must hold a JSON object, found list"),
    "bad version": ('{"version": "../x", "path": "versions/../x/model"}', "'version' must be a version name"),
    "bad path": ('{"version": "v0001", "path": "/etc"}', "'path' must be 'versions/v0001/model'"),
    "missing version": ('{"version": "v0007", "path": "versions/v0007/model"}', "approves v0007, which is not"),
    "bad history": ('{"version": "v0001", "path": "versions/v0001/model", "history": "v1"}', "'history'"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_POINTERS))
def test_a_corrupted_approved_json_is_named_with_its_problem(registry, capsys, monkeypatch, case):
    monkeypatch.setattr("pipeline_code.pipeline.registry._check_artifact", lambda version: None)  # a stand-in model
    text, message = CORRUPT_POINTERS[case]
    (registry.root / "approved.json").write_text(text)
    assert main(["models", "list", "--workdir", str(registry.root.parent)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(registry.root / "approved.json") in err and "Traceback" not in err
    assert "models approve|rollback" in err
    assert main(["models", "reject", "v0002", "--workdir", str(registry.root.parent)]) == 2  # waits for the repair
    assert main(["models", "approve", "v0002", "--workdir", str(registry.root.parent)]) == 0  # the repair
    assert registry.approved().name == "v0002"
    (repair,) = registry.audit()
    assert repair["action"] == "approve" and repair["approved_before"] is None and message in repair["repaired"]


def test_a_corrupted_version_json_is_named(registry):
    record = registry.root / "versions" / "v0002" / "version.json"
    record.write_text('{"version": "v0002", ')
    with pytest.raises(RegistryError, match=r"v0002/version.json is not valid JSON"):
        registry.versions()
    record.write_text('{"version": "v0001"}')
    with pytest.raises(RegistryError, match=r"version.json names version 'v0001', not v0002"):
        registry.get("v0002")


def test_a_lock_that_cannot_be_opened_is_named_and_changes_nothing(registry, model, capsys):
    lock = registry.root / ".lock"
    lock.unlink(missing_ok=True)  # the lock file the registrations left (released; the kernel lock is gone)
    lock.mkdir()
    with pytest.raises(RegistryError, match=r"its lock file .lock cannot be opened \(Is a directory\)"):
        registry.register(model, status=PENDING, run_id="run-3", evaluation={})
    assert [v.name for v in registry.versions()] == ["v0001", "v0002"]
    assert main(["models", "approve", "v0002", "--workdir", str(registry.root.parent)]) == 2
    assert "cannot be opened" in capsys.readouterr().err
    assert registry.approved().name == "v0001"


def test_a_run_with_a_corrupted_registry_stops_before_any_work(registry, capsys):
    from tests.conftest import BUNDLED

    workdir = registry.root.parent
    (registry.root / "approved.json").write_text("{")
    code = main(["pipeline", "run", "--data", str(BUNDLED), "--workdir", str(workdir), "--quiet",
                 "--no-serve"])
    assert code == 2
    err = capsys.readouterr().err
    assert "registry failed:" in err and "approved.json is not valid JSON" in err
    assert not (workdir / "runs").exists() and not (workdir / "raw").exists()


def test_a_run_whose_approved_artifact_is_broken_stops_before_any_work(registry, capsys):
    """The evaluation backtests the approved model: a broken one is found before tuning, not after."""
    from tests.conftest import BUNDLED

    workdir = registry.root.parent
    (registry.approved().model_dir / "model.json").write_text("{")
    code = main(["pipeline", "run", "--data", str(BUNDLED), "--workdir", str(workdir), "--quiet",
                 "--no-serve"])
    assert code == 2
    err = capsys.readouterr().err
    assert "registry failed: the approved version v0001 cannot be served" in err
    assert "approve or roll back to another version" in err
    assert not (workdir / "runs").exists() and not (workdir / "raw").exists()


def test_a_decision_on_a_folder_without_a_registry_changes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["models", "approve", "1", "--workdir", str(empty)]) == 2
    assert "no version v0001" in capsys.readouterr().err
    assert list(empty.iterdir()) == []  # no registry/.lock left behind


def test_an_approval_gated_against_a_model_no_longer_approved_waits_for_a_decision(registry, model):
    """Two runs at once: each gated against v0001; the second to register finds another approved by
    then, so its comparison no longer holds and it is registered pending."""
    first = registry.register(model, status=APPROVED, run_id="run-3", evaluation={}, gated_against="v0001")
    second = registry.register(model, status=APPROVED, run_id="run-4", evaluation={}, gated_against="v0001")
    assert (first.status, second.status) == (APPROVED, PENDING)
    assert registry.approved().name == first.name
    # against the version that does serve (or none, on a first run), approval goes through
    assert registry.register(model, status=APPROVED, run_id="run-5", evaluation={},
                             gated_against=first.name).status == APPROVED
    empty = LocalRegistry(registry.root.parent / "other")
    assert empty.register(model, status=APPROVED, run_id="run-1", evaluation={}, gated_against=None).status == APPROVED


def test_a_deleted_versions_number_is_never_reused(registry, model):
    """A new version must not inherit the decision recorded for a deleted one (audit log, history)."""
    registry.decide("reject", "v0002", reason="bad data")
    shutil.rmtree(registry.root / "versions" / "v0002")
    version = registry.register(model, status=PENDING, run_id="run-3", evaluation={})
    assert (version.name, version.status) == ("v0003", PENDING)


def test_a_version_folder_is_as_readable_as_the_versions_folder(registry):
    """mkdtemp's staging folder is 0700: a registered version takes the versions folder's mode."""
    versions = registry.root / "versions"
    assert sorted(p.name for p in versions.iterdir()) == ["v0001", "v0002"]
    for version in versions.iterdir():
        assert version.stat().st_mode & 0o777 == versions.stat().st_mode & 0o777


def test_a_decision_after_a_torn_audit_line_is_recorded(registry):
    """A crash mid-append leaves a partial last line: the next decision must not be merged into it."""
    with (registry.root / "audit.jsonl").open("a") as f:
        f.write('{"version": "v0002", "act')
    registry.decide("reject", "v0002", reason="bad data")
    assert registry.get("v0002").status == "Rejected"


def test_waiting_for_the_lock_is_said_once(registry, model):
    """A decision or a registration that waits on another holder's lock says so, instead of a silent wait."""
    import subprocess
    import sys

    heard: list[str] = []
    waiting = LocalRegistry(registry.root, on_wait=heard.append)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire();"
        " print('held', flush=True); time.sleep(0.5); lock.release()"), str(registry.root / ".lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert waiting.register(model, status=PENDING, run_id="run-3", evaluation={}).name == "v0003"
    holder.wait(timeout=30)
    assert len(heard) == 1 and "in use by another run or decision; waiting up to 120s" in heard[0]
    waiting.register(model, status=PENDING, run_id="run-4", evaluation={})  # the lock is free: nothing said
    assert len(heard) == 1
