"""PNG plots of a run: forecast with intervals, the CV windows and errors, the tuning results."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np


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
    """CV MSE against the Fourier order, one line per (counterfactual, detrend, deseasonalize)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    groups: dict[tuple, list] = {}
    for c in candidates:
        hp = c["hyperparameters"]
        key = (hp["use_counterfactual_data"], hp["detrend"], hp["deseasonalize"])
        groups.setdefault(key, []).append((hp["fourier_k"], c["cv_mse"]))
    for (cf, dt, ds), points in sorted(groups.items()):
        points.sort()
        ax.plot([k for k, _ in points], [m for _, m in points], marker="o", ms=3,
                label=f"cf={cf} detrend={dt} deseason={ds}")
    best = min(candidates, key=lambda c: c["cv_mse"])
    ax.scatter([best["hyperparameters"]["fourier_k"]], [best["cv_mse"]], s=120, facecolors="none",
               edgecolors="red", label="best")
    ax.set_xlabel("Fourier pairs K")
    ax.set_ylabel("CV MSE")
    ax.set_yscale("log")
    ax.set_title("Tuning: every candidate's objective")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
