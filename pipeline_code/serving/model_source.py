"""Which model folder to serve: ``serve --model DIR`` takes an artifact folder or a registry folder.

* an artifact folder holds ``model.json`` (see pipeline_code/engine/core/artifact.py), or ``panel.json``
  (a model per series, see pipeline_code/engine/core/panel_artifact.py): serve it;
* a registry folder (written by pipeline_code/pipeline/registry.py) holds ``approved.json`` =
  ``{"version": "v0003", "path": "versions/v0003/model"}``, the path relative to the registry folder
  (a folder containing ``registry/approved.json``, such as a pipeline workdir, works too): serve the
  approved version.

An artifact folder's version is ``$FORECAST_MODEL_VERSION`` when set (the deploy state machine sets
the model package's version on the SageMaker model), else its metadata's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline_code.engine.core.artifact import MODEL_JSON
from pipeline_code.engine.core.panel_artifact import PANEL_JSON
from pipeline_code.engine.settings import MODEL_VERSION_ENV

APPROVED_JSON = "approved.json"
_VERSION = re.compile(r"v\d{4}")  # the registry's version names (pipeline/registry.py VERSION_NAME)


class ModelSourceError(ValueError):
    """The folder is neither a model artifact nor a registry with an approved version.

    ``str(err)`` names the paths (for the log); ``err.public`` says the same without them (for clients).
    """

    def __init__(self, message: str, public: str) -> None:
        super().__init__(message)
        self.public = public


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
        raise ModelSourceError(f"model folder {str(folder)!r} does not exist", "the model folder does not exist")
    if _is_model(folder):  # a SageMaker endpoint's model: its version comes from the environment
        return ResolvedModel(path=folder, version=os.environ.get(MODEL_VERSION_ENV) or None)
    for registry in (folder, folder / "registry"):
        if (registry / APPROVED_JSON).is_file() or (registry / "versions").is_dir():
            return _approved(registry)
    neither = f"neither a model folder (no {MODEL_JSON} or {PANEL_JSON}) nor a model registry (no {APPROVED_JSON})"
    raise ModelSourceError(f"{str(folder)!r} is {neither}", f"the model folder is {neither}")


def _approved(registry: Path) -> ResolvedModel:
    pointer = registry / APPROVED_JSON
    if not pointer.is_file():
        raise ModelSourceError(f"registry {str(registry)!r} has no approved model version yet",
                               "the registry has no approved model version yet")
    try:
        document = json.loads(pointer.read_text())
        version = str(document["version"])
        relative = Path(str(document["path"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelSourceError(f"registry pointer {str(pointer)!r} is unreadable: {err}",
                               f"the registry's {APPROVED_JSON} is unreadable") from None
    if not _VERSION.fullmatch(version):
        raise ModelSourceError(
            f"registry pointer {str(pointer)!r} names {version!r}, not a version (v and four digits)",
            f"the registry's {APPROVED_JSON} names no version")
    if relative != Path("versions", version, "model"):  # the registry's layout: the version is what serves
        raise ModelSourceError(
            f"registry pointer {str(pointer)!r} names version {version!r} but path {str(relative)!r}",
            f"the registry's {APPROVED_JSON} names version {version!r} with a path other than "
            f"versions/{version}/model")  # the pointer's path is not echoed to clients
    path = registry / relative
    if not _is_model(path):
        raise ModelSourceError(f"approved version {version} has no model at {str(path)!r}",
                               f"approved version {version} has no {MODEL_JSON}")
    return ResolvedModel(path=path, version=version, registry=registry)


def _is_model(folder: Path) -> bool:
    return (folder / MODEL_JSON).is_file() or (folder / PANEL_JSON).is_file()
