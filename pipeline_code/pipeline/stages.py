"""The pipeline's stages as functions of folders: what the SageMaker entrypoints and the local runner
both call, so a local run and a cloud run execute the same code on the same file layout.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_code.engine.cv import CVResult, cross_validate_candidate
from pipeline_code.engine.dataset import DataValidationError, Series, fmt, load_series
from pipeline_code.engine.estimator import FitResult, ModelEstimator
from pipeline_code.engine.evaluation import (
    backtest_candidate, backtest_origins, backtest_seasonal_naive, diagnostics, gate, hold_older_data,
    innovations, same_candidate,
)
from pipeline_code.engine.core.artifact_checks import ModelCheckError, check_forecasts
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.families.base import Context
from pipeline_code.engine.families.harmonic import NAME as HARMONIC
from pipeline_code.engine.families.seasonal_naive import NAME as SEASONAL_NAIVE
from pipeline_code.engine.cleaning import check_variation, clean
from pipeline_code.engine.settings import Settings, check_offered
from pipeline_code.engine.tuning import selection_grid
from pipeline_code.pipeline.layout import EVALUATION_FILE, FORECAST_FILE
from pipeline_code.pipeline.runs import describe_spec

TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"
# Where evaluation writes the model to approve when it is not the challenger (a first run whose
# challenger loses to seasonal naive serves seasonal naive), inside its output folder.
SERVED_MODEL_DIR = "served-model"


def find_input_csv(path: Path) -> Path:
    """The CSV to process: ``path`` itself, or the one CSV inside the folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) != 1:
        raise DataValidationError("input", f"expected one CSV file in the input, found {len(files)}")
    return files[0]


# --- processing -------------------------------------------------------------------------------

def run_processing(raw: Path, out: Path, settings: Settings, *, jobs: int = 1) -> dict[str, Any]:
    """Validate, flag outliers, replace the break episode, split; write train/, test/, report/.
    A panel upload (many series) goes through ``panel_stages``, series spread over ``jobs`` processes."""
    source = find_input_csv(raw)
    from pipeline_code.pipeline import panel_stages

    if panel_stages.is_panel_upload(source, settings):
        return panel_stages.process_panel(source, out, settings, jobs=jobs)
    check_offered(settings, panel=False)  # before any work, as the starter Lambda
    try:
        series = load_series(
            source,
            freq=settings.data.freq,
            min_length=settings.min_observations(),
            max_bytes=settings.data.max_file_bytes,
            max_gap_periods=settings.data.max_gap_periods,
        )
    except DataValidationError as err:
        if err.rule == "too-short":  # say which rule sets the minimum
            raise DataValidationError(
                err.rule, f"{err.message}; the run settings need {settings.min_observations_rule()}") from err
        raise
    filled = {"middle": series.filled, "end": 0}  # as a panel's filled_points; only tolerated gaps are filled
    unused, older = {}, len(series) - settings.data.max_rows  # all rows validated; the latest max_rows used
    if older > 0:
        series = series.tail(settings.data.max_rows)
        unused = {"older_rows_unused": f"the {older} oldest of {len(series) + older} observations are not"
                                       f" used (data.max_rows {settings.data.max_rows})"}
    check_variation(series, settings)  # constant, or periodic, even but for outliers: refused
    pre, rules = clean(series, settings)  # the rules need a season: skipped, with the reason, without one
    train, test = pre.split(settings.data.horizon)
    for part, name, folder in ((train, TRAIN_FILE, "train"), (test, TEST_FILE, "test")):
        (out / folder).mkdir(parents=True, exist_ok=True)
        part.series.to_csv(out / folder / name, extra=part.columns())
    report = {
        **pre.report(),
        **rules,
        **unused,
        "filled_points": filled,
        "source": source.name,
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "train_observations": len(train.series),
        "test_observations": len(test.series),
        "settings": settings.to_dict(),
    }
    (out / "report").mkdir(parents=True, exist_ok=True)
    (out / "report" / "processing.json").write_text(json.dumps(report, indent=1))
    return report


