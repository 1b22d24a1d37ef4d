"""Combinations of candidates: equal weights of the best k members, and weights fitted on CV errors
(non-negative least squares, shrunk toward equal weights). The members are the best candidate of each
family and training history (``history``: the window or all of it; its best scale), so a family fitted on all
history competes beside the same family on the window: their errors differ (measured in
bench/results/accuracy.md's notes). A combination is a candidate too:
``{"family": "combination", "members": [candidate, ...], "weights": [w, ...]}``; its artifact
section holds every member's section (core ``combination``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.families.base import Section, WindowForecasts
from pipeline_code.engine.settings import COMBINATION, OBJECTIVE
# Fitted weights are pulled this far toward equal weights: the CV errors they are fitted on are the
# ones they are scored on, and shrinkage keeps that optimism small.
SHRINKAGE = 0.5


def combine(members: list[WindowForecasts], weights: list[float]) -> WindowForecasts:
    """The weighted mean of the members' forecast means (log centre and variance as ``core.paths``)."""
    w = np.asarray(weights, dtype=float)
    mean = sum(wi * m.mean() for wi, m in zip(w, members))
    variance = sum(wi * m.variance for wi, m in zip(w, members))
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.log(mean) - 0.5 * variance
    failed = np.any([m.failed for m in members], axis=0)
    reason = next((m.reason for m in members if m.reason), None)
    out = WindowForecasts.from_rows(members[0].origins, centre, variance, reason)
    out.failed |= failed
    return out


def section(members: list[tuple[dict[str, Any], float, Section, str]]) -> Section:
    """The artifact section of a combination: (candidate, weight, fitted section, family) per member."""
    return Section(COMBINATION, {"weights": [w for _, w, _, _ in members]}, {"members": [
        {"family": name, "hyperparameters": candidate, "weight": weight, "core": s.core, "spec": s.spec,
         "parameters": s.parameters}
        for candidate, weight, s, name in members
    ]})


def fitted_weights(forecasts: np.ndarray, actual: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    """Weights of ``forecasts`` (members, splits, horizon) by NNLS on ``actual``, scaled to sum to 1,
    then shrunk toward equal weights."""
    from scipy.optimize import nnls

    m = forecasts.shape[0]
    design = forecasts.reshape(m, -1).T
    scale = np.abs(actual).mean()
    w, _ = nnls(design / scale, actual.ravel() / scale)
    w = w / w.sum() if w.sum() > 0 else np.full(m, 1.0 / m)
    return (1 - shrinkage) * w + shrinkage / m


def ranked_members(singles: list[dict[str, Any]], objective: str = OBJECTIVE) -> list[dict[str, Any]]:
    """The best candidate of each family and history (those that fitted), best first."""
    best: dict[tuple[str, Any], dict[str, Any]] = {}
    for c in sorted((c for c in singles if np.isfinite(c[objective])), key=lambda c: c[objective]):
        best.setdefault((c["hyperparameters"]["family"], c["hyperparameters"].get("history")), c)
    return list(best.values())


def equal_top(k: int) -> str:
    """The ``kind`` of the combination of the best ``k`` members at equal weights."""
    return f"equal top {k}"


def equal_weights(members: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The combination candidate of ``members`` (candidates, best first) at equal weights."""
    k = len(members)
    return {"family": COMBINATION, "kind": kind, "members": list(members),
            "weights": [round(1.0 / k, 6)] * k}


def build(singles: list[dict[str, Any]], forecasts: dict[int, np.ndarray], actual: np.ndarray,
          sizes: tuple[int, ...], objective: str = OBJECTIVE) -> list[dict[str, Any]]:
    """Combination candidates from scored single candidates (each with ``index``, ``hyperparameters``
    and its ``objective``): the best candidate of each family and history, ranked; equal weights of
    the top k for each k in ``sizes``, and fitted weights over all of them. Returns
    ``{"hyperparameters", "index"s}`` dicts."""
    ranked = ranked_members(singles, objective)
    out = []
    for k in sorted(set(sizes)):
        if 2 <= k <= len(ranked):
            out.append((ranked[:k], np.full(k, 1.0 / k), equal_top(k)))
    if len(ranked) >= 2:
        stack = np.stack([forecasts[c["index"]] for c in ranked])
        out.append((ranked, fitted_weights(stack, actual), "fitted weights"))
    return [{"hyperparameters": {**equal_weights([c["hyperparameters"] for c in members], kind),
                                 "weights": [round(float(w), 6) for w in weights]},
             "indices": [c["index"] for c in members]}
            for members, weights, kind in out]
