"""Forecast paths from a family's plain-data artifact section (NumPy only; what serving runs).

Every family's section is evaluated by one of the *cores* below, named by the artifact's ``core``:

- ``harmonic_arima``: the regression design and the ARIMA error recursions (``design``, ``arima``);
- ``seasonal_naive``: the last season repeated, variance growing with each season ahead;
- ``path``: a stored log-scale path, for families that are costly to evaluate in NumPy (statsforecast's
  ETS, Theta, MSTL, ARIMA): their training fits the model and stores its forecast up to the maximum
  number of periods served, so serving needs no model code but cannot forecast further than that;
- ``combination``: a weighted mean of member sections, each evaluated by its own core.

Each returns the log-scale centre ``z`` and a model variance ``v`` per step; the forecast mean is
``exp(z + v / 2)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.core.arima import error_forecast, forecast_variance
from pipeline_code.engine.core.design import design_matrix
from pipeline_code.engine.core.spec import ModelSpec

CORES = ("harmonic_arima", "seasonal_naive", "path", "combination")


def log_path(core: str, spec: dict[str, Any], parameters: dict[str, Any], t_last: int, periods: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Log-scale centre and model variance for steps 1..periods."""
    if core == "harmonic_arima":
        return _harmonic(spec, parameters, t_last, periods)
    if core == "seasonal_naive":
        return _seasonal_naive(parameters, periods)
    if core == "path":
        return _stored(parameters, periods)
    if core == "combination":
        return _combination(parameters, t_last, periods)
    raise ValueError(f"unknown forecasting core {core!r}; expected one of {CORES}")


def stored_periods(core: str, parameters: dict[str, Any]) -> int | None:
    """How many steps a section can forecast: a stored path's length (a combination's shortest
    member's), None when its core computes any number."""
    if core == "path":
        return int(np.asarray(parameters["centre"]).size)
    if core == "combination":
        found = [stored_periods(m["core"], m["parameters"]) for m in parameters["members"]]
        return min((n for n in found if n is not None), default=None)
    return None


def _harmonic(spec: dict[str, Any], params: dict[str, Any], t_last: int, periods: int):
    model = ModelSpec.from_dict(spec)
    t = t_last + np.arange(1, periods + 1, dtype=float)
    deterministic = design_matrix(t, model, intercept=True) @ np.asarray(params["beta"], dtype=float)
    phi = np.asarray(params["phi"], dtype=float)[None, :]
    theta = np.array([float(params["theta"])])
    diff = np.array([int(params["diff"])])
    errors = error_forecast(phi, theta, np.asarray(params["x_tail"], dtype=float)[None, :],
                            np.array([float(params["u_last"])]), diff, periods)[0]
    variance = forecast_variance(phi, theta, np.array([float(params["sigma2"])]), diff, periods)[0]
    return deterministic + errors, variance


def _seasonal_naive(params: dict[str, Any], periods: int):
    season = np.asarray(params["last_season"], dtype=float)
    steps = np.arange(periods)
    z = season[steps % season.size]
    return z, float(params["sigma2"]) * (steps // season.size + 1)


def _stored(params: dict[str, Any], periods: int):
    centre = np.asarray(params["centre"], dtype=float)
    if periods > centre.size:
        raise ValueError(f"this model stores a forecast of {centre.size} periods; {periods} were asked")
    return centre[:periods], np.asarray(params["variance"], dtype=float)[:periods]


def _combination(params: dict[str, Any], t_last: int, periods: int):
    mean = np.zeros(periods)
    variance = np.zeros(periods)
    for member in params["members"]:
        z, v = log_path(member["core"], member["spec"], member["parameters"], t_last, periods)
        weight = float(member["weight"])
        mean += weight * np.exp(z + 0.5 * v)
        variance += weight * v
    return np.log(mean) - 0.5 * variance, variance
