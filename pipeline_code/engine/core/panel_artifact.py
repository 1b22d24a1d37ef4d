"""The panel artifact: one registered version holding a model per series (NumPy only, never pickled).

A panel folder holds three files (no ``model.json``; ``is_panel`` tells them apart):

- ``panel.json``: the format, the frequency, the item ids (sorted), the panel's metadata, the items'
  metadata entries they all share (``item_metadata``) and each data file's size and SHA-256;
- ``sections.jsonl``: one line per item, in item order: the item's model document as
  ``ModelArtifact.document()`` gives it, without ``freq`` (the panel's) and the shared metadata, with
  every list of floats replaced by ``{"$array": k}``, the calibration errors by ``{"$array": k,
  "shape": [rows, cols]}`` and a history's timestamps, when consecutive on the calendar, by
  ``{"$dates": [first, count]}``;
- ``arrays.npz``: ``values`` (every such float, concatenated; array ``k`` is
  ``values[offsets[k]:offsets[k + 1]]``), ``offsets``, and ``lines`` (each item's line starts at byte
  ``lines[i]`` of ``sections.jsonl``, and ends before ``lines[i + 1]``).

Identical calibration arrays (the panel fitter pools them) are stored once. Both files are read back
with ``allow_pickle=False`` and a JSON parser that refuses ``NaN``/``Infinity``.

Loading checks the folder at once: the format, sizes and digests (a truncated or altered file), the
index (every offset and line in range and ordered), and that every stored float is finite. An item's
section is parsed and checked like a single model (``artifact_checks``) when it is first asked for,
so a 10,000-series model loads in a fraction of a second; ``PanelModel.check()`` checks every section,
and ``save_panel`` refuses to write a panel with an invalid one.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline_code.engine.core.artifact import ArtifactError, ModelArtifact, finite, plain
from pipeline_code.engine.core.artifact_checks import (
    ArtifactProblem,
    check_calibration_errors,
    check_document,
    unreadable_archive,
)
from pipeline_code.engine.core.calendar import Calendar, parse_freq
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.settings import item_id_problem

PANEL_JSON = "panel.json"
SECTIONS = "sections.jsonl"
ARRAYS = "arrays.npz"
FORMAT = "forecast-mlops.panel"
FORMAT_VERSION = 1
REF = "$array"
DATES = "$dates"
MAX_DATES = 100_000  # a history's length, at most
CALIBRATION = "calibration_errors"
PACKED = ("spec", "parameters", "history")  # the parts of an item's document whose float lists go to arrays.npz


class UnknownItem(LookupError):
    """An item id the panel does not hold."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


def is_panel(folder: str | Path) -> bool:
    return (Path(folder) / PANEL_JSON).is_file()


# --- writing --------------------------------------------------------------------------------------

def save_panel(folder: str | Path, artifacts: dict[str, ModelArtifact], metadata: dict[str, Any]) -> Path:
    """Write the panel of ``artifacts`` (item id -> the item's model) to ``folder``; ArtifactError when
    an item id or a model is invalid, or the models differ in frequency. ``panel.json`` is written last."""
    folder = Path(folder)
    if not artifacts:
        raise ArtifactError("a panel needs at least one item")
    items = sorted(artifacts)
    freq = artifacts[items[0]].freq
    pool = _Pool(parse_freq(freq))
    documents: list[dict[str, Any]] = []
    for item in items:
        problem = item_id_problem(item)
        if problem:
            raise ArtifactError(f"panel item {item!r:.60}: {problem}")
        artifact = artifacts[item]
        if artifact.freq != freq:
            raise ArtifactError(f"panel item {item!r}: frequency {artifact.freq!r} differs from the panel's {freq!r}"
                                f" (item {items[0]!r})")
        document = artifact.document()
        calibration = pool.calibration(artifact.calibration_errors, f"panel item {item!r}")
        _check_item(item, document)
        del document["freq"]
        document["metadata"] = finite(document["metadata"])
        for key in PACKED:
            document[key] = pool.pack(document[key], f"item {item!r}: {key}")
        document[CALIBRATION] = calibration
        documents.append(document)
    common = _common_metadata([d["metadata"] for d in documents])
    lines = []
    for document in documents:
        document["metadata"] = {k: v for k, v in document["metadata"].items() if k not in common}
        lines.append(json.dumps(document, separators=(",", ":"), allow_nan=False).encode() + b"\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PANEL_JSON).unlink(missing_ok=True)  # until the new files are whole, the folder is no panel
    (folder / SECTIONS).write_bytes(b"".join(lines))
    with open(folder / ARRAYS, "wb") as handle:
        np.savez(handle, values=pool.values(), offsets=pool.offsets(),
                 lines=np.concatenate([[0], np.cumsum([len(line) for line in lines])]).astype(np.int64))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "freq": freq,
        "items": items,
        "metadata": finite(plain(metadata)),
        "item_metadata": common,
        "files": {name: _file_facts((folder / name).read_bytes()) for name in (SECTIONS, ARRAYS)},
    }
    (folder / PANEL_JSON).write_text(json.dumps(manifest, indent=1, allow_nan=False))
    return folder


