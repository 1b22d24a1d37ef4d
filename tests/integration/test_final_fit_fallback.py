"""The train stage's fallback (``stages.fit_ranked``): when the tune's choice fails to fit on all the data,
the next candidate of the tune's ranking is fitted, recorded and served, by the local runner and by the
cloud's Select job alike; when none fits, one error names every candidate tried."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline_code.engine.dataset import DataValidationError
from pipeline_code.engine.families.base import FamilyError
from pipeline_code.engine.families.registry import family
from pipeline_code.engine.settings import COMBINATION, Settings
from pipeline_code.engine.tuning import TuningResult, tune
from pipeline_code.pipeline.registry import LocalRegistry
from pipeline_code.pipeline.runner import PipelineError, run_pipeline
from pipeline_code.pipeline.runs import describe_spec
from pipeline_code.pipeline.stages import FIT_TRIES, fit_ranked, read_processed, run_processing, run_training
from pipeline_code.pipeline.trials import run_trial, select_served
from tests.conftest import BUNDLED
from tests.integration.test_selection import archive

# A small search of the NumPy families serving equal weights of its two members (the best harmonic
# candidate and seasonal naive); on the bundled series the tune's ranking is: that combination, the
# fitted-weights combination of the same two, then the harmonic candidates, the best one first.
SETTINGS = Settings.from_dict({"cv": {"window": 260, "step": 4}, "search": {
    "fourier_k": [2, 6], "use_counterfactual_data": [1], "detrend": [0],
    "families": ["harmonic_arima", "seasonal_naive"], "serve_top": 2}})
INJECTED = "injected: no fit on all the data"


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("processed")
    run_processing(BUNDLED, out, SETTINGS)
    return out


@pytest.fixture(scope="module")
def tuned(processed) -> TuningResult:
    train = read_processed(processed / "train", SETTINGS.data.freq)
    return tune(train.series.values, train.counterfactual, SETTINGS, jobs=1, progress=False)


@pytest.fixture(scope="module")
def trials(tmp_path_factory, processed) -> Path:
    """Each family's trial, packed as the tuning job's training jobs leave them under the run's models/."""
    root = tmp_path_factory.mktemp("trials")
    for name in SETTINGS.search.families:
        run_trial(processed / "train", name, root / name, SETTINGS)
        archive(root / "models" / f"t0-{name}" / "output" / "model.tar.gz",
                {p.name: p.read_bytes() for p in (root / name).iterdir()})
    return root / "models"


def fail_final_fit(monkeypatch, candidate: dict | None = None,
                   error: Callable[[], Exception] = lambda: FamilyError(INJECTED)) -> None:
    """``candidate``'s family raises ``error()`` when it fits ``candidate`` on all the data (None: every
    candidate of every searched family), as a family that fitted every CV window may."""
    for name in {candidate["family"]} if candidate else SETTINGS.search.families:
        fit_final = family(name).fit_final

        def failing(y, c, ctx, _fit=fit_final, **kwargs):
            if candidate is None or c == candidate:
                raise error()
            return _fit(y, c, ctx, **kwargs)

        monkeypatch.setattr(family(name), "fit_final", failing)


def holds(hyperparameters: dict, candidate: dict) -> bool:
    """Whether ``hyperparameters`` is ``candidate`` or a combination with it as a member."""
    return hyperparameters == candidate or candidate in hyperparameters.get("members", [])


def expected_fallback(tuned: TuningResult) -> tuple[dict, list[dict], dict]:
    """With the served combination's first member failing its final fit: that member, the candidates
    tried that fail (the ranking's first, up to the first without it) and the one fitted."""
    choice = tuned.best["hyperparameters"]
    assert choice["family"] == COMBINATION and choice["kind"] == "equal top 2"
    member = choice["members"][0]
    ranking = tuned.ranking()
    first = next(i for i, hp in enumerate(ranking) if not holds(hp, member))
    assert 2 <= first < FIT_TRIES  # the fallback goes past the combinations holding the member
    return member, ranking[:first], ranking[first]


def model_hyperparameters(model_dir: Path) -> dict:
    return json.loads((model_dir / "model.json").read_text())["metadata"]["hyperparameters"]


def test_the_ranking_is_the_choice_then_every_other_fitted_candidate_by_objective(tuned):
    scored = [{"hyperparameters": {"family": f"f{i}"}, "cv_mase": m}
              for i, m in enumerate([0.9, float("inf"), 0.7, 0.8, 0.7])]
    lowest, served = TuningResult(scored, 0, 1, 0), TuningResult(scored, 0, 1, 0, served=3)
    assert lowest.ranking() == [{"family": f} for f in ("f2", "f4", "f3", "f0")]
    assert served.ranking() == [{"family": f} for f in ("f3", "f2", "f4", "f0")]
    assert tuned.ranking()[0] == tuned.best["hyperparameters"]


