"""Mutation check: each realistic engine bug below must make at least one test fail.

Run: ``python -m tests.mutation_check [name ...]`` (all mutations by default). Each mutation is
applied to a copy of ``pipeline_code/`` and ``tests/`` in a temporary folder (the working tree is never
touched), then the tests meant to catch it run there; the command lists the failing tests per mutation
and exits non-zero if a mutation survives or the unmutated copy does not pass.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    bug: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact text, replacement)
    tests: tuple[str, ...]


MUTATIONS = {
    "ma-term-dropped": Mutation(
        "forecasts drop the MA term of the ARIMA errors",
        (("pipeline_code/engine/core/arima.py",
          "w_hat = x_hat + np.asarray(theta, dtype=float)[:, None] * previous",
          "w_hat = x_hat + 0.0 * previous"),),
        ("tests/engine/test_model.py",)),
    "ma-term-dropped-from-variance": Mutation(
        "forecast variances drop the MA term (psi weights without theta)",
        (("pipeline_code/engine/core/arima.py",
          "psi[:, j] += np.asarray(theta, dtype=float)", "psi[:, j] += 0.0"),),
        ("tests/engine/test_model.py",)),
    "scale-look-ahead": Mutation(
        "each split's scale is calibrated with its own error",
        (("pipeline_code/engine/core/calibration.py",
          "scale = np.sqrt((e2[k] - e2[lo]) / count)", "scale = np.sqrt((e2[k + 1] - e2[lo + 1]) / count)"),),
        ("tests/engine/test_calibration.py",)),
    "no-local-scaling": Mutation(
        "the local error scaling is removed from training and backtests",
        (("pipeline_code/engine/estimator.py", "scales = local_scales(step1)", "scales = np.ones(step1.size)"),
         ("pipeline_code/engine/estimator.py", "error_scale = current_scale(", "error_scale = 1.0 or ("),
         ("pipeline_code/engine/evaluation.py", "scales = local_scales(log_errors[:, 0])",
          "scales = np.ones(log_errors.shape[0])")),
        ("tests/engine/test_calibration.py",)),
    "costly-calibration-thinned": Mutation(
        "a costly family is calibrated on splits spread over the history (a stale local scale)",
        (("pipeline_code/engine/estimator.py",
          "else grid[-(calibration_splits(candidate) + SCALE_WINDOW):]", "else grid[::-(grid.size // 30)][::-1]"),),
        ("tests/engine/test_calibration.py",)),
    "served-scale-horizon-old": Mutation(
        "the served scale ignores the one-step errors of the last horizon's origins",
        (("pipeline_code/engine/estimator.py", "np.concatenate([step1, self._recent_step1_errors(data, target, cv)])",
          "step1"),),
        ("tests/engine/test_calibration.py",)),
    "tail-as-a-known-normal": Mutation(
        "a tail beyond the calibration sample takes the errors' mean and spread as known (a normal)",
        (("pipeline_code/engine/core/calibration.py", "t = t_quantile(level, n - 1)",
          "t = NormalDist().inv_cdf(level)"),
         ("pipeline_code/engine/core/calibration.py", "* math.sqrt(1 + 1 / n)", "* 1.0")),
        ("tests/engine/test_calibration.py",)),
    "tail-inside-the-sample": Mutation(
        "the t tail past the sample may fall inside its extremes (a 95% interval inside the 80% one)",
        (("pipeline_code/engine/core/calibration.py",
          "return np.maximum(fitted, extended) if upper else np.minimum(fitted, extended)", "return fitted"),),
        ("tests/engine/test_calibration.py", "tests/serving/test_quantiles.py")),
    "intervals-not-capped": Mutation(
        "intervals wider than every calibration error (a level shift's errors times its scale)",
        (("pipeline_code/engine/core/calibration.py", "    centred = sorted_raw - np.median(sorted_raw, axis=0)",
          "    return low, high"),),
        ("tests/engine/test_interval_cap.py",)),
    "cap-ignores-the-recent-peak": Mutation(
        "the cap is the calibration errors alone (a new volatility is capped at the calm errors)",
        (("pipeline_code/engine/core/calibration.py", "    reach = peak * np.maximum(growth, 1.0)",
          "    reach = 0.0 * growth"),),
        ("tests/engine/test_interval_cap.py",)),
    "peak-with-look-ahead": Mutation(
        "a split's peak includes its own one-step error (look-ahead)",
        (("pipeline_code/engine/core/calibration.py", "e[max(0, k - window):k].max(initial=0.0)",
          "e[max(0, k - window):k + 1].max(initial=0.0)"),),
        ("tests/engine/test_interval_cap.py",)),
    "interval-shifted-by-the-cv-bias": Mutation(
        "the calibration errors' median shifts the interval off the point forecast",
        (("pipeline_code/engine/core/calibration.py",
          "centred = sorted_errors - np.median(sorted_errors, axis=0)", "centred = sorted_errors"),),
        ("tests/engine/test_calibration.py", "tests/serving/test_quantiles.py")),
    "fallback-keeps-its-own-scale": Mutation(
        "a fallback item too short for its own spread keeps it (zero-width intervals)",
        (("pipeline_code/engine/panel_fit.py", "        if not o.error_scale >= panel:", "        if False:"),),
        ("tests/engine/test_panel_fit.py",)),
    "gap-off-by-one": Mutation(
        "a single missing period passes the gap rule",
        (("pipeline_code/engine/dataset.py", "if steps - 1 > max_gap:", "if steps - 2 > max_gap:"),),
        ("tests/engine/test_dataset.py", "tests/engine/test_dataset_boundaries.py")),
    "global-ar-pools-the-cutoff": Mutation(
        "the global AR's training rows include the target at the origin (look-ahead)",
        (("pipeline_code/engine/families/global_ar.py", "end = np.clip(origins - order, 0, u.shape[0])",
          "end = np.clip(origins - order + 1, 0, u.shape[0])"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-psi-without-feedback": Mutation(
        "the global AR's variance ignores the AR feedback (a random walk's variance)",
        (("pipeline_code/engine/families/global_ar.py",
          "psi[..., j] = np.sum(phi[..., :k] * psi[..., j - 1::-1][..., :k], axis=-1)", "psi[..., j] = 1.0"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-local-in-a-panel": Mutation(
        "a panel's series fit the AR on their own rows, not shrunk toward the pooled fit",
        (("pipeline_code/engine/families/global_ar.py", "own if pooled is None else shrunk(own, pooled),", "own,"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-unweighted-pooling": Mutation(
        "a panel pools the global AR's series unweighted, a volatile series as much as a steady one",
        (("pipeline_code/engine/families/global_ar.py", "return weighted(self.own(y, candidate, origins, ctx))",
          "return self.own(y, candidate, origins, ctx)"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-weight-without-df": Mutation(
        "the pooling weight's residual variance is not corrected for the coefficients fitted",
        (("pipeline_code/engine/families/global_ar.py",
          "variance = residual_variance(own, c) * count / np.maximum(count - order, 1)",
          "variance = residual_variance(own, c)"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-prior-by-total-rows": Mutation(
        "the pooled prior enters a series' fit at its full size (every panel row), not as a few rows",
        (("pipeline_code/engine/families/global_ar.py",
          "per_row = pooled / np.maximum(pooled[..., -1:, -1:], 1.0)", "per_row = pooled"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-prior-unweighted-own": Mutation(
        "a series' own rows enter its shrunk fit unweighted, against the weighted pooled prior",
        (("pipeline_code/engine/families/global_ar.py",
          "return weighted(own) + PRIOR_ROWS_PER_LAG * order * per_row", "return own + PRIOR_ROWS_PER_LAG * order * per_row"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-drift-not-added-back": Mutation(
        "the drift family forecasts the detrended series without adding the trend back",
        (("pipeline_code/engine/families/global_ar.py",
          "centre = recursive_forecast(last, np.nan_to_num(a), steps) + mu[:, None] * np.arange(steps)",
          "centre = recursive_forecast(last, np.nan_to_num(a), steps)"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-drift-includes-the-origin": Mutation(
        "the drift's growth reaches the value at the origin (look-ahead)",
        (("pipeline_code/engine/families/global_ar.py", "end = np.clip(origins - 1, 0, z.size - 1)",
          "end = np.clip(origins, 0, z.size - 1)"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-explosive-served": Mutation(
        "an explosive pooled autoregression forecasts its windows instead of failing them",
        (("pipeline_code/engine/families/global_ar.py", "\n           | explosive(np.nan_to_num(a), horizon or steps))", ")"),),
        ("tests/engine/test_global_ar.py",)),
    "global-ar-pooled-per-shard": Mutation(
        "a sharded fit pools the global AR over its own shard only (each shard a different model)",
        (("pipeline_code/pipeline/panel_shards.py", "jobs=jobs, whole=pooled)", "jobs=jobs, whole=None)"),),
        ("tests/integration/test_panel_stages.py",)),
    "ets-log-multiplicative-errors": Mutation(
        "ETS on the log scale searches multiplicative errors too (unit-dependent noise on log values)",
        (("pipeline_code/engine/families/sf.py", 'return "A" + code[1:] if', 'return "Z" + code[1:] if'),),
        ("tests/engine/test_families.py",)),
    "ma-filter-lagged-wrongly": Mutation(
        "the inverse MA filter feeds back the error instead of the filtered value (x[t] = e[t] - theta e[t-1])",
        (("pipeline_code/engine/model/sliding.py", "previous = column - theta * previous\n        out[t] = previous",
          "out[t] = column - theta * previous\n        previous = column"),),
        ("tests/engine/test_model.py",)),
    "thief-blocks-start-aligned": Mutation(
        "temporal hierarchy blocks start at the window's start, so the last block does not end at the origin",
        (("pipeline_code/engine/families/thief.py",
          "blocks = [x[e - u:e].reshape(-1, k).sum(axis=1) for e, u in zip(ends, used)]",
          "blocks = [x[b:b + u].reshape(-1, k).sum(axis=1) for b, u in zip(starts, used)]"),),
        ("tests/engine/test_thief.py",)),
    "thief-unscaled-reconciliation": Mutation(
        "temporal hierarchy reconciliation by OLS (every level weighted alike), not structural scaling",
        (("pipeline_code/engine/families/thief.py", "np.full(m // k, 1.0 / k)", "np.full(m // k, 1.0)"),),
        ("tests/engine/test_thief.py",)),
    "tune-picks-lowest-cv-mse": Mutation(
        "the single-series tune serves the lowest CV MSE, not the objective (CV MASE)",
        (("pipeline_code/engine/tuning.py", "return min(self.candidates, key=lambda c: c[OBJECTIVE])",
          'return min(self.candidates, key=lambda c: c["cv_mse"])'),),
        ("tests/engine/test_tuning.py", "tests/test_bench_selection_validation.py")),
    "serve-lowest-by-default": Mutation(
        "the tune serves the lowest objective by default, not equal weights of the best 3 members",
        (("pipeline_code/engine/settings.py", 'serve: str = "equal_top"', 'serve: str = "lowest"'),),
        ("tests/engine/test_tuning.py", "tests/test_bench_selection_validation.py")),
    "serve-top-of-fewer-members": Mutation(
        "with fewer members than search.serve_top, all of them are averaged (a poor one at an equal weight)",
        (("pipeline_code/engine/tuning.py", "len(ranked_members(singles)) >= settings.search.serve_top",
          "len(ranked_members(singles)) >= 2"),
         ("pipeline_code/engine/tuning.py", "    served_k = settings.search.serve_top\n",
          "    served_k = min(settings.search.serve_top, len(ranked_members(singles)))\n")),
        ("tests/engine/test_tuning.py",)),
    "cloud-serves-the-best-trial": Mutation(
        "one series' cloud run serves the best single trial candidate, not search.serve's pick",
        (("pipeline_code/pipeline/trials.py", "    best = result.best\n",
          '    best = min((c for c in result.candidates if c["hyperparameters"]["family"] != COMBINATION), '
          'key=lambda c: c[OBJECTIVE])\n'),),
        ("tests/integration/test_entrypoints.py",)),
    "trials-merged-without-unscored-candidates": Mutation(
        "the Select job merges only the candidates the trials scored (a failed family's trial shifts every "
        "later candidate's index), not the whole space with the unscored ones failed",
        (("pipeline_code/pipeline/trials.py", "    singles = [found.get(i) or {",
          "    singles = [found[i] for i in sorted(found)] or [{"),),
        ("tests/integration/test_selection.py",)),
    "trial-forecasts-not-stored": Mutation(
        "a trial writes its candidates' scores but not their CV forecasts (the Select job cannot weigh a "
        "combination as the local tune does)",
        (("pipeline_code/pipeline/trials.py",
          "np.savez(model_dir / TRIAL_FORECASTS, **{str(i): f for i, f in forecasts.items() if f is not None})",
          "np.savez(model_dir / TRIAL_FORECASTS)"),),
        ("tests/integration/test_selection.py",)),
    "combinations-ranked-by-cv-mse": Mutation(
        "combination members are ranked by CV MSE, not the objective",
        (("pipeline_code/engine/families/combination.py", "sizes: tuple[int, ...], objective: str = OBJECTIVE)",
          'sizes: tuple[int, ...], objective: str = "cv_mse")'),),
        ("tests/engine/test_tuning.py",)),
    "panel-choices-on-the-fits-cutoffs": Mutation(
        "the global choices (the local search's and each tuning trial's) are scored on the fit's few "
        "cutoffs, not the tuning's",
        (("pipeline_code/pipeline/panel_tuning.py", "fit_panel(panel, settings.tuning(),", "fit_panel(panel, settings,"),),
        ("tests/integration/test_panel_stages.py",)),
    "panel-trial-reports-nan": Mutation(
        "a trial that scored no series reports nan, which the tuning job's metric expression cannot read",
        (("pipeline_code/pipeline/panel_tuning.py", '"cv_mase": ranked(fitted.objective)', '"cv_mase": fitted.objective'),),
        ("tests/integration/test_panel_stages.py",)),
    "panel-tune-refuses-unscored": Mutation(
        "the local tune ranks unscored choices as nan, so a panel of short series gets no fallback note",
        (("pipeline_code/pipeline/panel_stages.py", "    if best[\"cv_mase\"] == UNSCORED:", "    if False:"),),
        ("tests/integration/test_panel_pipeline.py",)),
    "panel-fit-takes-one-trials-best": Mutation(
        "the sharded fit takes the first trial's best choice, not the best of every trial",
        (("pipeline_code/pipeline/panel_tuning.py",
          "for job, document, _ in read_archives(folder, PANEL_TRIAL_FORMAT, tuning_job=tuning_job):",
          "for job, document, _ in read_archives(folder, PANEL_TRIAL_FORMAT, tuning_job=tuning_job)[:1]:"),),
        ("tests/integration/test_panel_stages.py",)),
    "interrupted-pool-runs-the-queue": Mutation(
        "leaving a worker pool by Ctrl-C or an error waits for every queued task (ProcessPoolExecutor's exit)",
        (("pipeline_code/engine/workers.py", "        if exc_type is None:\n", "        if True:\n"),),
        ("tests/engine/test_workers.py",)),
}


def copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("pipeline_code", "tests", "bench"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def apply(target: Path, mutation: Mutation) -> None:
    for file, old, new in mutation.edits:
        path = target / file
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"{file}: the text to mutate occurs {text.count(old)} times: {old!r}")
        path.write_text(text.replace(old, new))


def failing_tests(target: Path, tests: tuple[str, ...]) -> list[str]:
    """Run ``tests`` in ``target`` (its copy of the package first on the path); the failed test ids."""
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline_code; print(pipeline_code.__file__)"],
        cwd=target, env=env, capture_output=True, text=True, check=True).stdout
    if not Path(where.strip()).is_relative_to(target):
        raise SystemExit(f"the copy is not the package imported: {where.strip()}")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-rfE",
         *tests], cwd=target, env=env, capture_output=True, text=True)
    return re.findall(r"^(?:FAILED|ERROR) (\S+)", run.stdout, flags=re.MULTILINE)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="name", help=f"of {', '.join(MUTATIONS)}")
    names = parser.parse_args().names or list(MUTATIONS)
    unknown = sorted(set(names) - set(MUTATIONS))
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}")
    survived = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        baseline = Path(tmp) / "baseline"
        copy_tree(baseline)
        tests = tuple(sorted({t for n in names for t in MUTATIONS[n].tests}))
        broken = failing_tests(baseline, tests)
        if broken:
            raise SystemExit(f"the unmutated copy fails {broken}; fix that first")
        for name in names:
            mutation = MUTATIONS[name]
            target = Path(tmp) / name
            copy_tree(target)
            apply(target, mutation)
            caught = failing_tests(target, mutation.tests)
            print(f"{name} ({mutation.bug}): {f'caught by {len(caught)} test(s)' if caught else 'SURVIVED'}")
            functions = [test.split("[")[0] for test in caught]
            for function in dict.fromkeys(functions):
                print(f"    {function} ({functions.count(function)})")
            if not caught:
                survived.append(name)
    if survived:
        raise SystemExit(f"mutations not caught: {survived}")


if __name__ == "__main__":
    main()