def _common_metadata(metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata entries every item has alike (the libraries, the training time, ...): stored once."""
    first = metadata[0]
    return {k: v for k, v in first.items() if all(k in m and m[k] == v for m in metadata[1:])}


class _Pool:
    """The float arrays of every item, concatenated; identical calibration arrays stored once; a history's
    timestamps, when they follow the calendar, as their first date and count."""

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self._arrays: list[np.ndarray] = []
        self._calibrations: dict[tuple, dict[str, Any]] = {}
        self._seen: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(array) -> (array, its reference)

    def add(self, array: np.ndarray) -> int:
        self._arrays.append(np.asarray(array, dtype=float).ravel())
        return len(self._arrays) - 1

    def pack(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            if REF in value or DATES in value:
                raise ArtifactError(f"{where} holds a reserved key ({REF!r} or {DATES!r})")
            packed = {k: self.pack(v, f"{where}.{k}") for k, v in value.items()}
            if where.endswith(": history") and isinstance(value.get("timestamps"), list):
                packed["timestamps"] = self.dates(value["timestamps"])
            return packed
        if isinstance(value, list):
            if value and all(type(v) is float for v in value):
                return {REF: self.add(np.array(value))}
            return [self.pack(v, where) for v in value]
        return value

    def dates(self, stamps: list) -> Any:
        """``{"$dates": [first, count]}`` for consecutive calendar dates, else the list as it is."""
        try:
            first = date.fromisoformat(stamps[0])
        except (IndexError, TypeError, ValueError):
            return stamps
        run = [first.isoformat(), *(d.isoformat() for d in self._calendar.future(first, len(stamps) - 1))]
        return {DATES: [stamps[0], len(stamps)]} if run == stamps else stamps

    def calibration(self, array: Any, where: str) -> dict[str, Any]:
        """The reference of a calibration array, checked and stored once (by identity, then content)."""
        seen = self._seen.get(id(array))
        if seen is not None and seen[0] is array:
            return seen[1]
        try:
            errors = check_calibration_errors(np.asarray(array), f"{SECTIONS}")
        except ArtifactProblem as err:
            raise ArtifactError(f"{where}: {err}") from None
        key = (errors.shape, hashlib.sha256(errors.tobytes()).digest())
        if key not in self._calibrations:
            self._calibrations[key] = {REF: self.add(errors), "shape": list(errors.shape)}
        self._seen[id(array)] = (array, self._calibrations[key])
        return self._calibrations[key]

    def values(self) -> np.ndarray:
        return np.concatenate(self._arrays) if self._arrays else np.zeros(0)

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([a.size for a in self._arrays])]).astype(np.int64)


def _file_facts(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _check_item(item: str, document: dict[str, Any]) -> None:
    try:
        check_document(document, f"{SECTIONS} (item {item!r})", document.get("core"))
    except ArtifactProblem as err:
        raise ArtifactError(f"panel item {item!r}: {err}") from None


# --- reading --------------------------------------------------------------------------------------

class PanelModel:
    """A loaded panel: ``items`` (sorted ids), ``metadata``, and each item's model on demand."""

    def __init__(self, folder: Path, manifest: dict[str, Any], sections: bytes, arrays: dict[str, np.ndarray],
                 factory: Callable[..., Forecaster]) -> None:
        self.folder = folder
        self.freq: str = manifest["freq"]
        self.items: list[str] = manifest["items"]
        self.metadata: dict[str, Any] = manifest["metadata"]
        self._item_metadata: dict[str, Any] = manifest.get("item_metadata", {})
        self._calendar = parse_freq(self.freq)
        self._dates: dict[tuple[str, int], list[str]] = {}  # (first, count) -> the dates, shared by items
        self._index = {item: i for i, item in enumerate(self.items)}
        self._sections = sections
        self._values, self._offsets, self._lines = arrays["values"], arrays["offsets"], arrays["lines"]
        self._factory = factory
        self._forecasters: dict[str, Forecaster] = {}
        self._calibrations: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # array index -> (errors, sorted)

    @classmethod
    def load(cls, folder: str | Path, factory: Callable[..., Forecaster] = Forecaster) -> "PanelModel":
        """Read a panel folder, checking its integrity (see the module docstring); ArtifactError names the
        folder, the file and the problem. ``factory`` builds an item's forecaster from its model."""
        folder = Path(folder)
        try:
            manifest = _manifest(folder / PANEL_JSON)
            data = {name: _verified(folder / name, manifest["files"][name]) for name in (SECTIONS, ARRAYS)}
            arrays = _arrays(data[ARRAYS], len(manifest["items"]), len(data[SECTIONS]))
        except FileNotFoundError as err:
            raise ArtifactError(f"panel folder {folder.name!r} lacks {Path(err.filename).name}") from None
        except ArtifactProblem as err:
            raise ArtifactError(f"panel folder {folder.name!r}: {err}") from None
        return cls(folder, manifest, data[SECTIONS], arrays, factory)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def artifact(self, item_id: str) -> ModelArtifact:
        """The item's model, parsed and checked; UnknownItem when the panel has no such item."""
        return self._parse(item_id)[0]

    def _parse(self, item_id: str) -> tuple[ModelArtifact, np.ndarray]:
        """The item's model and its calibration errors sorted per column."""
        index = self._index.get(item_id)
        if index is None:
            raise UnknownItem(item_id)
        where = f"{SECTIONS} (item {item_id!r})"
        try:
            line = self._sections[self._lines[index]:self._lines[index + 1]]
            document = json.loads(line, parse_constant=_refuse_constant)
            if not isinstance(document, dict):
                raise ArtifactProblem(where, f"expected a JSON object, found {type(document).__name__}")
            errors, ordered = self._calibration(document.pop(CALIBRATION, None), where)
            document = {**{k: self._unpack(v, where) if k in PACKED else v for k, v in document.items()},
                        "freq": self.freq}
            if not isinstance(document.get("metadata", {}), dict):
                raise ArtifactProblem(where, "metadata must be a JSON object")
            document["metadata"] = {**self._item_metadata, **document.get("metadata", {})}
            check_document(document, where, document.get("core"))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            if not isinstance(err, ArtifactProblem):
                err = ArtifactProblem(where, f"is not valid JSON ({err})")
            raise ArtifactError(f"panel folder {self.folder.name!r}: {err}") from None
        return ModelArtifact.from_document(document, errors), ordered

    def forecaster(self, item_id: str) -> Forecaster:
        """The item's forecaster (built once); UnknownItem when the panel has no such item."""
        found = self._forecasters.get(item_id)
        if found is None:
            artifact, sorted_errors = self._parse(item_id)
            found = self._forecasters[item_id] = self._factory(artifact, sorted_errors=sorted_errors)
        return found

    def artifacts(self) -> dict[str, ModelArtifact]:
        return {item: self.artifact(item) for item in self.items}

    def check(self) -> "PanelModel":
        """Parse and check every item's section (ArtifactError on the first invalid one)."""
        for item in self.items:
            self.artifact(item)
        return self

    def _array(self, ref: Any, where: str) -> np.ndarray:
        k = ref.get(REF) if isinstance(ref, dict) else None
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < self._offsets.size - 1:
            raise ArtifactProblem(where, f"array reference {ref!r:.60} is not an index below {self._offsets.size - 1}")
        return self._values[self._offsets[k]:self._offsets[k + 1]]

    def _unpack(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            if REF in value:
                return self._array(value, where).tolist()
            if DATES in value:
                return self._run_of_dates(value[DATES], where)
            return {k: self._unpack(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self._unpack(v, where) for v in value]
        return value

    def _run_of_dates(self, run: Any, where: str) -> list[str]:
        """The dates of a ``$dates`` run, built once per (first, count) and shared."""
        key = tuple(run) if isinstance(run, list) else None
        found = self._dates.get(key) if key is not None and len(key) == 2 else None
        if found is None:
            try:
                first, count = run
                start = date.fromisoformat(first)
                if type(count) is not int or not 1 <= count <= MAX_DATES:
                    raise ValueError
            except (TypeError, ValueError):
                raise ArtifactProblem(where, f"{DATES} {run!r:.60} must be [an ISO date, a count 1..{MAX_DATES}]"
                                      ) from None
            found = self._dates[key] = [first, *(d.isoformat() for d in self._calendar.future(start, count - 1))]
        return found

    def _calibration(self, ref: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        """An item's calibration errors and the same sorted per column, checked and sorted once per array."""
        values = self._array(ref, f"{where} {CALIBRATION}")
        found = self._calibrations.get(ref[REF])
        if found is not None and found[0].shape == tuple(ref.get("shape") or ()):
            return found
        shape = ref.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2 or not all(type(n) is int and n > 0 for n in shape)
                or shape[0] * shape[1] != values.size):
            raise ArtifactProblem(where, f"{CALIBRATION} shape {shape!r:.40} does not fit its {values.size} values")
        errors = check_calibration_errors(values.reshape(shape), where)
        ordered = np.sort(errors, axis=0)
        for array in (errors, ordered):
            array.setflags(write=False)
        self._calibrations[ref[REF]] = (errors, ordered)
        return errors, ordered


def merge_panels(folders: list[Path], out: Path, metadata: dict[str, Any] | None = None) -> Path:
    """One panel from shard panels (each item in exactly one shard); ArtifactError when an item is in
    two shards or the shards' frequencies differ. ``metadata`` defaults to the first shard's plus the
    shard count."""
    if not folders:
        raise ArtifactError("merge_panels needs at least one shard")
    artifacts: dict[str, ModelArtifact] = {}
    owner: dict[str, str] = {}
    shards = [PanelModel.load(folder) for folder in folders]
    for folder, shard in zip(folders, shards):
        if shard.freq != shards[0].freq:
            raise ArtifactError(f"shard {Path(folder).name!r} has frequency {shard.freq!r}; shard "
                                f"{Path(folders[0]).name!r} has {shards[0].freq!r}")
        for item in shard.items:
            if item in owner:
                raise ArtifactError(f"item {item!r} is in two shards: {owner[item]!r} and {Path(folder).name!r}")
            owner[item] = Path(folder).name
            artifacts[item] = shard.artifact(item)
    if metadata is None:
        metadata = merged_metadata([shard.metadata for shard in shards], [len(shard.items) for shard in shards])
    return save_panel(out, artifacts, metadata)


def merged_metadata(shards: list[dict[str, Any]], items: list[int]) -> dict[str, Any]:
    """The merged panel's metadata: the first shard's, with each numeric metric the item-weighted mean
    over the shards (item counts summed) and each shard's data digest kept, as none covers the panel."""
    total = max(sum(items), 1)
    metrics: dict[str, Any] = {}
    for key in shards[0].get("metrics", {}):
        values = [shard.get("metrics", {}).get(key) for shard in shards]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            metrics[key] = (sum(values) if key.endswith("items")
                            else sum(v * n for v, n in zip(values, items)) / total)
    merged = {**shards[0], "shards": len(shards), "metrics": metrics}
    digests = [shard.get("data_sha256") for shard in shards]
    if any(digests):
        merged.pop("data_sha256", None)
        merged["shard_data_sha256"] = digests
    return merged


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_bytes(), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        raise ArtifactProblem(PANEL_JSON, f"is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ArtifactProblem(PANEL_JSON, f"expected a JSON object, found {type(manifest).__name__}")
    version = (manifest.get("format"), manifest.get("format_version"))
    if version != (FORMAT, FORMAT_VERSION):
        raise ArtifactProblem(PANEL_JSON, f"unsupported panel format {version[0]!r} v{version[1]}")
    kinds = {"freq": str, "items": list, "metadata": dict, "files": dict}
    if not isinstance(manifest.get("item_metadata", {}), dict):
        raise ArtifactProblem(PANEL_JSON, "item_metadata must be a JSON object")
    for key, kind in kinds.items():
        if not isinstance(manifest.get(key), kind):
            raise ArtifactProblem(PANEL_JSON, f"{key} must be a JSON {kind.__name__}, found {manifest.get(key)!r:.60}")
    try:
        parse_freq(manifest["freq"])
    except ValueError as err:
        raise ArtifactProblem(PANEL_JSON, str(err)) from None
    items = manifest["items"]
    if not items:
        raise ArtifactProblem(PANEL_JSON, "items is empty")
    for item in items:
        problem = item_id_problem(item)
        if problem:
            raise ArtifactProblem(PANEL_JSON, f"items holds {item!r:.60}: {problem}")
    if any(a >= b for a, b in zip(items, items[1:])):
        raise ArtifactProblem(PANEL_JSON, "items must be sorted and distinct")
    for name in (SECTIONS, ARRAYS):
        facts = manifest["files"].get(name)
        if (not isinstance(facts, dict) or type(facts.get("bytes")) is not int
                or not isinstance(facts.get("sha256"), str)):
            raise ArtifactProblem(PANEL_JSON, f"files.{name} must hold its bytes and sha256")
    return manifest


def _verified(path: Path, facts: dict[str, Any]) -> bytes:
    data = path.read_bytes()
    if len(data) != facts["bytes"]:
        raise ArtifactProblem(path.name, f"has {len(data)} bytes; {PANEL_JSON} says {facts['bytes']} (truncated "
                                         "or replaced)")
    if hashlib.sha256(data).hexdigest() != facts["sha256"]:
        raise ArtifactProblem(path.name, f"does not match its SHA-256 in {PANEL_JSON} (altered)")
    return data


def _arrays(data: bytes, items: int, section_bytes: int) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ("values", "offsets", "lines") if name in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise unreadable_archive(ARRAYS, err) from None
    missing = sorted({"values", "offsets", "lines"} - set(arrays))
    if missing:
        raise ArtifactProblem(ARRAYS, f"lacks the array(s) {missing}")
    values, offsets, lines = arrays["values"], arrays["offsets"], arrays["lines"]
    if values.dtype != np.float64 or values.ndim != 1:
        raise ArtifactProblem(ARRAYS, f"values must be a 1-D float64 array, found {values.dtype} {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ArtifactProblem(ARRAYS, f"values holds non-finite numbers ({values[bad[0]]} at position {bad[0]})")
    _check_index(offsets, "offsets", None, values.size)
    _check_index(lines, "lines", items + 1, section_bytes)
    if np.any(np.diff(lines) == 0):
        raise ArtifactProblem(ARRAYS, "lines gives an item an empty section")
    return arrays


def _check_index(index: np.ndarray, name: str, length: int | None, end: int) -> None:
    if index.dtype.kind not in "iu" or index.ndim != 1 or index.size < 1 or (length is not None
                                                                             and index.size != length):
        expected = f"{length} " if length is not None else ""
        raise ArtifactProblem(ARRAYS, f"{name} must be a 1-D integer array of {expected}positions, found "
                                      f"{index.dtype} {index.shape}")
    if index[0] != 0 or index[-1] != end or np.any(np.diff(index) < 0):
        raise ArtifactProblem(ARRAYS, f"{name} must rise from 0 to {end}")