@dataclass
class Processed:
    """A processed CSV read back: the observed series and its counterfactual version."""

    series: Series
    counterfactual: np.ndarray

    def choose(self, use_counterfactual: bool) -> Series:
        values = self.counterfactual if use_counterfactual else self.series.values
        return Series(self.series.timestamps, values, self.series.freq)

    @property
    def data(self) -> dict[bool, np.ndarray]:
        """Training series by ``use_counterfactual_data``."""
        return {False: self.series.values, True: self.counterfactual}

    def __add__(self, other: "Processed") -> "Processed":
        s, o = self.series, other.series
        return Processed(
            Series(s.timestamps + o.timestamps, np.concatenate([s.values, o.values]), s.freq),
            np.concatenate([self.counterfactual, other.counterfactual]),
        )


def read_processed(folder: Path, freq: str) -> Processed:
    """Read ``train.csv``/``test.csv`` (or the one CSV) written by processing."""
    path = find_input_csv(folder)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "value_counterfactual" not in rows[0]:
        raise DataValidationError("processed", f"{path.name} is not a processed file")
    series = Series(
        [date.fromisoformat(r["timestamp"]) for r in rows],
        np.array([float(r["value"]) for r in rows]),
        freq,
    )
    return Processed(series, np.array([float(r["value_counterfactual"]) for r in rows]))


# --- training ---------------------------------------------------------------------------------

def run_training(
    train_dir: Path, test_dir: Path, hyperparameters: dict[str, Any], model_dir: Path,
    settings: Settings, report_dir: Path | None = None, *, jobs: int = 1,
) -> dict[str, Any]:
    """Cross-validate one candidate (of any family, or a combination) on the train part's selection
    splits (the objective, the same as the tuner's) and fit the final model on train + test; write
    the artifact to ``model_dir``. Returns the CV metrics. A processed panel is fitted by
    ``panel_stages.train_panel`` (one version holding every series)."""
    from pipeline_code.pipeline import panel_stages

    if panel_stages.is_panel_folder(train_dir):
        return panel_stages.train_panel(train_dir, test_dir, hyperparameters, model_dir, settings,
                                        report_dir, jobs=jobs)
    fit = fit_ranked(train_dir, test_dir, [hyperparameters], model_dir, settings, report_dir, jobs=jobs)
    return fit["metrics"]


# How many candidates of the tune's ranking ``fit_ranked`` tries, its choice first (docs/design.md,
# "Select"): one of the best two members of the served equal top 3 that fails makes every default
# combination fail (equal top 2 and 3, fitted weights), and its own candidate, before the next one fits.
FIT_TRIES = 5


