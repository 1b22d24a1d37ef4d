"""Which model folder to serve: ``serve --model DIR`` takes an artifact folder or a registry folder.

* an artifact folder holds ``model.json`` (see pipeline_code/artifact.py): serve it;
* a registry folder (written by pipeline_code/registry.py) holds ``approved.json`` =
  ``{"version": "v0003", "path": "versions/v0003/model"}``, the path relative to the registry folder
  (a folder containing ``registry/approved.json``, such as a pipeline workdir, works too): serve the
  approved version.

Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MODEL_JSON = "model.json"
APPROVED_JSON = "approved.json"


class ModelSourceError(ValueError):
    """The folder is neither a model artifact nor a registry with an approved version."""


@dataclass(frozen=True)
class ResolvedModel:
    """The artifact folder to load, and the registry version when it came from a registry."""

    path: Path
    version: str | None = None
    registry: Path | None = None

    @property
    def source(self) -> str:
        return "registry" if self.registry is not None else "folder"


def resolve_model(folder: str | Path) -> ResolvedModel:
    """Resolve ``folder`` to the artifact folder to serve; raises ModelSourceError with the reason."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelSourceError(f"model folder {str(folder)!r} does not exist")
    if (folder / MODEL_JSON).is_file():
        return ResolvedModel(path=folder)
    for registry in (folder, folder / "registry"):
        if (registry / APPROVED_JSON).is_file() or (registry / "versions").is_dir():
            return _approved(registry)
    raise ModelSourceError(
        f"{str(folder)!r} is neither a model folder (no {MODEL_JSON}) nor a model registry (no {APPROVED_JSON})"
    )


def _approved(registry: Path) -> ResolvedModel:
    pointer = registry / APPROVED_JSON
    if not pointer.is_file():
        raise ModelSourceError(f"registry {str(registry)!r} has no approved model version yet")
    try:
        document = json.loads(pointer.read_text())
        version = str(document["version"])
        relative = Path(str(document["path"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelSourceError(f"registry pointer {str(pointer)!r} is unreadable: {err}") from None
    if relative.is_absolute() or ".." in relative.parts:
        raise ModelSourceError(f"registry pointer {str(pointer)!r} must hold a path inside the registry")
    path = registry / relative
    if not (path / MODEL_JSON).is_file():
        raise ModelSourceError(f"approved version {version} has no model at {str(path)!r}")
    return ResolvedModel(path=path, version=version, registry=registry)
