"""The panel stages' parts (pipeline/panel_stages.py) on small files: detecting a panel upload, the
processed shards written and read back, the per-series rules and the report, the global choices and a
panel training job's hyperparameters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline_code.engine.panel_data import shard_of
from pipeline_code.engine.settings import Settings, SettingsError
from pipeline_code.entrypoints.training import parse_panel_hyperparameters
from pipeline_code.pipeline import panel_stages
from pipeline_code.pipeline.panel_stages import (
    SHARD_FILE, is_panel_folder, is_panel_upload, process_panel, read_processed_panel, settings_for,
)
from pipeline_code.pipeline.panel_tuning import global_candidates
from tests.integration.test_panel_pipeline import panel_rows, write_panel

SETTINGS = Settings.from_dict({"data": {"freq": "MS", "season_length": 12, "horizon": 6},
                               "series": {"families": ["seasonal_naive", "theta"], "instances": 4}})


@pytest.mark.parametrize("first_line, panel", [
    ("item_id,timestamp,value", True),
    ("timestamp,target_value,item_id", True),
    ("Item_ID,Timestamp,Value", True),  # names match in any case, as parsing reads them
    ("TIMESTAMP,TARGET_VALUE,ITEM_ID", True),
    ("shop-1,2020-01-01,3.5", True),  # Amazon Forecast's headerless layout, series.columns order
    ("shop-1,2020-01-01 00:00:00,3.5", True),
    ("timestamp,value", False),
    ("date,amount", False),  # a wrong one-series header keeps today's message
    ("timestamp;value", False),
    ("a,b,c", False),
])
def test_a_panel_upload_is_told_from_one_series(tmp_path, first_line, panel):
    path = tmp_path / "upload.csv"
    for mark in (b"", b"\xef\xbb\xbf"):  # with a UTF-8 byte-order mark too: parsing drops it
        path.write_bytes(mark + (first_line + "\n").encode())
        assert is_panel_upload(path, SETTINGS) is panel


def test_headerless_columns_follow_series_columns(tmp_path):
    path = tmp_path / "upload.csv"
    path.write_text("2020-01-01,3.5,shop-1\n")
    assert not is_panel_upload(path, SETTINGS)
    reordered = SETTINGS.merged({"series": {"columns": ["timestamp", "target_value", "item_id"]}})
    assert is_panel_upload(path, reordered)


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("processed")
    rows = panel_rows()
    spike = next(i for i, r in enumerate(rows) if r[0] == "north" and r[1] == "2017-03-01")
    rows[spike][2] = f"{float(rows[spike][2]) * 4:.3f}"  # an outlier the per-series rules flag
    data = write_panel(root / "stores.csv", rows)
    report = process_panel(data, root / "out", SETTINGS)
    return root / "out", report, rows


def test_every_shard_is_written_under_train_and_test_by_shard_of(processed):
    out, report, rows = processed
    for part in ("train", "test"):
        assert sorted(p.name for p in (out / part).iterdir()) == [SHARD_FILE.format(k) for k in range(4)]
        assert is_panel_folder(out / part)
    for k in range(4):
        lines = (out / "train" / SHARD_FILE.format(k)).read_text().splitlines()
        assert lines[0] == "item_id,timestamp,value,value_counterfactual,is_counterfactual,is_outlier"
        assert {line.split(",")[0] for line in lines[1:]} <= {i for i in {r[0] for r in rows} if shard_of(i, 4) == k}
    assert report["shards"] == 4 and report["train_observations"] + report["test_observations"] == len(rows)


def test_train_and_test_read_back_as_the_whole_panel(processed):
    out, _, rows = processed
    panel, counterfactual = read_processed_panel(out / "train", out / "test", freq="MS")
    items = sorted({r[0] for r in rows})
    assert panel.items == items
    for item in items:
        values = [float(r[2]) for r in rows if r[0] == item]
        assert np.allclose(panel.series[item].values, values)
        assert counterfactual[item].shape == panel.series[item].values.shape
    test, _ = read_processed_panel(out / "test", freq="MS")
    assert all(len(test.series[item]) == 6 for item in items)


def test_the_per_series_rules_run_and_are_reported(processed):
    _, report, _ = processed
    assert report["outliers"].get("north", 0) >= 1
    assert report["rules_skipped"] == {"flat": "constant", "short": report["rules_skipped"]["short"]}
    assert "14 observations" in report["rules_skipped"]["short"]
    assert list(report["too_short"]) == ["short"]
    assert report["too_short"]["short"].startswith("14 observations; a CV split needs 30 (2 seasons of 12")
    assert not is_panel_folder(Path(__file__).parent)  # no CSV with item_id here


def test_a_family_that_offers_no_model_is_refused_before_any_series_is_read(tmp_path):
    data = write_panel(tmp_path / "stores.csv", panel_rows({"a": 40, "b": 50}))
    short = SETTINGS.merged({"series": {"families": ["seasonal_naive", "thief", "arima"]}, "cv": {"window": 83}})
    with pytest.raises(SettingsError) as info:
        process_panel(data, tmp_path / "out", short)
    assert info.value.problems == [
        "series.families: 'thief' offers no model for data.season_length 12 and cv.window 83; it needs a whole "
        "season of 2 to 24 periods and a cv.window of at least 7 seasons"]
    assert not (tmp_path / "out").exists()
    process_panel(data, tmp_path / "out", SETTINGS.merged({"series": {"families": ["seasonal_naive", "thief"]},
                                                            "cv": {"window": 84}}))
    # the fallback too: every series too short for the panel's CV would get it
    with pytest.raises(SettingsError) as info:
        process_panel(data, tmp_path / "out2", SETTINGS.merged({"series": {"fallback": "thief"}, "cv": {"window": 83}}))
    assert info.value.problems == [
        "series.fallback: 'thief' offers no model for data.season_length 12 and cv.window 83; it needs a whole "
        "season of 2 to 24 periods and a cv.window of at least 7 seasons"]


def test_series_preprocess_off_keeps_every_series_as_observed(tmp_path):
    data = write_panel(tmp_path / "stores.csv", panel_rows({"a": 40, "b": 50}))
    off = SETTINGS.merged({"series": {"preprocess": False, "instances": 1}})
    report = process_panel(data, tmp_path / "out", off)
    assert report["rules_skipped"] == {"a": "series.preprocess is off", "b": "series.preprocess is off"}
    panel, counterfactual = read_processed_panel(tmp_path / "out" / "train", freq="MS")
    assert all(np.array_equal(counterfactual[i], panel.series[i].values) for i in panel.items)


def test_reports_cut_long_item_lists(monkeypatch):
    monkeypatch.setattr(panel_stages, "REPORT_ITEMS", 2)
    assert panel_stages._listed({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert panel_stages._listed({"a": 1, "b": 2, "c": 3}) == {"count": 3, "first": {"a": 1, "b": 2}}
    assert panel_stages._listed(["a", "b", "c"]) == {"count": 3, "first": ["a", "b"]}


def test_global_candidates_are_every_family_choice_at_each_of_the_tuning_jobs_trials():
    candidates = global_candidates(SETTINGS)
    assert {c["family"] for c in candidates} == {"per_series", "seasonal_naive", "theta", "combination"}
    assert len(candidates) == 4 * len(SETTINGS.search.histories) * len(SETTINGS.search.scales)
    trials = {(c["history"], c["scale"]) for c in candidates}
    assert len(trials) == SETTINGS.tuning_grid(panel=True)
    assert all(parse_panel_hyperparameters({"history": h, "scale": s}, SETTINGS) == {"history": h, "scale": s}
               for h, s in trials)


def test_one_family_for_every_series_runs_that_family_alone():
    assert settings_for(SETTINGS, {"family": "per_series"}) is SETTINGS
    assert settings_for(SETTINGS, {"family": "combination"}) is SETTINGS
    assert settings_for(SETTINGS, {"family": "ets"}).series.families == ("ets",)
    # an approved pair runs beside the fallback, which makes the pair a choice of those settings
    paired = settings_for(SETTINGS, {"family": "ets+global_ar"})
    assert paired.series.families == ("seasonal_naive", "ets", "global_ar")
    assert "ets+global_ar" in paired.panel_families()
    window_only = SETTINGS.merged({"search": {"histories": ["window"]}})
    approved = settings_for(window_only, {"family": "theta", "history": "all"})
    assert approved.search.histories == ("window", "all") and approved.series.families == ("theta",)
    log_only = SETTINGS.merged({"search": {"scales": ["log"]}})
    assert settings_for(log_only, {"family": "theta", "scale": "raw"}).search.scales == ("log", "raw")


@pytest.mark.parametrize("raw, message", [
    ({"history": "all", "scale": "log", "fourier_k": "3"}, "unknown hyperparameter(s) ['fourier_k']"),
    ({"history": "all", "scale": "log", "family": "theta"}, "unknown hyperparameter(s) ['family']"),
    ({"history": "forever", "scale": "log"}, "history='forever' is not one of"),
    ({"history": "all"}, "missing hyperparameter(s) ['scale']"),
])
def test_a_panel_training_job_refuses_what_its_ranges_lack(raw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_panel_hyperparameters(raw, SETTINGS)


def test_sagemaker_entries_are_ignored_in_a_panel_training_job():
    raw = {"scale": '"raw"', "history": "window", "_tuning_objective_metric": "cv_mase"}
    assert parse_panel_hyperparameters(raw, SETTINGS) == {"scale": "raw", "history": "window"}


def test_the_sagemaker_jobs_run_a_panel(tmp_path):
    """Processing, a tuning job's trial, the sharded fit and evaluation as SageMaker runs them (the /opt/ml
    layout in a folder, the run document in each job's settings input): shards, the trial's scores, a
    panel model, the exports."""
    import shutil
    import tarfile

    from pipeline_code.engine.core.panel_artifact import PanelModel
    from pipeline_code.engine.settings import SETTINGS_FILE
    from tests.integration.test_entrypoints import run
    from tests.integration.test_panel_pipeline import FAST_PANEL

    document = SETTINGS.merged(FAST_PANEL).merged({"series": {"instances": 2}}).to_json()
    root = tmp_path / "ml"
    inputs = root / "processing" / "input"
    write_panel(tmp_path / "stores.csv", panel_rows({"a": 90, "b": 100, "c": 110}))
    (inputs / "raw").mkdir(parents=True)
    shutil.copy(tmp_path / "stores.csv", inputs / "raw" / "stores.csv")
    (inputs / "settings").mkdir()
    (inputs / "settings" / SETTINGS_FILE).write_text(document)
    result = run("processing", root)
    assert result.returncode == 0, result.stderr
    processed = root / "processing" / "output"
    assert json.loads(result.stdout.splitlines()[-1])["series"] == 3
    assert sorted(p.name for p in (processed / "train").iterdir()) == [SHARD_FILE.format(k) for k in range(2)]

    train_root = tmp_path / "train-job"
    for channel in ("train", "test"):
        shutil.copytree(processed / channel, train_root / "input" / "data" / channel)
    (train_root / "input" / "data" / "settings").mkdir(parents=True)
    (train_root / "input" / "data" / "settings" / SETTINGS_FILE).write_text(document)
    (train_root / "input" / "config").mkdir(parents=True)
    (train_root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        {"history": '"window"', "scale": "log", "_tuning_objective_metric": "cv_mase"}))
    result = run("training", train_root)
    assert result.returncode == 0, result.stderr
    objective = float(re.search(r"^cv_mase=([0-9.]+);$", result.stdout, re.M).group(1))
    assert "cv_mse=" not in result.stdout
    scored = json.loads((train_root / "model" / "trial.json").read_text())["candidates"]
    assert objective == pytest.approx(min(c["cv_mase"] for c in scored), abs=1e-6)
    assert {c["hyperparameters"]["family"] for c in scored} == set(Settings.from_dict(json.loads(document)).panel_families())

    fit_root = tmp_path / "fit"  # one instance of the sharded fit, given both shard files
    fit_inputs = fit_root / "processing" / "input"
    for channel, source in (("train", processed / "train"), ("panel", processed / "train"),
                            ("test", processed / "test"), ("settings", inputs / "settings")):
        shutil.copytree(source, fit_inputs / channel)
    (fit_inputs / "trials" / "t0-001-aa" / "output").mkdir(parents=True)
    with tarfile.open(fit_inputs / "trials" / "t0-001-aa" / "output" / "model.tar.gz", "w:gz") as archive:
        for item in (train_root / "model").iterdir():  # as SageMaker packs /opt/ml/model
            archive.add(item, arcname=item.name)
    (fit_root / "config").mkdir()
    (fit_root / "config" / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1"}))
    result = run("panel_fit", fit_root)
    assert result.returncode == 0, result.stderr
    shard = fit_root / "processing" / "output" / "shards" / "algo-1"
    assert PanelModel.load(shard).items == ["a", "b", "c"]
    assert PanelModel.load(shard).metadata["hyperparameters"] == min(scored, key=lambda c: c["cv_mase"])[
        "hyperparameters"]

    eval_root = tmp_path / "eval"
    eval_inputs = eval_root / "processing" / "input"
    for channel in ("train", "test", "settings"):
        shutil.copytree(inputs / channel if channel == "settings" else processed / channel, eval_inputs / channel)
    shutil.copytree(fit_root / "processing" / "output" / "shards", eval_inputs / "model")
    result = run("evaluation", eval_root)
    assert result.returncode == 0, result.stderr
    output = eval_root / "processing" / "output"
    evaluation = json.loads((output / "evaluation" / "evaluation.json").read_text())
    assert evaluation["panel"] and evaluation["gate"]["passed"] and evaluation["champion"] is None
    assert (output / "forecast" / "forecast.csv").read_text().startswith("item_id,timestamp,mean,")
    assert (output / "forecast" / "backtest.csv").read_text().startswith("item_id,cutoff,")
    with tarfile.open(output / "served" / "model.tar.gz") as archive:
        assert "panel.json" in archive.getnames()


def test_settings_come_from_one_item_and_the_longest_series(tmp_path):
    """A panel's run document: the frequency from one item's timestamps, the CV window from the
    longest series (not the file's row count); no minimum length refuses the upload."""
    from pipeline_code.engine.settings import WINDOW_MIN_SEASONS
    from pipeline_code.pipeline.settings_args import resolve_for_data

    data = write_panel(tmp_path / "stores.csv", panel_rows({"a": 40, "b": 60, "c": 50, "d": 14}))
    resolved = resolve_for_data([], data)
    assert resolved.derived["data.freq"] == "MS" and resolved.derived["data.season_length"] == 12
    assert resolved.derived["data.horizon"] == 12
    assert resolved.derived["cv.window"] == WINDOW_MIN_SEASONS * 12  # 60 rows allow no more
    headerless = tmp_path / "amazon.csv"
    headerless.write_text("".join(f"{r[1]},{r[2]},{r[0]}\n" for r in panel_rows({"a": 40})))
    layers = [("upload", {"series": {"columns": ["timestamp", "target_value", "item_id"]}})]
    assert resolve_for_data(layers, headerless).derived["data.freq"] == "MS"


@pytest.mark.parametrize("packed", [False, True])
def test_evaluation_merges_a_panel_fitted_in_shards(tmp_path, packed):
    """The evaluation job's model input holds every instance's partial panel (folders under their host
    names, or archives): one panel of every item comes out."""
    import tarfile

    from pipeline_code.engine.core.panel_artifact import PanelModel
    from pipeline_code.entrypoints.evaluation import model_folder
    from pipeline_code.pipeline.panel_stages import train_panel

    naive = SETTINGS.merged({"series": {"families": ["seasonal_naive"], "instances": 1}})
    model_input = tmp_path / "model"
    for host, items in (("algo-1", {"a": 40, "b": 50}), ("algo-2", {"c": 45})):
        data = write_panel(tmp_path / f"{host}.csv", panel_rows(items))
        process_panel(data, tmp_path / host, naive)
        fitted = train_panel(tmp_path / host / "train", tmp_path / host / "test", {}, model_input / host, naive)
        assert fitted["cv_mase"] > 0
        if packed:
            with tarfile.open(model_input / f"{host}.tar.gz", "w:gz") as archive:
                for path in sorted((model_input / host).iterdir()):
                    archive.add(path, arcname=path.name)
            for path in (model_input / host).iterdir():
                path.unlink()
            (model_input / host).rmdir()
    merged = model_folder(model_input)
    assert PanelModel.load(merged).items == ["a", "b", "c"]


def test_every_shard_pools_the_whole_panel(tmp_path):
    """With a pooled family, each shard's fit sums the whole panel's statistics: every shard shrinks
    its series toward one pooled AR, so each series' weights are those of one fit of the whole panel."""
    from pipeline_code.engine.core.panel_artifact import PanelModel
    from pipeline_code.pipeline.panel_shards import fit_panel_in_shards, shard_files

    settings = SETTINGS.merged({"data": {"horizon": 6}, "series": {"families": ["seasonal_naive", "global_ar"],
                                                                    "cutoffs": 3, "instances": 3},
                                "search": {"histories": ["window"], "scales": ["log"]}})
    lengths = {"a": 90, "b": 100, "c": 110, "d": 96, "e": 120, "f": 84}
    process_panel(write_panel(tmp_path / "stores.csv", panel_rows(lengths)), tmp_path / "out", settings)
    train, test = tmp_path / "out" / "train", tmp_path / "out" / "test"
    assert len(shard_files(train)) == 3
    choice = {"family": "global_ar", "history": "window", "scale": "log"}
    fit_panel_in_shards(train, test, choice, tmp_path / "sharded", settings)
    panel_stages.train_panel(train, test, choice, tmp_path / "whole", settings)

    def weights(folder: Path) -> dict[str, np.ndarray]:
        model = PanelModel.load(folder)
        assert model.items == sorted(lengths)
        return {item: np.array(model.artifact(item).spec["weights"]) for item in model.items}

    sharded, whole = weights(tmp_path / "sharded"), weights(tmp_path / "whole")
    for item in lengths:  # each series shrunk toward the same pooled fit as in one fit of the panel
        np.testing.assert_allclose(sharded[item], whole[item], rtol=1e-9)
    # an instance that holds one shard file sums the whole panel's train files, received in full
    one = tmp_path / "instance"
    for channel in ("train", "test"):
        (one / channel).mkdir(parents=True)
        name = shard_files(train)[1].name
        (one / channel / name).write_bytes((tmp_path / "out" / channel / name).read_bytes())
    fit_panel_in_shards(one / "train", one / "test", choice, one / "model", settings, whole=(train, test))
    instance = PanelModel.load(one / "model")
    assert 0 < len(instance.items) < len(lengths)
    for item in instance.items:
        np.testing.assert_allclose(instance.artifact(item).spec["weights"], whole[item], rtol=1e-9)


def test_the_tuning_scores_the_global_choices_on_the_tuning_cutoffs(processed, tmp_path):
    """The local search and a tuning job's trial score a choice alike, on ``series.tune_cutoffs``
    cutoffs (more than the fit's ``series.cutoffs``): the yardstick is a fit told that many cutoffs."""
    from pipeline_code.engine.panel_fit import fit_panel
    from pipeline_code.pipeline.panel_tuning import panel_trial

    out, _, _ = processed
    settings = SETTINGS.merged({"series": {"cutoffs": 2, "tune_cutoffs": 5}})
    tuned = panel_stages.tune_panel(out / "train", tmp_path / "reports", settings)
    panel, counterfactual = read_processed_panel(out / "train", freq="MS")
    choice = {"family": "theta", "history": "window", "scale": "log"}
    five = settings.merged({"series": {"cutoffs": 5}})
    expected = fit_panel(panel, five, choice=choice, counterfactual=counterfactual)
    assert len(expected.report["cutoffs"]) == 5
    scored = next(c["cv_mase"] for c in tuned["candidates"] if c["hyperparameters"] == choice)
    trial = panel_trial(out / "train", {"history": "window", "scale": "log"}, tmp_path / "model", settings)
    written = json.loads((tmp_path / "model" / "trial.json").read_text())["candidates"]
    assert [c["hyperparameters"]["family"] for c in written] == settings.panel_families()
    assert scored == pytest.approx(expected.objective, rel=1e-12)
    assert next(c["cv_mase"] for c in written if c["hyperparameters"] == choice) == scored
    assert trial["cv_mase"] == min(c["cv_mase"] for c in written)
    two = fit_panel(panel, settings, choice=choice, counterfactual=counterfactual)
    assert two.objective != pytest.approx(expected.objective, rel=1e-6)  # the fit's own cutoffs differ


def test_the_sharded_fit_takes_the_trials_best_choice_as_the_local_search_does(processed, tmp_path):
    """The tuning job's trials (one per history and scale, packed as SageMaker packs them) read back by
    the sharded fit give the local search's choice; a failed trial's choices are simply absent, and a
    trial of another run document is refused."""
    import tarfile

    from pipeline_code.pipeline.panel_tuning import best_of_trials, panel_trial
    from pipeline_code.pipeline.trial_files import TrialError

    out, _, _ = processed
    tuned = panel_stages.tune_panel(out / "train", tmp_path / "reports", SETTINGS)
    trials = tmp_path / "models"
    for i, pair in enumerate({(c["history"], c["scale"]) for c in global_candidates(SETTINGS)}):
        model = tmp_path / "trial" / str(i)
        panel_trial(out / "train", {"history": pair[0], "scale": pair[1]}, model, SETTINGS)
        (trials / f"t0-{i:03d}" / "output").mkdir(parents=True)
        with tarfile.open(trials / f"t0-{i:03d}" / "output" / "model.tar.gz", "w:gz") as tar:
            tar.add(model / "trial.json", arcname="trial.json")
    best = best_of_trials(trials, SETTINGS)
    assert best["hyperparameters"] == tuned["hyperparameters"] and best["cv_mase"] == tuned["cv_mase"]
    others = [c for c in tuned["candidates"] if (c["hyperparameters"]["history"], c["hyperparameters"]["scale"])
              != (best["hyperparameters"]["history"], best["hyperparameters"]["scale"])]
    def scored_in(trial: Path) -> list[dict]:
        with tarfile.open(trial / "output" / "model.tar.gz") as tar:
            return json.loads(tar.extractfile("trial.json").read())["candidates"]

    winner = next(p for p in trials.iterdir() if best in scored_in(p))
    (winner / "output" / "model.tar.gz").unlink()  # its training job failed
    assert best_of_trials(trials, SETTINGS)["hyperparameters"] == min(others, key=lambda c: c["cv_mase"])[
        "hyperparameters"]
    with pytest.raises(TrialError, match="is not a global choice of this run document"):
        best_of_trials(trials, SETTINGS.merged({"series": {"families": ["seasonal_naive", "ets"]}}))


def test_the_tuning_cutoffs_never_lower_the_fits():
    assert SETTINGS.tuning().series.cutoffs == SETTINGS.series.tune_cutoffs == 8
    more = SETTINGS.merged({"series": {"cutoffs": 12}})
    assert more.tuning().series.cutoffs == 12 and more.tuning().series.tune_cutoffs == 8
    assert SETTINGS.tuning().series.families == SETTINGS.series.families


def test_an_unscored_choice_ranks_last_with_a_number_the_tuning_job_can_read(tmp_path):
    """A trial on series too short for any split reports ``UNSCORED``, which the training job prints in
    the form its metric definition reads (``nan`` would leave the tuning job without a best job)."""
    from pipeline_code.pipeline.panel_tuning import panel_trial
    from pipeline_code.pipeline.trial_files import UNSCORED, ranked

    assert ranked(float("nan")) == ranked(float("inf")) == UNSCORED and ranked(0.5) == 0.5
    data = write_panel(tmp_path / "young.csv", panel_rows({"a": 30, "b": 28}))
    process_panel(data, tmp_path / "out", SETTINGS.merged({"series": {"instances": 1}}))
    metrics = panel_trial(tmp_path / "out" / "train", {"history": "window", "scale": "log"}, tmp_path / "model",
                          SETTINGS)
    assert metrics["cv_mase"] == UNSCORED
    assert re.fullmatch(r"cv_mase=([0-9.eE+-]+);", f"cv_mase={metrics['cv_mase']:.6f};")


def test_the_gate_reason_names_items_added_and_gone():
    from pipeline_code.pipeline.panel_stages import item_changes

    approved, uploaded = ["a", "b", "c"], ["a", "c", "d"]
    assert item_changes(approved, approved, True) == ""
    held = item_changes(approved, uploaded, False)
    assert "1 new item ('d'), not served" in held and "1 approved item not in this upload ('b'), still served" in held
    passed = item_changes(approved, uploaded, True)
    assert "1 new item ('d');" in passed and "no longer served" in passed
    many = item_changes([], [f"s{i}" for i in range(8)], True)
    assert "8 new items ('s0', 's1', 's2', 's3', 's4' and 3 more)" in many
