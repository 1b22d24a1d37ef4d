"""Typed settings shared by the engine, the local pipeline, the containers and the CDK app.

Only the standard library is imported here, so every part (serving, Lambdas, CDK) may import it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

WEEKS_PER_YEAR = 365.25 / 7


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """How to read a series and how far to forecast it."""

    freq: str = "W-FRI"
    season_length: float = WEEKS_PER_YEAR
    horizon: int = 26
    # Largest allowed upload, in bytes.
    max_file_bytes: int = 50 * 1024 * 1024
    # Missing periods tolerated (filled by interpolation) before a series is refused as gappy.
    max_gap_periods: int = 0


@dataclass(frozen=True, kw_only=True)
class PreprocessSettings:
    """Outliers and the structural break (an episode replaced by a counterfactual)."""

    iqr_multiplier: float = 3.0
    break_start: str | None = "2020-01-01"
    break_end: str | None = None
    # Flagged points closer than this (in periods) belong to the same episode.
    episode_gap: int = 8
    # An episode needs at least this many flagged points to count as a structural break.
    min_episode_points: int = 3


@dataclass(frozen=True, kw_only=True)
class CVSettings:
    """Sliding-window time-series cross-validation."""

    window: int = 417
    step: int = 1


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The hyperparameter space searched by the tuner (local and SageMaker HPO)."""

    use_counterfactual_data: tuple[int, ...] = (0, 1)
    detrend: tuple[int, ...] = (0, 1)
    deseasonalize: tuple[int, ...] = (0, 1)
    fourier_k: tuple[int, ...] = tuple(range(1, 11))

    def candidates(self) -> list[dict[str, int]]:
        """Every combination, in a stable order."""
        return [
            {"use_counterfactual_data": c, "detrend": d, "deseasonalize": s, "fourier_k": k}
            for c in self.use_counterfactual_data
            for d in self.detrend
            for s in self.deseasonalize
            for k in self.fourier_k
        ]


@dataclass(frozen=True, kw_only=True)
class GateSettings:
    """When a challenger may replace the approved model."""

    # The challenger's backtest MASE must be below the champion's by at least this fraction.
    min_improvement: float = 0.01
    # Origins of the rolling backtest used to compare challenger, champion and seasonal naive.
    eval_origins: int = 26
    # Coverage levels reported by evaluation.
    coverage_levels: tuple[float, ...] = (0.8, 0.95)


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """The serving app."""

    max_periods: int = 104
    port: int = 8080


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All engine settings; defaults are the bundled weekly gasoline series'."""

    data: DataSettings = field(default_factory=DataSettings)
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    cv: CVSettings = field(default_factory=CVSettings)
    search: SearchSpace = field(default_factory=SearchSpace)
    gate: GateSettings = field(default_factory=GateSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Settings":
        """Build settings from a nested dict; unknown keys are an error, missing keys keep defaults."""
        parts = {f.name: f.type for f in fields(cls)}
        unknown = set(raw) - set(parts)
        if unknown:
            raise ValueError(f"unknown settings section(s): {sorted(unknown)}")
        base = cls()
        updates = {}
        for name, section in raw.items():
            current = getattr(base, name)
            allowed = {f.name for f in fields(current)}
            bad = set(section) - allowed
            if bad:
                raise ValueError(f"unknown setting(s) in [{name}]: {sorted(bad)}")
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
            updates[name] = replace(current, **values)
        return replace(base, **updates)

    @classmethod
    def from_file(cls, path: str | Path) -> "Settings":
        return cls.from_dict(json.loads(Path(path).read_text()))
