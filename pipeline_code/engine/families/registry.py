"""The model families, one line each (see ``base`` for the interface)."""

from __future__ import annotations

from pipeline_code.engine.families.base import Family
from pipeline_code.engine.families.global_ar import GlobalAR, GlobalARDrift
from pipeline_code.engine.families.harmonic import HarmonicArima
from pipeline_code.engine.families.seasonal_naive import SeasonalNaive
from pipeline_code.engine.families.sf import (
    MSTL, ArimaFourier, AutoCES, AutoETS, AutoTBATS, AutoTheta, SeasonalArima,
)
from pipeline_code.engine.families.thief import ThiefETS
from pipeline_code.engine.settings import Settings

FAMILIES: dict[str, Family] = {f.name: f for f in (
    HarmonicArima(),
    SeasonalNaive(),
    AutoETS(),
    AutoTheta(),
    MSTL(),
    ArimaFourier(),
    AutoTBATS(),
    SeasonalArima(),
    GlobalAR(),
    GlobalARDrift(),
    AutoCES(),
    ThiefETS(),
)}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose from {sorted(FAMILIES)}") from None

