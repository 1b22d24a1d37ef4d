"""The training pipeline's panel path: a sharded fit on `series.instances` instances, skipped for one series."""

from __future__ import annotations

from pipeline_code.entrypoints.sagemaker_paths import TRIALS_INPUT, TUNING_JOB_ENV, WHOLE_TRAIN_CHANNEL
from pipeline_code.pipeline import layout
from stacks.pipeline_definition import PANEL_FIT_ENTRYPOINT


def inputs(state: dict) -> dict[str, dict]:
    return {i["InputName"]: i["S3Input"] for i in state["Parameters"]["ProcessingInputs"]}


def test_a_panel_goes_through_the_sharded_fit_and_one_series_does_not(definition):
    states = definition["States"]
    assert states["Init"]["Parameters"]["shards.$"] == "$.shards"
    assert states["Tune"]["Next"] == "Panel?"
    choice = states["Panel?"]
    assert choice["Choices"] == [{"Variable": "$.shards", "NumericGreaterThan": 0, "Next": "FitShards"}]
    assert choice["Default"] == "Select"
    assert states["FitShards"]["Next"] == "ShardsAsModel" and states["ShardsAsModel"]["Next"] == "EnsureRegistry"
    assert states["Select"]["Next"] == "SelectedAsModel" and states["SelectedAsModel"]["Next"] == "EnsureRegistry"


def test_the_sharded_fit_is_one_processing_job_on_the_run_documents_instances(definition):
    fit = definition["States"]["FitShards"]
    params = fit["Parameters"]
    assert fit["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    assert params["AppSpecification"]["ContainerEntrypoint"] == PANEL_FIT_ENTRYPOINT
    cluster = params["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceCount.$"] == "$.shards" and "InstanceCount" not in cluster
    found = inputs(fit)
    # Only the train shards are split between instances; each gets every test file and the document.
    # The whole train part too, for a pooled family's statistics over every series.
    # And the tuning job's trials, whose best global choice every instance fits.
    assert {name: source["S3DataDistributionType"] for name, source in found.items()} == {
        "train": "ShardedByS3Key", WHOLE_TRAIN_CHANNEL: "FullyReplicated", "test": "FullyReplicated",
        "settings": "FullyReplicated", TRIALS_INPUT: "FullyReplicated"}
    assert found[TRIALS_INPUT]["S3Uri.$"].endswith(f"{layout.MODELS}', $.runId)")
    assert layout.TRAIN in found["train"]["S3Uri.$"] and layout.TEST in found["test"]["S3Uri.$"]
    assert found[WHOLE_TRAIN_CHANNEL]["S3Uri.$"] == found["train"]["S3Uri.$"]
    (output,) = params["ProcessingOutputConfig"]["Outputs"]
    assert layout.SHARD_MODELS in output["S3Output"]["S3Uri.$"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/output/shards"
    # the choice comes from the trials of this run's tuning job
    assert params["Environment"][f"{TUNING_JOB_ENV}.$"] == "$.tuning.name"
    assert definition["States"]["Select"]["Parameters"]["Environment"][f"{TUNING_JOB_ENV}.$"] == "$.tuning.name"


def test_evaluation_reads_the_shards_as_its_model(definition):
    states = definition["States"]
    shards_as_model = states["ShardsAsModel"]
    assert shards_as_model["ResultPath"] == "$.model"
    assert set(shards_as_model["Parameters"]) == {"modelData.$"}
    assert layout.SHARD_MODELS in shards_as_model["Parameters"]["modelData.$"]
    for name in ("InputsWithChampion", "InputsWithoutChampion"):
        (model,) = [i for i in states[name]["Parameters"]["inputs"] if i["InputName"] == "model"]
        assert model["S3Input"]["S3Uri.$"] == "$.model.modelData"


def test_a_panels_per_item_backtest_is_exported_beside_its_forecast(definition):
    states = definition["States"]
    assert states["ExportRunForecast"]["Next"] == "PanelBacktest?"
    choice = states["PanelBacktest?"]
    assert choice["Choices"] == [{"Variable": "$.shards", "NumericGreaterThan": 0, "Next": "ExportRunBacktest"}]
    assert choice["Default"] == "Promoted?" and states["ExportRunBacktest"]["Next"] == "Promoted?"
    copy = states["ExportRunBacktest"]["Parameters"]
    assert f"{layout.FORECAST}{layout.BACKTEST_FILE}" in copy["CopySource.$"]
    assert copy["Key.$"] == f"States.Format('{layout.FORECASTS}{{}}/{layout.BACKTEST_FILE}', $.runId)"


def test_the_tuning_job_minimises_cv_mase_for_a_panel_and_one_series_alike(definition):
    """One series' CV MASE and a panel's mean CV MASE share the metric; the local search minimises it."""
    states = definition["States"]
    assert states["Preprocess"]["Next"] == "Tune"
    tune = states["Tune"]["Parameters"]
    assert tune["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize", "MetricName": "cv_mase"}
    definitions = tune["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    assert {d["Name"]: d["Regex"] for d in definitions} == {"cv_mse": r"cv_mse=([0-9.eE+-]+);",
                                                             "cv_mase": r"cv_mase=([0-9.eE+-]+);"}
