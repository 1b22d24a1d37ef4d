"""PNG plots of a run: forecast with intervals, the CV windows and errors, the tuning results."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.settings import OBJECTIVE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_forecast(
    path: Path, history: tuple[list[date], np.ndarray], forecast: Any, title: str = "Forecast"
) -> Path:
    """History, the forecast mean and its interval band (``forecast`` is a ``Forecast``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(history[0], history[1], color="black", lw=1, label="observed")
    ax.plot(forecast.timestamps, forecast.mean, color="tab:blue", lw=1.5, label="forecast mean")
    ax.fill_between(forecast.timestamps, forecast.lower, forecast.upper, color="tab:blue", alpha=0.25,
                    label=f"{forecast.conf:.0%} interval (calibrated)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_cv(path: Path, timestamps: list[date], y: np.ndarray, cv: Any, *, window: int, shown: int = 4) -> Path:
    """A few split windows over the series, and the out-of-sample error by horizon step."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7))
    top.plot(timestamps, y, color="black", lw=0.6)
    origins = cv.origins
    picks = np.linspace(0, origins.size - 1, shown).round().astype(int)
    for row, pick in enumerate(picks):
        o = int(origins[pick])
        top.axvspan(timestamps[o - window], timestamps[o - 1], ymin=0.02 + row * 0.06,
                    ymax=0.06 + row * 0.06, color="tab:green", alpha=0.6)
        steps = range(o, o + cv.forecast.shape[1])
        top.plot([timestamps[i] for i in steps], cv.forecast[pick], color="tab:red", lw=1)
    top.set_title(f"Sliding-window CV: {origins.size} splits (window {window}); a few shown")
    errors = cv.actual - cv.forecast
    bottom.boxplot(errors, showfliers=False)
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.set_xlabel("horizon step")
    bottom.set_ylabel("actual - forecast")
    bottom.set_title(f"Out-of-sample errors by step (RMSE {np.sqrt(np.mean(errors ** 2)):.1f})")
    return _save(fig, path)


def plot_tuning(path: Path, candidates: list[dict[str, Any]]) -> Path:
    """Three panels: every family's CV scores side by side (each candidate a dot, the family's best
    a bar), each combination's weights, and the harmonic model's CV MASE by Fourier order."""
    plt = _pyplot()
    fig, (families, weights, harmonic) = plt.subplots(1, 3, figsize=(16, 4.8),
                                                      gridspec_kw={"width_ratios": [1.3, 1, 1]})
    _family_scores(families, candidates)
    _combination_weights(weights, [c for c in candidates if c["hyperparameters"]["family"] == "combination"])
    _harmonic_orders(harmonic, [c for c in candidates if c["hyperparameters"]["family"] == "harmonic_arima"])
    return _save(fig, path)


def _family_scores(ax, candidates: list[dict[str, Any]]) -> None:
    by_family: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for c in candidates:
        name = c["hyperparameters"]["family"]
        if name == "combination":
            name = f"comb. {c['hyperparameters']['kind']}"
        if np.isfinite(c[OBJECTIVE]):
            by_family.setdefault(name, []).append(c[OBJECTIVE])
        else:
            failed[name] = failed.get(name, 0) + 1
            by_family.setdefault(name, [])
    names = sorted(by_family, key=lambda n: min(by_family[n], default=np.inf))
    best = min((min(v) for v in by_family.values() if v), default=np.nan)
    for i, name in enumerate(names):
        scores = by_family[name]
        if scores:
            ax.bar(i, min(scores), color="tab:red" if min(scores) == best else "tab:blue", alpha=0.5)
            ax.scatter(np.full(len(scores), i), scores, s=8, color="black", zorder=3)
        if failed.get(name):
            ax.annotate(f"{failed[name]} failed", (i, 0.03), xycoords=("data", "axes fraction"),
                        rotation=90, ha="center", va="bottom", fontsize=8, color="tab:red")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("CV MASE (same splits for all)")
    finite = [v for vs in by_family.values() for v in vs]
    if finite:
        ax.set_ylim(0.8 * min(finite), min(max(finite), 3 * min(finite)) * 1.05)
    ax.set_title("Families: every candidate (dots), best of each (bars)")
    ax.grid(alpha=0.3, axis="y")


def _combination_weights(ax, combos: list[dict[str, Any]]) -> None:
    if not combos:
        ax.text(0.5, 0.5, "no combinations", ha="center", va="center")
        ax.set_axis_off()
        return
    members = sorted({m["family"] for c in combos for m in c["hyperparameters"]["members"]})
    colours = {name: f"C{i}" for i, name in enumerate(members)}
    for row, combo in enumerate(combos):
        hp = combo["hyperparameters"]
        left = 0.0
        for member, weight in zip(hp["members"], hp["weights"]):
            ax.barh(row, weight, left=left, color=colours[member["family"]],
                    label=member["family"] if row == 0 or member["family"] not in
                    {m["family"] for c in combos[:row] for m in c["hyperparameters"]["members"]} else None)
            left += weight
    ax.set_yticks(range(len(combos)), [f"{c['hyperparameters']['kind']}\nMASE {c[OBJECTIVE]:.3f}" for c in combos],
                  fontsize=8)
    ax.set_xlabel("weight")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Combinations: weights of the members")


def _harmonic_orders(ax, candidates: list[dict[str, Any]]) -> None:
    candidates = [c for c in candidates if np.isfinite(c[OBJECTIVE])]  # a failed one has no score to plot
    if not candidates:
        ax.set_axis_off()
        return
    groups: dict[tuple, list] = {}
    for c in candidates:
        hp = c["hyperparameters"]
        key = (hp["use_counterfactual_data"], hp["detrend"], hp["deseasonalize"])
        groups.setdefault(key, []).append((hp["fourier_k"], c[OBJECTIVE]))
    for (cf, dt, ds), points in sorted(groups.items()):
        points.sort()
        ax.plot([k for k, _ in points], [m for _, m in points], marker="o", ms=3,
                label=f"cf={cf} detrend={dt} deseason={ds}")
    best = min(candidates, key=lambda c: c[OBJECTIVE])
    ax.scatter([best["hyperparameters"]["fourier_k"]], [best[OBJECTIVE]], s=120, facecolors="none",
               edgecolors="red", label="best")
    ax.set_xlabel("Fourier pairs K")
    ax.set_ylabel("CV MASE")
    ax.set_yscale("log")
    ax.set_title("Harmonic model: CV MASE by Fourier order")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