def fit_ranked(
    train_dir: Path, test_dir: Path, ranking: list[dict[str, Any]], model_dir: Path,
    settings: Settings, report_dir: Path | None = None, *, jobs: int = 1,
) -> dict[str, Any]:
    """Fit one series' model as ``run_training`` does: the first candidate of ``ranking`` (hyperparameters,
    the tune's choice first: ``TuningResult.ranking``) that fits and passes serving's forecast check
    (``check_forecasts``), trying at most ``FIT_TRIES``. When candidates fit but none passes the check, the
    first of them is written all the same: evaluation's gate then decides (on a first run, seasonal naive
    serves if it can). Returns the record: ``chosen`` (the tune's choice), ``hyperparameters`` (the
    candidate fitted), ``failed`` (each candidate that failed or was passed over before it, or, when none
    passes the check, every one tried: ``hyperparameters``, ``reason``) and ``metrics`` (its CV metrics).
    ValueError naming every candidate tried when none fits."""
    train = read_processed(train_dir, settings.data.freq)
    full = train + read_processed(test_dir, settings.data.freq)
    ctx = Context.from_settings(settings, jobs=jobs)
    failed: list[dict[str, Any]] = []
    unservable = None  # the first candidate that fitted but failed the check
    for hyperparameters in ranking[:FIT_TRIES]:
        try:
            fitted, objective = _fit_candidate(hyperparameters, train, full, ctx, settings)
            check_forecasts(fitted.forecaster, settings.serve.max_periods)
        except DataValidationError:
            raise  # the data's, not the candidate's: no other candidate would do
        except ModelCheckError as err:
            failed.append({"hyperparameters": hyperparameters, "reason": f"{type(err).__name__}: {err}"})
            unservable = unservable or (hyperparameters, fitted, objective)
            continue
        except Exception as err:  # noqa: BLE001 - as the tune scores a fit (statsforecast raises Exception)
            failed.append({"hyperparameters": hyperparameters, "reason": f"{type(err).__name__}: {err}"})
            continue
        _write_model(fitted, objective, train, model_dir, settings, report_dir)
        return {"chosen": ranking[0], "hyperparameters": hyperparameters, "failed": failed,
                "metrics": fitted.artifact.metadata["metrics"]}
    if unservable is None:
        raise ValueError(_none_fitted(failed, len(ranking)))
    hyperparameters, fitted, objective = unservable
    _write_model(fitted, objective, train, model_dir, settings, report_dir)
    return {"chosen": ranking[0], "hyperparameters": hyperparameters, "failed": failed,
            "metrics": fitted.artifact.metadata["metrics"]}


def _fit_candidate(hyperparameters: dict[str, Any], train: Processed, full: Processed, ctx: Context,
                   settings: Settings) -> tuple[FitResult, CVResult]:
    """The candidate cross-validated on the train part's selection splits and fitted on train + test (its
    CV metrics, diagnostics and data digest in the artifact's metadata), and that CV."""
    candidate = {"family": HARMONIC, **hyperparameters}
    objective = cross_validate_candidate(
        train.data, train.counterfactual, candidate, selection_grid(len(train.series), settings), ctx)
    if objective.failed.any():
        raise ValueError(f"the {candidate['family']} candidate failed to fit: {objective.forecasts.reason}")
    fitted = ModelEstimator(candidate, ctx, step=settings.cv.step,
                            splits=settings.search.selection_splits).fit(
        full.series, counterfactual=full.counterfactual)
    fitted.artifact.metadata["metrics"] = {f"cv_{k}": v for k, v in objective.metrics().items()}
    fitted.artifact.metadata["diagnostics"] = _diagnostics(fitted, full, settings)
    fitted.artifact.metadata["data_sha256"] = _digest(full.series.values)
    return fitted, objective


def _write_model(fitted: FitResult, objective: CVResult, train: Processed, model_dir: Path,
                 settings: Settings, report_dir: Path | None) -> None:
    """The artifact to ``model_dir`` and, with ``report_dir``, its CV plot."""
    fitted.artifact.save(model_dir)
    if report_dir is not None:
        from pipeline_code.engine.plots import plot_cv

        plot_cv(report_dir / "cv.png", train.series.timestamps, train.counterfactual, objective,
                window=settings.cv.window)


def _none_fitted(failed: list[dict[str, Any]], ranked: int) -> str:
    """Why no candidate was fitted: each one tried, with its reason."""
    tried = f"{len(failed)} tried" + (f", of {ranked} ranked" if ranked > len(failed) else "")
    reasons = "; ".join(f"{describe_spec(f['hyperparameters'])}: {f['reason']}" for f in failed)
    return f"no candidate fitted ({tried}): {reasons}"


