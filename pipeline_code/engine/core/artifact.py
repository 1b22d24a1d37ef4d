"""The model artifact: plain JSON and NumPy ``.npz`` (never pickled). See docs/design.md.

``model.json`` holds the model family, the forecasting core that evaluates it (``core.paths``), the
family's specification and fitted parameters (its plain-data section), the data tail and metadata;
``arrays.npz`` holds the cross-validation errors used to calibrate intervals, and each error row's
local scale (``core.calibration``; artifacts written before the scales were kept lack them). Both are read back with
``allow_pickle=False``. Format 2 added ``family`` and ``core``; a format-1 artifact (the harmonic
model only) still loads, as family and core ``harmonic_arima``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.core.artifact_checks import ArtifactProblem, check_document, load_calibration_arrays

FORMAT = "forecast-mlops.model"
FORMAT_VERSION = 2
FORMAT_V1 = "forecast-mlops.harmonic-arima"  # format 1: the harmonic model, before model families
HARMONIC = "harmonic_arima"
MODEL_JSON = "model.json"
ARRAYS_NPZ = "arrays.npz"


class ArtifactError(ValueError):
    """A model folder that is missing files or does not follow the artifact format."""


@dataclass
class ModelArtifact:
    """Everything needed to forecast, as plain data."""

    spec: dict[str, Any]
    freq: str
    last_timestamp: str
    t_last: int
    parameters: dict[str, Any]
    calibration_errors: np.ndarray  # (splits, horizon) log-scale out-of-sample errors
    history: dict[str, list]  # recent "timestamps" and "values" for plots
    metadata: dict[str, Any] = field(default_factory=dict)  # version, trained_at, metrics, ...
    family: str = HARMONIC  # the model family (or "combination") that produced the section
    core: str = HARMONIC  # the core.paths function that forecasts from ``spec`` and ``parameters``
    calibration_scales: np.ndarray | None = None  # (splits,) each error row's local scale

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.document()}
        (folder / MODEL_JSON).write_text(json.dumps(document, indent=1, sort_keys=True))
        arrays = {"calibration_errors": np.asarray(self.calibration_errors, float)}
        if self.calibration_scales is not None:
            arrays["calibration_scales"] = np.asarray(self.calibration_scales, float)
        np.savez(folder / ARRAYS_NPZ, **arrays)
        return folder

    def document(self) -> dict[str, Any]:
        """Everything but the calibration errors, as JSON-ready data (``model.json`` without its format)."""
        return {
            "family": self.family,
            "core": self.core,
            "spec": plain(self.spec),
            "freq": self.freq,
            "last_timestamp": self.last_timestamp,
            "t_last": int(self.t_last),
            "parameters": plain(self.parameters),
            "history": plain(self.history),
            "metadata": plain(self.metadata),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any], errors: np.ndarray,
                      scales: np.ndarray | None = None) -> "ModelArtifact":
        """The artifact of a checked document (see ``artifact_checks.check_document``)."""
        return cls(
            spec=document["spec"],
            freq=document["freq"],
            last_timestamp=document["last_timestamp"],
            t_last=int(document["t_last"]),
            parameters=document["parameters"],
            calibration_errors=errors,
            history=document["history"],
            metadata=document.get("metadata", {}),
            family=document["family"],
            core=document["core"],
            calibration_scales=scales,
        )

    @classmethod
    def load(cls, folder: str | Path) -> "ModelArtifact":
        """Read and check an artifact (see ``artifact_checks``); a missing, truncated, inconsistent or
        non-finite one is an ArtifactError naming the folder, the file and the problem."""
        folder = Path(folder)
        try:
            document = json.loads((folder / MODEL_JSON).read_text())
            if not isinstance(document, dict):
                raise ArtifactProblem(MODEL_JSON, f"expected a JSON object, found {type(document).__name__}")
            version = (document.get("format"), document.get("format_version"))
            if version == (FORMAT_V1, 1):
                document = {**document, "family": HARMONIC, "core": HARMONIC}
            elif version != (FORMAT, FORMAT_VERSION):
                raise ArtifactProblem(MODEL_JSON, f"unsupported artifact format {version[0]!r} v{version[1]}")
            check_document(document, MODEL_JSON, document.get("core"))
            errors, scales = load_calibration_arrays(folder / ARRAYS_NPZ)
        except FileNotFoundError as err:
            raise ArtifactError(f"model folder {folder.name!r} lacks {Path(err.filename).name}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ArtifactError(f"model folder {folder.name!r}: {MODEL_JSON} is not valid JSON ({err})") from None
        except ArtifactProblem as err:
            raise ArtifactError(f"model folder {folder.name!r}: {err}") from None
        return cls.from_document(document, errors, scales)


def finite(value: Any) -> Any:
    """Non-finite floats (not valid JSON) replaced by None, recursively (metadata such as an undefined metric)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """Convert NumPy containers and scalars to JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
