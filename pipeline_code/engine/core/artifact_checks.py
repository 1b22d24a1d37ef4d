"""What a model artifact must satisfy to load (NumPy only): a truncated, inconsistent or non-finite
artifact is refused with the file and the problem named, instead of loading and failing on every
forecast.

Generic checks: ``model.json`` is an object with the required keys and types; every number in the
specification and parameters is finite; ``arrays.npz`` is a readable archive holding the calibration
errors as a finite 2-D array. Each forecasting core registers the checks of its own section (the
``spec`` and ``parameters`` it reads) with :func:`section_check`; a core without one is refused.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.spec import ModelSpec

CALIBRATION_ERRORS = "calibration_errors"
CALIBRATION_SCALES = "calibration_scales"  # optional: each calibration row's local scale
MIN_CALIBRATION_ROWS = 2  # the conformal bounds need two errors per step

# model.json's keys and their JSON types (bool is not a number here); ``optional`` may be absent.
REQUIRED = {"spec": dict, "freq": str, "last_timestamp": str, "t_last": int, "parameters": dict,
            "history": dict}
OPTIONAL = {"metadata": dict, "family": str, "core": str}

SectionCheck = Callable[[dict, dict], None]
SECTION_CHECKS: dict[str, SectionCheck] = {}


# The widest level a request may ask: quantiles need 1 - (1 - conf) / 2 < 1 in floating point.
CONF_CEILING = 1.0 - 2.0**-52
# Levels the forecast check runs at: the interval bounds are monotone in conf, so finite values at the
# narrowest, a typical and the widest level mean finite values at every level.
CHECK_CONFS = (1e-6, 0.9, CONF_CEILING)


class ModelCheckError(ValueError):
    """A model that loads but cannot forecast: a value is not finite within the longest request."""


def check_forecasts(forecaster: Any, max_periods: int) -> None:
    """``ModelCheckError`` unless ``forecaster.paths`` is finite for ``max_periods`` steps at every level.
    Serving runs it when it loads a model, and the gate before it approves one."""
    with np.errstate(all="ignore"):
        for conf in CHECK_CONFS:
            for name, values in zip(("mean", "lower", "upper"), forecaster.paths(max_periods, conf)):
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size:
                    raise ModelCheckError(
                        f"its {name} forecast is not finite ({values[bad[0]]}) at step {bad[0] + 1} of"
                        f" {max_periods} with conf {conf!r}")


class ArtifactProblem(ValueError):
    """One problem of one file of the artifact."""

    def __init__(self, file: str, message: str) -> None:
        self.file = file
        super().__init__(f"{file}: {message}")


def section_check(core: str) -> Callable[[SectionCheck], SectionCheck]:
    """Register ``check(spec, parameters)`` for sections evaluated by ``core``; it raises ValueError."""
    def register(check: SectionCheck) -> SectionCheck:
        SECTION_CHECKS[core] = check
        return check
    return register


def check_document(document: Any, file: str, core: str) -> None:
    """Schema, finiteness and the section of ``core`` of a parsed ``model.json``."""
    try:
        _check_schema(document)
        for name in ("spec", "parameters"):
            _check_finite(document[name], name)
        check_section(core, document["spec"], document["parameters"])
        for name, value in (("error_scale", document["parameters"].get("error_scale")),
                            ("error_peak", document["parameters"].get("error_peak", 0.0))):
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"parameters.{name} must be a number >= 0, found {value!r}")
    except (ValueError, TypeError) as err:
        raise ArtifactProblem(file, str(err)) from None


def check_section(core: str, spec: Any, parameters: Any) -> None:
    """The registered checks of one section (combinations call it for each member)."""
    if core not in SECTION_CHECKS:
        raise ValueError(f"unknown forecasting core {core!r}; known: {sorted(SECTION_CHECKS)}")
    if not isinstance(spec, dict) or not isinstance(parameters, dict):
        raise ValueError(f"the {core} section's spec and parameters must be objects")
    SECTION_CHECKS[core](spec, parameters)


def load_calibration_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The calibration errors of ``arrays.npz`` (a readable archive, a finite 2-D numeric array) and
    their rows' scales, which artifacts written before the scales were kept lack (None)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if CALIBRATION_ERRORS not in arrays.files:
                raise ArtifactProblem(
                    path.name, f"lacks the array {CALIBRATION_ERRORS!r} (has {arrays.files})")
            errors = arrays[CALIBRATION_ERRORS]
            scales = arrays[CALIBRATION_SCALES] if CALIBRATION_SCALES in arrays.files else None
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        if isinstance(err, ArtifactProblem):
            raise
        raise unreadable_archive(path.name, err) from None
    errors = check_calibration_errors(errors, path.name)
    return errors, None if scales is None else check_calibration_scales(scales, errors.shape[0], path.name)


def check_calibration_scales(scales: np.ndarray, rows: int, file: str) -> np.ndarray:
    """One finite, positive scale per calibration row, as floats."""
    if scales.dtype.kind not in "fiu" or scales.shape != (rows,):
        raise ArtifactProblem(file, f"{CALIBRATION_SCALES} has dtype {scales.dtype} and shape {scales.shape};"
                              f" expected {rows} numbers, one per row of {CALIBRATION_ERRORS}")
    if not np.all(np.isfinite(scales) & (scales > 0)):
        raise ArtifactProblem(file, f"{CALIBRATION_SCALES} holds values that are not finite and positive")
    return scales.astype(float)


def unreadable_archive(file: str, err: Exception) -> ArtifactProblem:
    """``file`` is not a readable .npz archive, saying why without a path (an OSError's text holds it)."""
    reason = (err.strerror or type(err).__name__) if isinstance(err, OSError) else err
    return ArtifactProblem(file, f"is not a readable .npz archive ({reason})")


def check_calibration_errors(errors: np.ndarray, file: str) -> np.ndarray:
    """A finite 2-D numeric array of at least MIN_CALIBRATION_ROWS rows, as floats."""
    if errors.dtype.kind not in "fiu":
        raise ArtifactProblem(file, f"{CALIBRATION_ERRORS} has dtype {errors.dtype}; numbers expected")
    if errors.ndim != 2 or errors.shape[0] < MIN_CALIBRATION_ROWS or errors.shape[1] < 1:
        raise ArtifactProblem(file, f"{CALIBRATION_ERRORS} has shape {errors.shape}; expected"
                              f" (splits >= {MIN_CALIBRATION_ROWS}, horizon >= 1)")
    if not np.all(np.isfinite(errors)):
        raise ArtifactProblem(file, f"{CALIBRATION_ERRORS} holds non-finite values")
    return errors.astype(float)


def _check_schema(document: Any) -> None:
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    missing = sorted(set(REQUIRED) - set(document))
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        if key in document and not _is_type(document[key], kind):
            raise ValueError(f"{key} must be a JSON {_JSON_NAMES[kind]}, found {document[key]!r:.60}")
    if document["t_last"] < 0:
        raise ValueError(f"t_last must be >= 0, found {document['t_last']}")
    calendar = parse_freq(document["freq"])
    last = _iso_date(document["last_timestamp"], "last_timestamp")
    if not calendar.on_calendar(last):
        raise ValueError(f"last_timestamp {last.isoformat()} is not a {document['freq']} timestamp")
    history = document["history"]
    stamps, values = history.get("timestamps"), history.get("values")
    if not isinstance(stamps, list) or not isinstance(values, list) or len(stamps) != len(values):
        raise ValueError("history must hold lists 'timestamps' and 'values' of equal length")
    _check_finite(values, "history.values")


def _check_finite(value: Any, where: str) -> None:
    """Every number inside ``value`` (nested objects and lists) is finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; every number must be finite")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_type(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


_JSON_NAMES = {dict: "object", str: "string", int: "integer", list: "array"}


def _iso_date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{where} {text!r:.40} is not an ISO date") from None


def _numbers(parameters: dict, key: str, *, length: int | None = None, min_length: int = 0) -> list:
    value = parameters.get(key)
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise ValueError(f"parameters.{key} must be a list of numbers, found {value!r:.60}")
    if (length is not None and len(value) != length) or len(value) < min_length:
        expected = length if length is not None else f">= {min_length}"
        raise ValueError(f"parameters.{key} has {len(value)} values; expected {expected}")
    return value


def _number(parameters: dict, key: str, *, minimum: float | None = None) -> float:
    value = parameters.get(key)
    if not _is_number(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"parameters.{key} must be a number{bound}, found {value!r:.60}")
    return value


@section_check("harmonic_arima")
def _harmonic(spec: dict, parameters: dict) -> None:
    """Regression coefficients for the specification's design, ARIMA(p, d, 1) error parameters."""
    model = ModelSpec.from_dict(spec)
    width = design_matrix(np.zeros(1), model, intercept=True).shape[1]
    _numbers(parameters, "beta", length=width)
    p = len(_numbers(parameters, "phi"))
    _numbers(parameters, "x_tail", length=p + 1)
    for key in ("theta", "u_last"):
        _number(parameters, key)
    _number(parameters, "sigma2", minimum=0)
    if parameters.get("diff") not in (0, 1) or isinstance(parameters.get("diff"), bool):
        raise ValueError(f"parameters.diff must be 0 or 1, found {parameters.get('diff')!r:.20}")


@section_check("seasonal_naive")
def _seasonal_naive(spec: dict, parameters: dict) -> None:
    _numbers(parameters, "last_season", min_length=1)
    _number(parameters, "sigma2", minimum=0)


@section_check("path")
def _stored_path(spec: dict, parameters: dict) -> None:
    centre = _numbers(parameters, "centre", min_length=1)
    variance = _numbers(parameters, "variance", length=len(centre))
    if min(variance) < 0:
        raise ValueError("parameters.variance holds negative values")


@section_check("combination")
def _combination(spec: dict, parameters: dict) -> None:
    members = parameters.get("members")
    if not isinstance(members, list) or not members:
        raise ValueError("parameters.members must be a non-empty list")
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            raise ValueError(f"parameters.members[{i}] must be an object")
        try:
            _number(member, "weight", minimum=0)
            check_section(member.get("core"), member.get("spec"), member.get("parameters"))
        except ValueError as err:
            raise ValueError(f"members[{i}]: {err}") from None
