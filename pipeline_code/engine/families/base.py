"""The model-family interface (shaped after statsforecast's and sktime's estimators).

A family is an object with:

- ``name``: its registry key, recorded in every candidate as ``"family"``;
- ``batched``: True when a fit over every step-1 CV split is cheap (NumPy, batched); otherwise the
  tuner scores it on the thinned split grid shared by every family (``cv.selection_origins``);
- ``candidates(settings)``: its search space, as plain dicts that include ``"family"`` and
  ``"use_counterfactual_data"`` (which series the candidate trains on);
- ``fit_windows(y, candidate, origins, ctx)``: fit each window before ``origins`` from scratch and
  forecast steps 1..``ctx.horizon`` after it, as :class:`WindowForecasts`;
- ``fit_final(y, candidate, ctx)``: the fitted model on all of ``y``, as a :class:`Section` (plain data
  that ``core.paths`` forecasts from, with NumPy only).

A family fitted on many series at once (``global_ar``) also sets ``pooled = True`` and offers
``statistics(y, candidate, origins, ctx)``, each origin's sufficient statistics; a panel sums them over
its series and passes the sum as ``pooled=`` to ``fit_windows`` and ``fit_final`` (without it, the
family fits the series' own rows alone).

Every family forecasts the log of a positive series: the centre ``z`` and a model variance ``v`` per
step, the mean being ``exp(z + v / 2)``, the point forecast (seasonal naive's ``z`` is the last season's
log less ``v / 2``, so its point is that season). Adding a family is its module plus one line in ``registry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.settings import Settings

WINDOW = "window"  # fit on the last ``cv.window`` observations before the origin
ALL = "all"  # fit on all history before the origin
PATH = "path"  # the core of a section that stores its forecast path (``core.paths``)


class FamilyError(RuntimeError):
    """A family that cannot fit (a missing library, or a series its maths cannot take)."""


@dataclass(frozen=True)
class Context:
    """What every fit needs besides the data and the candidate."""

    season_length: float
    window: int
    horizon: int
    periods: int  # the most periods served: ``path`` sections store this many steps
    jobs: int = 1

    @classmethod
    def from_settings(cls, settings: Settings, jobs: int = 1) -> "Context":
        return cls(settings.data.season_length, settings.cv.window, settings.data.horizon,
                   max(settings.serve.max_periods, settings.data.horizon), jobs)

    @property
    def period(self) -> int:
        """The integer season (seasonal naive, statsforecast's seasonal models); 1 with no season."""
        return season_period(self.season_length)


@dataclass
class WindowForecasts:
    """Forecasts from each window; row i belongs to ``origins[i]``. ``failed`` rows are NaN."""

    origins: np.ndarray
    centre: np.ndarray  # (n, horizon) log scale
    variance: np.ndarray  # (n, horizon) model variance of the log forecast
    failed: np.ndarray  # (n,) the fit failed on that window
    reason: str | None = None  # why the first failure happened

    def mean(self) -> np.ndarray:
        return np.exp(self.centre + 0.5 * self.variance)

    @classmethod
    def from_rows(cls, origins: np.ndarray, centre: np.ndarray, variance: np.ndarray,
                  reason: str | None = None) -> "WindowForecasts":
        """Mark rows with any non-finite value as failed (and blank them)."""
        bad = ~(np.all(np.isfinite(centre), axis=1) & np.all(np.isfinite(variance), axis=1))
        if bad.any():
            centre, variance = centre.copy(), variance.copy()
            centre[bad], variance[bad] = np.nan, np.nan
            reason = reason or "non-finite forecast"
        return cls(np.asarray(origins), centre, variance, bad, reason)


@dataclass(frozen=True)
class Section:
    """A fitted model as plain data: ``core`` names the ``core.paths`` function that forecasts it."""

    core: str
    spec: dict[str, Any]
    parameters: dict[str, Any]


class Family(Protocol):
    name: str
    batched: bool

    def candidates(self, settings: Settings) -> list[dict[str, Any]]: ...

    def fit_windows(self, y: np.ndarray, candidate: dict[str, Any], origins: np.ndarray,
                    ctx: Context) -> WindowForecasts: ...

    def fit_final(self, y: np.ndarray, candidate: dict[str, Any], ctx: Context) -> Section: ...


def pooled_argument(pooled: dict[str, np.ndarray] | None, name: str) -> dict[str, np.ndarray]:
    """``{"pooled": statistics}`` for a family a panel pools (``name`` in ``pooled``), else nothing:
    the keyword arguments of its ``fit_windows`` or ``fit_final``."""
    shared = (pooled or {}).get(name)
    return {} if shared is None else {"pooled": shared}


def history_starts(origins: np.ndarray, window: int, history: str) -> np.ndarray:
    """Where each origin's training data starts: ``window`` periods back, or at 0 for all history."""
    if history == ALL:
        return np.zeros_like(origins)
    if history == WINDOW:
        return origins - window
    raise ValueError(f"history must be {WINDOW!r} or {ALL!r}, got {history!r}")
