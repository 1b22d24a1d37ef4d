"""The crash matrix of the local registry: kill -9 at every step of register and approve, then the
registry is consistent (one approved version at most, no half version listed) and usable (the next
registration and approval work); and concurrent registrations, with slowed renames, each get a version.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_code.pipeline.registry import APPROVED, PENDING, LocalRegistry
from tests.conftest import ROOT

CHILD = [sys.executable, "-m", "tests.integration.registry_child"]
OPERATIONS = {
    "register-approved": ["register", "{model}", "run-3", "approved"],
    "register-pending": ["register", "{model}", "run-3", "pending"],
    "approve": ["approve", "v0002"],
}


def child(root: Path, args: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CHILD, str(root), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", **env})


def artifact(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"format": "test", "metadata": {}}))
    (folder / "arrays.npz").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture
def seeded(tmp_path) -> tuple[Path, Path]:
    """A registry with v0001 approved and v0002 pending, and an artifact to register."""
    model = artifact(tmp_path / "model")
    registry = LocalRegistry(tmp_path / "registry")
    registry.register(model, status=APPROVED, run_id="run-1", evaluation={})
    registry.register(model, status=PENDING, run_id="run-2", evaluation={})
    return tmp_path / "registry", model


def steps_of(root: Path, model: Path, operation: str, tmp_path: Path) -> list[str]:
    scratch = tmp_path / f"steps-{operation}"
    shutil.copytree(root, scratch)
    steps = tmp_path / f"{operation}.steps"
    args = [a.format(model=model) for a in OPERATIONS[operation]]
    assert child(scratch, args, STEPS_FILE=str(steps)).returncode == 0
    return steps.read_text().split()


def assert_consistent_and_usable(root: Path, model: Path) -> None:
    registry = LocalRegistry(root)
    versions = registry.versions()
    assert [v.name for v in versions] == [f"v{i:04d}" for i in range(1, len(versions) + 1)]
    approved = [v.name for v in versions if v.status == APPROVED]
    assert len(approved) == 1 and registry.approved().name == approved[0]
    for version in versions:
        assert json.loads((version.model_dir / "model.json").read_text())["metadata"]["version"] == version.name
    after = registry.register(model, status=APPROVED, run_id="run-after", evaluation={})
    assert after.name == f"v{len(versions) + 1:04d}" and registry.approved().name == after.name
    assert not [p.name for p in (root / "versions").iterdir() if p.name.startswith(".")]
    assert registry.approve(approved[0]).status == APPROVED
    assert [v.name for v in registry.versions() if v.status == APPROVED] == [approved[0]]


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_at_every_step_leaves_a_consistent_usable_registry(seeded, tmp_path, operation):
    root, model = seeded
    steps = steps_of(root, model, operation, tmp_path)
    expected = {"register-approved": 6, "register-pending": 5, "approve": 3}[operation]
    assert len(steps) >= expected, steps  # every step of the operation is in the matrix
    for step in steps:
        case = tmp_path / f"{operation}-{step.replace(':', '-')}"
        shutil.copytree(root, case)
        args = [a.format(model=model) for a in OPERATIONS[operation]]
        killed = child(case, args, CRASH_AT=step)
        assert killed.returncode == -signal.SIGKILL, (step, killed.stderr)
        assert_consistent_and_usable(case, model)


def test_concurrent_registrations_with_slow_renames_each_get_a_version(tmp_path):
    model = artifact(tmp_path / "model")
    root = tmp_path / "registry"
    start = tmp_path / "go"
    runs = [f"run-{i}" for i in range(4)]
    children = [subprocess.Popen([*CHILD, str(root), "register", str(model), run, "approved"], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={"PATH": "/usr/bin:/bin", "START_FILE": str(start),
                                      "SLOW_RENAMES": "0.2"})
                for run in runs]
    start.touch()
    outputs = [c.communicate(timeout=120) for c in children]
    assert [c.returncode for c in children] == [0] * 4, [err for _, err in outputs]
    names = sorted(out.strip() for out, _ in outputs)
    assert names == ["v0001", "v0002", "v0003", "v0004"]
    registry = LocalRegistry(root)
    assert sorted(v.record["run_id"] for v in registry.versions()) == runs
    assert len([v for v in registry.versions() if v.status == APPROVED]) == 1
