"""Panel models for tests and the serving benchmark: real family fits on synthetic monthly series,
with the panel fitter's pooled calibration (every item gets the same normalised errors)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.calendar import parse_freq
from pipeline_code.engine.core.panel_artifact import ARRAYS, PANEL_JSON, SECTIONS, _file_facts, save_panel
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.estimator import ModelEstimator
from pipeline_code.engine.families.base import Context

FREQ = "MS"
CONTEXT = Context(season_length=12, window=36, horizon=12, periods=104)
CANDIDATES = {
    "seasonal_naive": {"family": "seasonal_naive", "use_counterfactual_data": 1},
    "harmonic_arima": {"family": "harmonic_arima", "use_counterfactual_data": 1, "fourier_k": 2, "detrend": 1,
                       "deseasonalize": 0},
    "theta": {"family": "theta", "use_counterfactual_data": 1, "history": "all"},
}


def synthetic_series(seed: int, length: int = 84) -> Series:
    """A positive monthly series: level, trend and season drawn from ``seed``, plus noise."""
    rng = np.random.default_rng(seed)
    calendar = parse_freq(FREQ)
    t = np.arange(length)
    log_y = (rng.uniform(2, 8) + rng.uniform(-0.004, 0.008) * t
             + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6))
             + rng.uniform(0.02, 0.08) * rng.standard_normal(length))
    return Series([calendar.shift(date(2016, 1, 1), int(k)) for k in t], np.exp(log_y), FREQ)


def fit_item(seed: int, family: str = "seasonal_naive") -> ModelArtifact:
    return ModelEstimator(CANDIDATES[family], CONTEXT).fit(synthetic_series(seed)).artifact


def pool_calibration(artifacts: dict[str, ModelArtifact], rows: int = 4) -> dict[str, ModelArtifact]:
    """What the panel fitter does: every item's calibration errors are the panel's pool (its
    ``engine.panel_cv.pooled``, of ``rows`` normalised errors per item, as from the shared cutoffs),
    without the rows' scales, which a pool does not keep."""
    from pipeline_code.engine.panel_cv import pooled

    errors = [a.calibration_errors[-rows:] for a in artifacts.values()]
    pool = pooled(errors, errors[0].shape[1])
    for artifact in artifacts.values():
        artifact.calibration_errors, artifact.calibration_scales = pool, None
    return artifacts


def panel(folder: Path, items: dict[str, str], metadata: dict | None = None) -> Path:
    """A saved panel of ``items`` (item id -> family), item i fitted on series seed i."""
    artifacts = {item: fit_item(seed, family) for seed, (item, family) in enumerate(items.items())}
    return save_panel(folder, pool_calibration(artifacts),
                      {"name": "panel", "trained_at": "2026-11-25T18:00:00+00:00", "metrics": {"mase": 0.8},
                       **(metadata or {})})


def reseal(folder: Path) -> None:
    """Recompute panel.json's sizes and digests after an edit (to reach the checks behind them)."""
    manifest = json.loads((folder / PANEL_JSON).read_text())
    manifest["files"] = {name: _file_facts((folder / name).read_bytes()) for name in (SECTIONS, ARRAYS)}
    (folder / PANEL_JSON).write_text(json.dumps(manifest))


def edit_section(folder: Path, index: int, edit) -> None:
    """Change item ``index``'s line of sections.jsonl with ``edit(document)``, keeping the index and the
    digests consistent: a panel whose only fault is in that section."""
    lines = (folder / SECTIONS).read_bytes().splitlines(keepends=True)
    document = json.loads(lines[index])
    edit(document)
    lines[index] = json.dumps(document).encode() + b"\n"
    (folder / SECTIONS).write_bytes(b"".join(lines))
    with np.load(folder / ARRAYS, allow_pickle=False) as arrays:
        stored = {name: arrays[name] for name in arrays.files}
    stored["lines"] = np.concatenate([[0], np.cumsum([len(line) for line in lines])]).astype(np.int64)
    np.savez(folder / ARRAYS, **stored)
    reseal(folder)