def _diagnostics(fitted, full: Processed, settings: Settings) -> dict[str, Any]:
    """Residual tests: the harmonic model's one-step innovations over its window; for other families,
    the one-step out-of-sample CV errors (log scale)."""
    artifact = fitted.artifact
    if artifact.family == HARMONIC:
        hp = artifact.metadata["hyperparameters"]
        window = np.log(full.choose(bool(int(hp["use_counterfactual_data"]))).values[-settings.cv.window:])
        resid = innovations(fitted.forecaster, window)
        params = artifact.parameters
        arma_params = int(np.count_nonzero(params["phi"])) + int(params["theta"] != 0)
    else:
        resid, arma_params = fitted.cv.log_errors[:, 0], 0
    out = diagnostics(resid, settings.data.season_length, arma_params)
    out["residuals"] = "innovations" if artifact.family == HARMONIC else "one-step CV errors"
    return out


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=float).tobytes()).hexdigest()


# --- evaluation -------------------------------------------------------------------------------

def run_evaluation(
    train_dir: Path, test_dir: Path, model_dir: Path, champion_dir: Path | None, out: Path,
    settings: Settings, *, jobs: int = 1,
) -> dict[str, Any]:
    """Backtest challenger, champion and seasonal naive on the same origins; gate; export forecast.

    With no approved model, the run serves the best contender: when seasonal naive beats the
    challenger, its model is fitted and written to ``out/served-model`` (``served_model_dir``).
    A processed panel is evaluated by ``panel_stages.evaluate_panel``.
    """
    from pipeline_code.pipeline import panel_stages

    if panel_stages.is_panel_folder(train_dir):
        return panel_stages.evaluate_panel(train_dir, test_dir, model_dir, champion_dir, out, settings, jobs=jobs)
    from pipeline_code.engine.core.panel_artifact import is_panel

    full = read_processed(train_dir, settings.data.freq) + read_processed(test_dir, settings.data.freq)
    challenger = Forecaster.load(model_dir)
    # An approved panel holds no model of this one series: it then faces seasonal naive only.
    other_kind = champion_dir is not None and is_panel(champion_dir)
    champion = Forecaster.load(champion_dir) if champion_dir is not None and not other_kind else None
    horizon, window = settings.data.horizon, settings.cv.window
    levels = settings.gate.scored_levels
    origins = backtest_origins(len(full.series), horizon=horizon, origins=settings.gate.eval_origins)
    target = full.counterfactual
    ctx = Context.from_settings(settings, jobs=jobs)

    def score(forecaster: Forecaster, name: str) -> dict[str, float]:
        return backtest_candidate(
            full.data, target, forecaster.hyperparameters, ctx, origins=origins, levels=levels,
            name=name, step=settings.cv.step, splits=settings.search.selection_splits,
        ).metrics()

    results = {"challenger": score(challenger, "challenger")}
    results["champion"] = score(champion, "champion") if champion else None
    baseline = backtest_seasonal_naive(
        target, ctx.period, window=window, horizon=horizon, origins=origins, levels=levels,
    )
    results["seasonal_naive"] = baseline.metrics()
    decision = gate(
        results["challenger"], results["champion"], results["seasonal_naive"],
        min_improvement=settings.gate.min_improvement,
        same_spec=champion is not None and same_candidate(champion.hyperparameters, challenger.hyperparameters)
        and _trained_until(challenger) > _trained_until(champion),
        other_kind_approved=other_kind,
    )
    if other_kind:
        decision["reason"] += "; the approved model is a panel, so this series is compared with seasonal naive only"
    if champion is not None:
        decision = hold_older_data(decision, data_end=_trained_until(challenger), approved_end=_trained_until(champion))
    if decision["serve"] == "challenger":
        decision = _servable(decision, challenger, settings, first_run=champion is None and not other_kind)
    served = challenger
    if decision["serve"] == SEASONAL_NAIVE:
        fitted = ModelEstimator({"family": SEASONAL_NAIVE, "use_counterfactual_data": 1}, ctx,
                                step=settings.cv.step).fit(full.series, counterfactual=full.counterfactual)
        fitted.artifact.metadata["metrics"] = {f"backtest_{k}": v for k, v in results["seasonal_naive"].items()}
        fitted.artifact.metadata["data_sha256"] = _digest(full.series.values)
        decision = _servable(decision, fitted.forecaster, settings, first_run=False)
        fitted.artifact.save(out / SERVED_MODEL_DIR)
        served = fitted.forecaster
    ts = full.series.timestamps
    evaluation = {
        "gate": decision,
        **results,
        "spec": challenger.hyperparameters,
        "champion_spec": champion.hyperparameters if champion else None,
        "champion_version": champion.metadata.get("version") if champion else None,
        "served_family": served.artifact.family if decision["passed"] else None,
        "backtest": {
            "origins": int(origins.size), "horizon": horizon, "window": window,
            "first_origin": ts[int(origins[0])].isoformat(), "last_origin": ts[int(origins[-1])].isoformat(),
            "target": "counterfactual-cleaned series",
        },
        "diagnostics": challenger.metadata.get("diagnostics"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=1))
    export_forecast(served, horizon, settings.gate.coverage_levels, out / FORECAST_FILE)
    from pipeline_code.engine.plots import plot_forecast

    history = full.series.tail(3 * horizon * 2)
    plot_forecast(out / "forecast.png", (history.timestamps, history.values),
                  served.predict(horizon, max(levels)),
                  title=f"Forecast ({served.artifact.family.replace('_', ' ')})")
    return evaluation


