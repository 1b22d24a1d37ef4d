"""What ``runs``, ``tuning`` and ``models`` print: one format whether the answers come from a local work
folder (cli/local_ops.py) or a deployed stack (cli/cloud.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline_code.engine.settings import OBJECTIVE
from pipeline_code.pipeline.layout import TUNING_FILE
from pipeline_code.pipeline.runs import RecordError, RunDetail, RunSummary, flat_parameters

PLOT_MAX_CATEGORIES = 12
TEXT_WIDTH = 90  # a list's last column (reasons, decisions): `runs show` and the records keep it whole


@dataclass(frozen=True)
class Trial:
    """One tuning candidate (a training job in the cloud): its order, objective and parameters."""

    order: int
    objective: float | None
    parameters: dict[str, str]
    status: str = "Completed"
    name: str | None = None


def report_trials(document: Any, source: str | Path = TUNING_FILE) -> list[Trial]:
    """The candidates of a tuning report (``tuning.json``: the local run's, or the cloud Select job's), in
    scoring order; one without a finite objective failed. RecordError (naming ``source``) for a report
    of the wrong shape."""
    if not isinstance(document, dict):
        raise RecordError(source, f"is not a JSON object (a {type(document).__name__})")
    candidates = document.get("candidates", [])
    if not isinstance(candidates, list):
        raise RecordError(source, f"candidates is a {type(candidates).__name__}, not a list")
    trials = []
    for order, candidate in enumerate(candidates, 1):
        if not isinstance(candidate, dict):
            raise RecordError(source, f"candidate {order} is a {type(candidate).__name__}, not an object")
        hyperparameters = candidate.get("hyperparameters") or {}
        if not isinstance(hyperparameters, dict):
            raise RecordError(source, f"candidate {order}: hyperparameters is a {type(hyperparameters).__name__},"
                                      " not an object")
        objective = candidate.get(OBJECTIVE)  # one series' candidate or a panel's global choice
        finite = isinstance(objective, (int, float)) and math.isfinite(objective)
        trials.append(Trial(order=order, objective=float(objective) if finite else None,
                            parameters=flat_parameters(hyperparameters),
                            status="Completed" if finite else "Failed"))
    return trials


UNREADABLE = "Unreadable"  # a local version whose record does not read (ModelRow.problem says why)


@dataclass(frozen=True)
class ModelRow:
    """One registry version (a model package in the cloud) and the latest decision about it."""

    version: str
    status: str
    serving: bool
    run_id: str | None = None
    registered_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)  # action, by, at, reason
    problem: str | None = None  # why the version cannot be read (status UNREADABLE)


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s" if minutes else f"{seconds:.1f}s"


def _metrics(metrics: dict[str, float]) -> str:
    names = {"mase": "MASE", "coverage_80": "cov80", "coverage_95": "cov95"}
    return " ".join(f"{names.get(k, k)} {v:.3f}" for k, v in metrics.items()) or "-"


def runs_table(runs: list[RunSummary]) -> str:
    if not runs:
        return "no runs yet"
    header = f"{'STATE':<10} {'RUN':<31} {'DATA':<22} {'STARTED (UTC)':<19} {'TOOK':>7}  {'MODEL':<34} {'METRICS':<34} REASON"
    lines = [header]
    for r in runs:
        lines.append(
            f"{r.state:<10} {_cut(r.run_id, 31):<31} {_cut(r.data, 22):<22} {_when(r.started_at):<19}"
            f" {_duration(r.duration_s):>7}  {_cut(r.spec, 34):<34} {_metrics(r.metrics):<34} {_cut(r.reason, TEXT_WIDTH)}")
    return "\n".join(lines)


def run_detail(detail: RunDetail) -> str:
    r = detail.summary
    lines = [f"run {clean(r.run_id)}: {r.state}", f"  data      {clean(r.data)}",
             f"  started   {_when(r.started_at)} UTC, took {_duration(r.duration_s)}",
             f"  model     {clean(r.spec)}" + (f" -> version {clean(r.version)}" if r.version else ""),
             f"  metrics   {_metrics(r.metrics)}", f"  reason    {clean(r.reason)}"]
    if detail.timings:
        lines.append("timings per stage:")
        lines += [f"  {clean(stage):<12}{_duration(seconds):>9}" for stage, seconds in detail.timings.items()]
    if detail.evaluation:
        lines.append("evaluation:")
        for key, value in detail.evaluation.items():
            text = _metrics(value) if key in ("challenger", "champion", "seasonal_naive") and all(
                isinstance(v, (int, float)) for v in (value or {}).values()) else value
            lines.append(f"  {key:<17} {clean(text)}")
    if detail.links:
        lines.append("reports and plots:")
        lines += [f"  {clean(name):<28} {clean(uri)}" for name, uri in detail.links.items()]
    return "\n".join(lines)


def trials_table(trials: list[Trial]) -> str:
    """Every candidate, best objective first (failed ones last)."""
    if not trials:
        return "no candidates"
    names = sorted({k for t in trials for k in t.parameters})
    widths = {n: min(24, max(len(clean(n)), *(len(_cut(t.parameters.get(n), 24)) for t in trials))) for n in names}
    header = f"{'RANK':>4} {'TRIAL':>5} {'OBJECTIVE':>14} {'STATUS':<10} " + " ".join(
        f"{_cut(n, widths[n]):<{widths[n]}}" for n in names)
    lines = [header]
    for rank, t in enumerate(sort_trials(trials), 1):
        objective = f"{t.objective:14.6g}" if t.objective is not None else f"{'-':>14}"
        lines.append(f"{rank:>4} {t.order:>5} {objective} {_cut(t.status, 10):<10} "
                     + " ".join(f"{_cut(t.parameters.get(n), widths[n]):<{widths[n]}}" for n in names))
    return "\n".join(lines)


def sort_trials(trials: list[Trial]) -> list[Trial]:
    return sorted(trials, key=lambda t: (not _finite(t.objective), t.objective if _finite(t.objective) else 0.0,
                                         t.order))


def plot_trials(trials: list[Trial], path: Path, title: str) -> Path:
    """PNG: the objective over trial order (with the best so far), and over each parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [t for t in trials if _finite(t.objective)]
    # a parameter with a value per trial (a combination's weights) says nothing plotted against
    names = [n for n in sorted({k for t in trials for k in t.parameters})
             if len({t.parameters.get(n) for t in scored}) <= max(PLOT_MAX_CATEGORIES, len(scored) // 2)]
    columns = min(4, 1 + len(names))
    rows = -(-(1 + len(names)) // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    axes = [a for row in grid for a in row]
    for unused in axes[1 + len(names):]:
        unused.set_visible(False)
    ax = axes[0]
    ordered = sorted(scored, key=lambda t: t.order)
    ax.scatter([t.order for t in ordered], [t.objective for t in ordered], s=12, color="tab:blue")
    best, running = [], math.inf
    for t in ordered:
        running = min(running, t.objective)
        best.append(running)
    ax.step([t.order for t in ordered], best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (CV MASE)")
    ax.legend(loc="upper right")
    for ax, name in zip(axes[1:], names):
        values = [t.parameters.get(name, "(none)") for t in scored]
        categories = sorted(set(values), key=_natural)
        ax.scatter([categories.index(v) for v in values], [t.objective for t in scored], s=12, color="tab:blue")
        ax.set_xticks(range(len(categories)), [_cut(c, 10) for c in categories], rotation=45, ha="right")
        ax.set_xlabel(name)
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def models_table(rows: list[ModelRow]) -> str:
    if not rows:
        return "no model versions yet"
    lines = [f"  {'VERSION':<10} {'STATUS':<22} {'REGISTERED (UTC)':<19} {'RUN':<31} {'METRICS':<34} LAST DECISION"]
    for m in rows:
        d = m.decision
        decided = (clean(f"{d.get('action')} by {d.get('by') or '?'} at {d.get('at') or '?'}")
                   + (f": {_cut(d['reason'], TEXT_WIDTH)}" if d.get("reason") else "")) if d else "-"
        if m.problem:
            decided = clean(m.problem)
        lines.append(f"{'*' if m.serving else ' '} {_cut(m.version, 10):<10} {_cut(m.status, 22):<22}"
                     f" {_when(m.registered_at):<19} {_cut(m.run_id, 31):<31} {_metrics(m.metrics):<34}"
                     f" {decided}")
    lines.append("(* = the version served)")
    return "\n".join(lines)


def _finite(value: float | None) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _natural(text: str) -> tuple:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def clean(text: Any) -> str:
    r"""Free text from a record as one printable line ("-" for none): a newline shows as ⏎, any other
    unprintable character (ESC, a bidi override) as its escape (``\x1b``, ``\u202e``), so a record can
    neither add rows to a table nor drive the terminal."""
    if text is None or text == "":
        return "-"
    return "".join(c if c.isprintable() else "⏎" if c == "\n" else repr(c)[1:-1] for c in str(text))


def _cut(text: Any, width: int) -> str:
    """``clean`` text cut to ``width`` characters (… marks a cut)."""
    text = clean(text)
    return text if len(text) <= width else text[: width - 1] + "…"
