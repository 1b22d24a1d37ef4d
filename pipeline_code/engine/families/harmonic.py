"""Harmonic regression with ARIMA errors on the log scale (the seed model), batched over windows by
``model.sliding``. Its search is ``SearchSpace.candidates`` (80 candidates on weekly data) on each
training history ``Settings.family_histories`` gives it: the CV window (by default, ``search.window_only``),
or all history before the origin too."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline_code.engine.core.spec import ModelSpec
from pipeline_code.engine.families.base import (
    WINDOW, Context, Section, WindowForecasts, history_starts,
)
from pipeline_code.engine.model.sliding import fit_windows
from pipeline_code.engine.settings import Settings

NAME = "harmonic_arima"


def model_spec(candidate: dict[str, Any], season_length: float) -> ModelSpec:
    return ModelSpec.from_dict({**candidate, "season_length": season_length})


class HarmonicArima:
    name = NAME
    batched = True

    def candidates(self, settings: Settings) -> list[dict[str, Any]]:
        return [{"family": NAME, **c, "history": h} for h in settings.family_histories(NAME)
                for c in settings.search.candidates(settings.data.season_length)]

    def fit_windows(self, y, candidate, origins, ctx: Context) -> WindowForecasts:
        starts = history_starts(origins, ctx.window, candidate.get("history", WINDOW))
        fits = fit_windows(np.log(y), model_spec(candidate, ctx.season_length), window=ctx.window,
                           horizon=ctx.horizon, origins=origins, starts=starts)
        return WindowForecasts.from_rows(origins, fits.z_hat, fits.variance)

    def fit_final(self, y, candidate, ctx: Context) -> Section:
        spec = model_spec(candidate, ctx.season_length)
        z = np.log(y)
        end = np.array([z.size])
        start = history_starts(end, min(ctx.window, z.size), candidate.get("history", WINDOW))
        final = fit_windows(z, spec, window=ctx.window, horizon=1, origins=end, starts=start)
        return Section(NAME, spec.to_dict(), {
            "beta": final.beta[0],
            "phi": final.phi[0],
            "theta": float(final.theta[0]),
            "diff": int(final.diff[0]),
            "sigma2": float(final.sigma2[0]),
            "x_tail": final.x_tail[0],
            "u_last": float(final.u_last[0]),
        })