def _servable(decision: dict[str, Any], forecaster: Forecaster, settings: Settings, *,
              first_run: bool) -> dict[str, Any]:
    """The gate's decision once the model to approve has passed serving's load check (finite forecasts
    up to ``serve.max_periods``): otherwise a first run serves seasonal naive, and any other is refused."""
    try:
        check_forecasts(forecaster, settings.serve.max_periods)
        return decision
    except ModelCheckError as err:
        cannot = f"the {decision['serve'].replace('_', ' ')} model cannot be served: {err}"
    if first_run:
        return {"passed": True, "serve": SEASONAL_NAIVE,
                "reason": f"no approved model yet; {cannot}; seasonal naive is approved and served instead"}
    return {"passed": False, "serve": None, "reason": f"{decision['reason']}; but {cannot}, so nothing is approved"}


def served_model_dir(model_dir: Path, evaluation_out: Path, evaluation: dict[str, Any]) -> Path:
    """The model folder to register: the challenger's, or the one evaluation chose to serve instead."""
    if evaluation["gate"].get("serve") == SEASONAL_NAIVE:
        return evaluation_out / SERVED_MODEL_DIR
    return model_dir


def _trained_until(forecaster: Forecaster) -> str:
    return str(forecaster.metadata.get("training", {}).get("end", ""))


def export_forecast(forecaster: Forecaster, periods: int, levels: tuple[float, ...], path: Path) -> Path:
    """The batch forecast CSV: timestamp, mean, and lower/upper per interval level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(forecast_header(levels))
        writer.writerows(forecast_rows(forecaster, periods, levels))
    return path


def forecast_header(levels: tuple[float, ...]) -> list[str]:
    """The forecast export's columns: timestamp, mean, lower/upper per interval level."""
    header = ["timestamp", "mean"]
    for level in levels:
        pct = round(level * 100)
        header += [f"lower_{pct}", f"upper_{pct}"]
    return header


def forecast_rows(forecaster: Forecaster, periods: int, levels: tuple[float, ...]) -> list[list[str]]:
    """One forecaster's export rows, in ``forecast_header``'s order, every value at full precision."""
    paths = {level: forecaster.predict(periods, level) for level in levels}
    first = next(iter(paths.values()))
    rows = []
    for i, stamp in enumerate(first.timestamps):
        row = [stamp.isoformat(), fmt(first.mean[i])]  # the shortest text that reads back the same float
        for level in levels:
            row += [fmt(paths[level].lower[i]), fmt(paths[level].upper[i])]
        rows.append(row)
    return rows