def test_local_run_fits_records_and_serves_the_next_candidate_when_the_choice_fails(tmp_path, tuned,
                                                                                    monkeypatch):
    member, failing, fitted = expected_fallback(tuned)
    fail_final_fit(monkeypatch, member)
    lines: list[str] = []
    result = run_pipeline(BUNDLED, tmp_path / "work", SETTINGS, jobs=1, progress=False, log=lines.append)
    assert result.evaluation["spec"] == fitted  # the model evaluated is the fallback
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["selection"]["chosen"] == tuned.best["hyperparameters"]
    assert record["selection"]["hyperparameters"] == fitted
    assert [f["hyperparameters"] for f in record["selection"]["failed"]] == failing
    assert all(f["reason"] == f"FamilyError: {INJECTED}" for f in record["selection"]["failed"])
    assert sum("failed to fit: FamilyError" in line for line in lines) == len(failing)
    assert any(line.strip().startswith(f"fitted instead: {describe_spec(fitted)}") for line in lines)
    assert result.promoted and result.evaluation["gate"]["serve"] == "challenger"
    assert model_hyperparameters(LocalRegistry(tmp_path / "work" / "registry").approved().model_dir) == fitted


def test_select_job_fits_and_records_the_next_candidate_when_the_choice_fails(tmp_path, processed, tuned, trials,
                                                                             monkeypatch):
    member, failing, fitted = expected_fallback(tuned)
    fail_final_fit(monkeypatch, member)
    record = select_served(trials, processed / "train", processed / "test", tmp_path / "model", SETTINGS,
                           report_dir=tmp_path / "selection")
    assert record["chosen"] == tuned.best["hyperparameters"] and record["hyperparameters"] == fitted
    assert record["failed"] == [{"hyperparameters": hp, "reason": f"FamilyError: {INJECTED}"} for hp in failing]
    assert record["members"] == [f"t0-{fitted['family']}"]
    assert model_hyperparameters(tmp_path / "model") == fitted
    json.dumps(record)  # what the job writes to selection.json


def test_when_no_candidate_fits_one_error_names_every_candidate_tried(tmp_path, processed, tuned, trials,
                                                                      monkeypatch):
    fail_final_fit(monkeypatch)
    with pytest.raises(ValueError, match=rf"no candidate fitted \({FIT_TRIES} tried, of "
                                         rf"{len(tuned.ranking())} ranked\)") as raised:
        select_served(trials, processed / "train", processed / "test", tmp_path / "model", SETTINGS)
    message = str(raised.value)
    assert [hp for hp in tuned.ranking()[:FIT_TRIES] if f"{describe_spec(hp)}: FamilyError: {INJECTED}" in message] \
        == tuned.ranking()[:FIT_TRIES]
    assert not (tmp_path / "model").exists()

    with pytest.raises(PipelineError, match="no candidate fitted") as stopped:
        run_pipeline(BUNDLED, tmp_path / "work", SETTINGS, jobs=1, progress=False, log=lambda _: None)
    assert stopped.value.stage == "train" and str(raised.value) in stopped.value.reason


def test_a_data_validation_error_fails_at_once_without_trying_the_others(tmp_path, processed, tuned, monkeypatch):
    fail_final_fit(monkeypatch, error=lambda: DataValidationError("injected", INJECTED))
    with pytest.raises(DataValidationError, match=INJECTED):
        fit_ranked(processed / "train", processed / "test", tuned.ranking(), tmp_path / "model", SETTINGS)


def test_nothing_changes_when_the_choice_fits(tmp_path, processed, tuned, trials):
    choice = tuned.best["hyperparameters"]
    record = select_served(trials, processed / "train", processed / "test", tmp_path / "selected", SETTINGS)
    assert (record["chosen"], record["hyperparameters"], record["failed"]) == (choice, choice, [])
    run_training(processed / "train", processed / "test", choice, tmp_path / "trained", SETTINGS)
    selected, trained = (json.loads((tmp_path / d / "model.json").read_text()) for d in ("selected", "trained"))
    assert selected["parameters"] == trained["parameters"] and selected["spec"] == trained["spec"]
    assert record["metrics"] == trained["metadata"]["metrics"]


def test_nothing_changes_in_a_local_run_when_the_choice_fits(tmp_path, tuned):
    lines: list[str] = []
    result = run_pipeline(BUNDLED, tmp_path / "work", SETTINGS, jobs=1, progress=False, log=lines.append)
    choice = tuned.best["hyperparameters"]
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["selection"] == {"chosen": choice, "hyperparameters": choice, "failed": []}
    assert result.evaluation["spec"] == choice and not any("fitted instead" in line for line in lines)


def test_a_choice_whose_forecasts_serving_would_refuse_is_passed_over(tmp_path, processed, tuned, monkeypatch):
    """A final fit that succeeds but forecasts non-finite values within serve.max_periods (an explosive AR
    coefficient) fails serving's check at fit time: the next candidate is fitted, as for a failed fit."""
    member, failing, fitted = expected_fallback(tuned)
    fit_final = family(member["family"]).fit_final

    def explosive(y, c, ctx, **kwargs):
        section = fit_final(y, c, ctx, **kwargs)
        if c == member:
            section.parameters["phi"] = [3.0, *list(section.parameters["phi"])[1:]]
        return section

    monkeypatch.setattr(family(member["family"]), "fit_final", explosive)
    record = fit_ranked(processed / "train", processed / "test", tuned.ranking(), tmp_path / "model", SETTINGS)
    assert record["hyperparameters"] == fitted
    assert [f["hyperparameters"] for f in record["failed"]] == failing
    assert all("ModelCheckError" in f["reason"] and "not finite" in f["reason"] for f in record["failed"])
