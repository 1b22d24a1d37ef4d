"""A local model registry: the Model Registry's role on a laptop.

Layout::

    registry/
      versions/v0001/model/          the artifact (model.json, arrays.npz)
      versions/v0001/version.json    status (Approved | PendingManualApproval | Rejected), metrics, run id
      approved.json                  {"version": "v0001", "path": "versions/v0001/model"}

Writes are atomic (write a temporary file, then rename), so a failed run never leaves a half-written
pointer and the approved model stays untouched until a new one passes the gate.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

APPROVED = "Approved"
PENDING = "PendingManualApproval"
STATUSES = (APPROVED, PENDING, "Rejected")


class RegistryError(RuntimeError):
    """The registry has no such version, or nothing approved."""


@dataclass(frozen=True)
class Version:
    name: str
    folder: Path
    record: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"

    @property
    def status(self) -> str:
        return self.record["status"]


class LocalRegistry:
    """Versions of model artifacts with an approval status and one approved pointer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def is_registry(path: str | Path) -> bool:
        return (Path(path) / "versions").is_dir() or (Path(path) / "approved.json").is_file()

    def versions(self) -> list[Version]:
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        return [self.get(p.name) for p in sorted(folder.iterdir()) if (p / "version.json").is_file()]

    def get(self, name: str) -> Version:
        folder = self.root / "versions" / name
        record_path = folder / "version.json"
        if not record_path.is_file():
            raise RegistryError(f"no version {name!r} in {self.root}")
        return Version(name, folder, json.loads(record_path.read_text()))

    def approved(self) -> Version | None:
        pointer = self.root / "approved.json"
        if not pointer.is_file():
            return None
        return self.get(json.loads(pointer.read_text())["version"])

    def register(self, model_dir: Path, *, status: str, run_id: str, evaluation: dict[str, Any]) -> Version:
        """Copy an artifact in as the next version with ``status``; approve it if Approved."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        existing = [int(v.name[1:]) for v in self.versions()]
        name = f"v{(max(existing) + 1) if existing else 1:04d}"
        folder = self.root / "versions" / name
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self._ensure(self.root / "versions")))
        shutil.copytree(model_dir, staging / "model")
        _stamp_version(staging / "model" / "model.json", name)
        record = {
            "version": name,
            "status": status,
            "run_id": run_id,
            "registered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "gate": evaluation.get("gate"),
            "metrics": evaluation.get("challenger"),
            "spec": evaluation.get("spec"),
        }
        _write_json(staging / "version.json", record)
        os.replace(staging, folder)
        version = Version(name, folder, record)
        if status == APPROVED:
            self.approve(name)
        return version

    def approve(self, name: str) -> Version:
        """Point ``approved.json`` at ``name`` (manual approval of a pending version too)."""
        version = self.get(name)
        record = {**version.record, "status": APPROVED}
        _write_json(version.folder / "version.json", record)
        _write_json(self.root / "approved.json", {"version": name, "path": f"versions/{name}/model"})
        return Version(name, version.folder, record)

    @staticmethod
    def _ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path


def _stamp_version(model_json: Path, name: str) -> None:
    document = json.loads(model_json.read_text())
    document.setdefault("metadata", {})["version"] = name
    _write_json(model_json, document)


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)
