"""Panels through the pipeline's stages: a long ``item_id,timestamp,value`` upload (docs/panel.md).

``stages.py`` dispatches here when the upload (or a processed folder) holds many series; a single
series never comes here. Processing validates the panel (``engine.panel_data``), runs the outlier and
break rules per series, and writes the long CSV under ``train/`` and ``test/`` in
``series.instances`` shard files (by ``shard_of``); training fits the panel (``engine.panel_fit``) and
saves one version (``core.panel_artifact.save_panel``); evaluation backtests challenger, champion and
seasonal naive on shared cutoffs, gates on the panel's mean MASE and exports the forecast and the
per-item backtest with ``item_id`` first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.cleaning import rules_skipped
from pipeline_code.engine.core.spec import season_period
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.preprocess import min_history, preprocess
from pipeline_code.engine.profile import header_names
from pipeline_code.engine.settings import COMBINATION, PAIR, PER_SERIES, Settings
from pipeline_code.pipeline.layout import BACKTEST_FILE, TUNING_FILE

# Processed shard files: train/series-00000.csv, ... (one per series.instances), the same names
# under test/, so shard k of both channels holds the same items.
SHARD_FILE = "series-{:05d}.csv"
# Items a gate reason names (the rest are counted).
SHOWN_ITEMS = 5
# Items listed by name in a report; past this many a report gives the count and the first ones.
REPORT_ITEMS = 1000
# Bytes read to tell a panel upload from one series (the header and the first row).
SNIFF_BYTES = 64 * 1024


# --- detection --------------------------------------------------------------------------------

def is_panel_upload(path: Path, settings: Settings) -> bool:
    """A panel: an ``item_id`` column, or Amazon Forecast's target time series layout (a
    ``target_value`` header, or no header and ``series.columns`` fields with a date where the
    timestamp goes). Anything else is one series, read exactly as before panels existed."""
    from pipeline_code.engine.panel_data import ITEM, TARGET_VALUE, TIMESTAMP

    with Path(path).open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    try:
        first = next(csv.reader(io.StringIO(head.decode("utf-8-sig", errors="replace"))), [])  # as parsing reads it
    except csv.Error:
        return False
    cells = header_names(first)  # as parsing reads them
    if ITEM in cells or TARGET_VALUE in cells:
        return True
    if TIMESTAMP in cells or len(cells) != len(settings.series.columns):
        return False  # one series, or a header today's contract names the fault of
    stamp = cells[settings.series.columns.index(TIMESTAMP)]
    return len(stamp) >= 10 and stamp[4] == "-" and stamp[7] == "-" and stamp[:4].isdigit()


def is_panel_folder(folder: Path) -> bool:
    """A processed folder written for a panel (its CSV files start with ``item_id``)."""
    files = _csv_files(folder)
    if not files:
        return False
    with files[0].open() as handle:
        return handle.readline().startswith("item_id,")


def job_processes(train_dir: Path) -> int:
    """Processes for a SageMaker job's stage: a panel's series spread over every core of the instance;
    one series keeps its one process, as before panels."""
    return (os.cpu_count() or 1) if is_panel_folder(train_dir) else 1


def _csv_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*.csv") if p.is_file() and not p.name.startswith("."))


# --- processing -------------------------------------------------------------------------------

def process_panel(source: Path, out: Path, settings: Settings, *, jobs: int = 1) -> dict[str, Any]:
    """Validate the panel, run the outlier and break rules per series, split each series' last
    ``horizon`` periods off as test, write the shards under ``train/`` and ``test/`` and the report."""
    from pipeline_code.engine.panel_data import load_panel
    from pipeline_code.engine.settings import check_offered

    check_offered(settings, panel=True)  # series.families and series.fallback offer a model
    panel = load_panel(source, settings=settings)
    cleaned = preprocess_panel(panel, settings, jobs=jobs)
    horizon = settings.data.horizon
    parts = {"train": ({}, {}), "test": ({}, {})}
    for item in panel.items:
        series, columns = panel.series[item], cleaned[item]["columns"]
        cut = max(0, len(series) - horizon)
        for part, lo, hi in (("train", 0, cut), ("test", cut, len(series))):
            if hi > lo:
                parts[part][0][item] = Series(series.timestamps[lo:hi], series.values[lo:hi], series.freq)
                parts[part][1][item] = {name: values[lo:hi] for name, values in columns.items()}
    shards = settings.series.instances
    for part, (series, extra) in parts.items():
        write_shards(out / part, replace(panel, series=series, fills={}), extra, shards)
    report = panel_report(panel, cleaned, settings)
    report.update({
        "source": Path(source).name,
        "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest(),
        "train_observations": sum(len(s) for s in parts["train"][0].values()),
        "test_observations": sum(len(s) for s in parts["test"][0].values()),
        "shards": shards,
        "settings": settings.to_dict(),
    })
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "processing.json").write_text(json.dumps(report, indent=1))
    return report


def preprocess_panel(panel, settings: Settings, *, jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Each series through ``engine.preprocess`` (robust STL outliers, the break episode and its
    counterfactual), spread over ``jobs`` processes; a series the rules cannot run on (too short for
    STL, zeros or negatives for the log scale, constant) is kept as observed, with the reason."""
    work = [panel.series[item] for item in panel.items]
    if jobs > 1 and len(work) > 4 * jobs and settings.series.preprocess:
        from pipeline_code.engine.workers import worker_pool

        chunk = max(1, len(work) // (8 * jobs))
        with worker_pool(jobs, _no_setup) as pool:
            results = list(pool.map(_preprocess_item, work, [settings] * len(work), chunksize=chunk))
    else:
        results = [_preprocess_item(series, settings) for series in work]
    return dict(zip(panel.items, results))


def _no_setup() -> None:
    """Workers need no state: each task carries its series and settings."""


def _preprocess_item(series: Series, settings: Settings) -> dict[str, Any]:
    values = series.values
    period = season_period(settings.data.season_length)
    skip = None
    if not settings.series.preprocess:
        skip = "series.preprocess is off"
    elif reason := rules_skipped(settings):  # no season for robust STL
        skip = reason
    elif np.ptp(values) == 0:
        skip = "constant"
    elif values.min() <= 0:
        skip = "zero or negative values (the rules work on the log scale)"
    elif len(values) < min_history(period):
        skip = f"{len(values)} observations; the rules need {min_history(period)} (two seasons and two)"
    if skip is not None:
        zeros = np.zeros(len(values), dtype=int)
        return {"columns": {"value_counterfactual": values, "is_counterfactual": zeros, "is_outlier": zeros},
                "skipped": skip}
    pre = preprocess(series, settings.data.season_length, settings.preprocess)
    summary = pre.report()
    return {"columns": pre.columns(), "outliers": summary["outliers"], "episode": summary["episode"],
            "note": summary["note"]}


def panel_report(panel, cleaned: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """What processing saw and did: lengths, and per item where something happened (fills, constant
    and too-short series, rules skipped, outliers, break episodes)."""
    from pipeline_code.engine.panel_series import min_train

    lengths = {item: len(panel.series[item]) for item in panel.items}
    (before, rule), horizon = min_train(season_period(settings.data.season_length)), settings.data.horizon
    need = before + horizon  # one CV split: its training values before a cutoff, a horizon after
    starts = [panel.series[item].timestamps[0] for item in panel.items]
    skipped = {item: c["skipped"] for item, c in cleaned.items() if "skipped" in c}
    return {
        "panel": True,
        "series": len(panel.items),
        "freq": panel.freq,
        "observations": sum(lengths.values()),
        "start": min(starts).isoformat(),
        "end": panel.end.isoformat(),
        "shortest": min(lengths.values()),
        "longest": max(lengths.values()),
        "fills": _listed(panel.fills),
        "filled_points": {kind: sum(f.get(kind, 0) for f in panel.fills.values()) for kind in ("middle", "end")},
        "constant": _listed(panel.report()["constant"]),
        "too_short": _listed({item: f"{n} observations; a CV split needs {need} ({rule}"
                              f" before a cutoff, a horizon of {horizon} after it): series.fallback"
                              for item, n in lengths.items() if n < need}),
        "rules_skipped": _listed(skipped),
        "outliers": _listed({item: c["outliers"] for item, c in cleaned.items() if c.get("outliers")}),
        "episodes": _listed({item: c["episode"] for item, c in cleaned.items() if c.get("episode")}),
        "episode": None,  # the one-series key: a panel's episodes are per item, above
    }


def _listed(items):
    """A report's per-item entry, at most REPORT_ITEMS of them (with the count when cut)."""
    if len(items) <= REPORT_ITEMS:
        return items
    if isinstance(items, dict):
        head = dict(list(items.items())[:REPORT_ITEMS])
    else:
        head = list(items)[:REPORT_ITEMS]
    return {"count": len(items), "first": head}


def write_shards(folder: Path, panel, extra: dict[str, dict[str, np.ndarray]], shards: int) -> list[Path]:
    """The panel's long CSV in ``shards`` files by ``shard_of(item_id)``; every shard file is written
    (header only when no item falls in it), so each instance finds its file."""
    from pipeline_code.engine.panel_data import shard_of, write_panel_csv

    folder.mkdir(parents=True, exist_ok=True)
    groups: list[list[str]] = [[] for _ in range(shards)]
    for item in panel.items:
        groups[shard_of(item, shards)].append(item)
    paths = []
    for index, items in enumerate(groups):
        path = folder / SHARD_FILE.format(index)
        part = replace(panel, series={item: panel.series[item] for item in items},
                       fills={item: panel.fills[item] for item in items if item in panel.fills})
        write_panel_csv(path, part, {item: extra[item] for item in items})
        paths.append(path)
    return paths


def read_processed_panel(*folders: Path, freq: str):
    """Processed shard files of ``folders`` (train/, then test/) as one panel, each item's pieces
    joined in time, and each item's counterfactual series (``value_counterfactual``)."""
    from pipeline_code.engine.dataset import DataValidationError
    from pipeline_code.engine.panel_data import Panel, read_panel_csv

    pieces: dict[str, list[tuple[Series, np.ndarray]]] = {}
    for folder in folders:
        for path in _csv_files(folder):
            part, extra = read_panel_csv(path, freq)
            for item in part.items:
                if "value_counterfactual" not in extra.get(item, {}):
                    raise DataValidationError("processed", f"{path.name} is not a processed panel file")
                pieces.setdefault(item, []).append((part.series[item], extra[item]["value_counterfactual"]))
    if not pieces:
        raise DataValidationError("processed", f"no series under {', '.join(Path(f).name for f in folders)}")
    series, counterfactual = {}, {}
    for item in sorted(pieces):
        chunks = sorted(pieces[item], key=lambda chunk: chunk[0].timestamps[0])
        series[item] = Series([t for s, _ in chunks for t in s.timestamps],
                              np.concatenate([s.values for s, _ in chunks]), freq)
        counterfactual[item] = np.concatenate([c for _, c in chunks])
    return Panel(series=series, freq=freq, single=False, fills={}), counterfactual


# --- tuning and training ----------------------------------------------------------------------

def tune_panel(train_dir: Path, report_dir: Path, settings: Settings, *, jobs: int = 1) -> dict[str, Any]:
    """The local search over the global choices on the train part (``panel_tuning``: every family choice
    at each history and scale, scored off one per-series fit, as the cloud's trials score them); the
    best, and every candidate's score in ``tuning.json``."""
    from time import perf_counter

    from pipeline_code.engine.panel_series import min_train
    from pipeline_code.pipeline.panel_tuning import best_choice, score_choices
    from pipeline_code.pipeline.trial_files import UNSCORED

    started = perf_counter()
    panel, counterfactual = read_processed_panel(train_dir, freq=settings.data.freq)
    scored = [c for history in settings.panel_histories() for scale in settings.panel_scales()
              for c in score_choices(panel, counterfactual, settings, history, scale, jobs=jobs)]
    chosen = best_choice(scored, settings)
    best = chosen["best"]
    result = {"hyperparameters": best["hyperparameters"], "cv_mase": best["cv_mase"], "candidates": chosen["candidates"],
              "series": len(panel.items), "objective": "panel mean CV MASE (rolling choice)",
              "seconds": round(perf_counter() - started, 3)}
    if best["cv_mase"] == UNSCORED:
        tuning = settings.tuning()
        result["unscored"] = (f"no global choice scored on the panel's cutoffs (no series is long enough "
                              f"for a split of {tuning.series.cutoffs} cutoffs of horizon {settings.data.horizon} "
                              f"after {min_train(season_period(settings.data.season_length))[1]}, or every "
                              f"choice failed): every series gets "
                              f"series.fallback ({settings.series.fallback})")
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / TUNING_FILE).write_text(json.dumps(result, indent=1))
    return result


def train_panel(
    train_dir: Path, test_dir: Path, hyperparameters: dict[str, Any], model_dir: Path, settings: Settings,
    report_dir: Path | None = None, *, jobs: int = 1, whole: tuple[Any, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Fit every series of train + test with the global choices in ``hyperparameters`` (a model per
    series inside) and save one panel version to ``model_dir``; the fit's report (per item: family,
    CV MASE, fallback reason) goes to ``report_dir/panel_fit.json``. Returns the CV metrics, with
    ``cv_mase`` the panel objective. ``whole``: the whole panel when these folders hold one shard
    of it (``panel_fit.fit_panel``)."""
    from pipeline_code.engine.core.artifact import finite, plain
    from pipeline_code.engine.panel_fit import choice_from_hyperparameters, fit_panel

    panel, counterfactual = read_processed_panel(train_dir, test_dir, freq=settings.data.freq)
    fitted = fit_panel(panel, settings, choice=choice_from_hyperparameters(hyperparameters), jobs=jobs,
                       counterfactual=counterfactual, whole=whole)
    metrics = {**fitted.metadata["metrics"], "cv_mase": fitted.objective}
    save_fitted(model_dir, fitted, panel, metrics, settings)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        # An undefined score (a fallback item's CV MASE) is null: bare NaN is not JSON.
        (report_dir / "panel_fit.json").write_text(
            json.dumps(finite(plain(fitted.report)), indent=1, default=str, allow_nan=False))
    return metrics


# The run document's sections that define a panel's model (its families, fallback, search and windows):
# a later run backtests an approved panel under its own, not under the later run's.
MODEL_SECTIONS = ("series", "search", "preprocess", "cv")


def save_fitted(folder: Path, fitted, panel, metrics: dict[str, Any], settings: Settings) -> Path:
    """One panel version: every item's model, the fit's metadata, a name from its family choice, its
    global choices as ``hyperparameters`` and the settings sections that define them (what a later
    run backtests it by), the data's end and digest."""
    from pipeline_code.engine.core.panel_artifact import save_panel

    choice = fitted.metadata["choice"]
    defining = {name: section for name, section in settings.to_dict().items() if name in MODEL_SECTIONS}
    return save_panel(folder, fitted.artifacts, {
        **fitted.metadata, "name": "panel-" + choice["family"].replace("_", "-"), "hyperparameters": choice,
        "model_settings": defining, "metrics": metrics, "end": panel.end.isoformat(),
        "data_sha256": panel_digest(panel)})


def model_settings(settings: Settings, metadata: dict[str, Any]) -> Settings:
    """``settings`` (this run's data, cutoffs and gate) with the model-defining sections a saved panel
    was fitted under, when it recorded them (versions from before this record use this run's)."""
    return settings.merged(metadata.get("model_settings") or {}, "the approved panel's settings")


def panel_digest(panel) -> str:
    """SHA-256 over every item's id, timestamps and values (what a version was trained on)."""
    digest = hashlib.sha256()
    for item in panel.items:
        series = panel.series[item]
        digest.update(item.encode() + b"\0" + series.timestamps[0].isoformat().encode())
        digest.update(np.ascontiguousarray(series.values, dtype=float).tobytes())
    return digest.hexdigest()


# --- evaluation -------------------------------------------------------------------------------

def item_changes(approved: list[str], uploaded: list[str], passed: bool) -> str:
    """What the gate's reason adds when the upload's items differ from the approved model's: the new
    items and the ones no longer uploaded (named up to ``SHOWN_ITEMS``), and what serves them."""
    new, gone = sorted(set(uploaded) - set(approved)), sorted(set(approved) - set(uploaded))
    parts = []
    if new:
        parts.append(f"{len(new)} new item{'s' if len(new) > 1 else ''} ({_named(new)})"
                     + ("" if passed else ", not served (the approved model has no model of them: 404)"))
    if gone:
        parts.append(f"{len(gone)} approved item{'s' if len(gone) > 1 else ''} not in this upload ({_named(gone)})"
                     + (", no longer served" if passed else ", still served from the approved model"))
    return f"; {'; '.join(parts)}" if parts else ""


def _named(items: list[str]) -> str:
    shown = ", ".join(repr(i) for i in items[:SHOWN_ITEMS])
    return shown + (f" and {len(items) - SHOWN_ITEMS} more" if len(items) > SHOWN_ITEMS else "")


def evaluate_panel(
    train_dir: Path, test_dir: Path, model_dir: Path, champion_dir: Path | None, out: Path,
    settings: Settings, *, jobs: int = 1,
) -> dict[str, Any]:
    """Backtest challenger, champion and seasonal naive on the panel's shared cutoffs; gate on the
    panel's mean MASE (a first run serves the best contender, as for one series); export the
    forecast and the served contender's per-item backtest."""
    from pipeline_code.engine.core.panel_artifact import PanelModel, is_panel
    from pipeline_code.engine.evaluation import gate, hold_older_data, same_candidate
    from pipeline_code.engine.families.seasonal_naive import NAME as SEASONAL_NAIVE
    from pipeline_code.engine.panel_cv import panel_cutoffs
    from pipeline_code.engine.panel_fit import backtest_panel, cutoff_step, fit_panel
    from pipeline_code.pipeline.layout import EVALUATION_FILE, FORECAST_FILE
    from pipeline_code.pipeline.stages import SERVED_MODEL_DIR

    panel, counterfactual = read_processed_panel(train_dir, test_dir, freq=settings.data.freq)
    challenger = PanelModel.load(model_dir)
    champion = PanelModel.load(champion_dir) if champion_dir is not None and is_panel(champion_dir) else None
    horizon = settings.data.horizon
    cutoffs = panel_cutoffs(panel, horizon=horizon, cutoffs=settings.series.cutoffs, step=cutoff_step(settings))
    naive = {"family": SEASONAL_NAIVE}

    def backtest(choice: dict[str, str]):
        return backtest_panel(panel, settings_for(settings, choice), choice=choice, cutoffs=cutoffs, jobs=jobs)

    spec = challenger.metadata.get("hyperparameters", {})
    runs = {"challenger": backtest(spec), "seasonal_naive": backtest(naive)}
    if champion is not None:  # scored as it was fitted: its own families, fallback and search
        champion_settings = model_settings(settings, champion.metadata)
        runs["champion"] = backtest_panel(
            panel, settings_for(champion_settings, champion.metadata.get("hyperparameters", {})),
            choice=champion.metadata.get("hyperparameters", {}), cutoffs=cutoffs, jobs=jobs)
    results = {name: cv.panel for name, cv in runs.items()}
    decision = gate(
        results["challenger"], results.get("champion"), results["seasonal_naive"],
        min_improvement=settings.gate.min_improvement,
        same_spec=champion is not None and same_candidate(champion.metadata.get("hyperparameters"), spec)
        and champion.metadata.get("model_settings") == challenger.metadata.get("model_settings")
        and str(challenger.metadata.get("end", "")) > str(champion.metadata.get("end", "")),
        other_kind_approved=champion_dir is not None and champion is None,
    )
    if champion_dir is not None and champion is None:
        decision["reason"] += "; the approved model holds one series, so this panel is compared with seasonal naive only"
    if champion is not None:
        decision = hold_older_data(decision, data_end=str(challenger.metadata.get("end", "")),
                                   approved_end=str(champion.metadata.get("end", "")))
        decision["reason"] += item_changes(champion.items, challenger.items, decision["passed"])
    served, served_cv = challenger, runs["challenger"]
    if decision["serve"] == SEASONAL_NAIVE:
        naive_settings = settings_for(settings, naive)
        fitted = fit_panel(panel, naive_settings, choice=naive, jobs=jobs, counterfactual=counterfactual)
        save_fitted(out / SERVED_MODEL_DIR, fitted, panel,
                    {f"backtest_{k}": v for k, v in results["seasonal_naive"].items()}, naive_settings)
        served, served_cv = PanelModel.load(out / SERVED_MODEL_DIR), runs["seasonal_naive"]
    evaluation = {
        "gate": decision,
        "challenger": results["challenger"],
        "champion": results.get("champion"),
        "seasonal_naive": results["seasonal_naive"],
        "spec": spec,
        "champion_spec": champion.metadata.get("hyperparameters") if champion else None,
        "champion_version": champion.metadata.get("version") if champion else None,
        "served_family": served.metadata["hyperparameters"]["family"] if decision["passed"] else None,
        "backtest": {
            "cutoffs": [c.isoformat() for c in cutoffs], "horizon": horizon,
            "series": len(panel.items), "target": "each item's processed series (fills included)",
            "export": BACKTEST_FILE,
        },
        "panel": True,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=1))
    export_panel_forecast(served, horizon, settings.gate.coverage_levels, out / FORECAST_FILE)
    export_backtest(served_cv, out / BACKTEST_FILE)
    return evaluation


def export_panel_forecast(model, periods: int, levels: tuple[float, ...], path: Path) -> Path:
    """The batch forecast of every item: ``item_id``, then the one-series columns (timestamp, mean,
    lower/upper per interval level), items in order."""
    from pipeline_code.pipeline.stages import forecast_header, forecast_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["item_id", *forecast_header(levels)])
        for item in model.items:
            for row in forecast_rows(model.forecaster(item), periods, levels):
                writer.writerow([item, *row])
    return path


def export_backtest(cv, path: Path) -> Path:
    """Each item's backtest: per origin (cutoff) and step, the forecast, the actual and the interval
    bounds, streamed (a large panel has millions of rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = None
        for row in cv.rows():
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow(row)
    return path


def settings_for(settings: Settings, choice: dict[str, str]) -> Settings:
    """The settings a global choice runs under: one family for every series (seasonal naive as the
    baseline, or an approved model's) forecasts that family alone, even one ``series.families`` lacks;
    an approved model's history and scale are allowed though this run's ``search`` lacks them."""
    name = choice.get("family", PER_SERIES)
    for key, kept in (("history", "histories"), ("scale", "scales")):
        value, allowed = choice.get(key), getattr(settings.search, kept)
        if value is not None and value not in allowed:
            settings = replace(settings, search=replace(settings.search, **{kept: (*allowed, value)}))
    if name in (PER_SERIES, COMBINATION):
        return settings
    if PAIR in name:  # a pair is offered beside the fallback (Settings.panel_pairs)
        families = tuple(dict.fromkeys((settings.series.fallback, *name.split(PAIR))))
        return replace(settings, series=replace(settings.series, families=families))
    return replace(settings, series=replace(settings.series, families=(name,)))
