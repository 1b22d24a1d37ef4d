"""Upload to served forecast through the emulated cloud: the same model and numbers as the local pipeline.

For each series (the bundled weekly data, a daily series, and a monthly one searched over four
families, whose served model is a combination) the run document goes up as the settings
file beside the data; the cloud run's registered artifact, its forecast file and the forecast
the API serves must equal what `run_pipeline` produces locally for the same data and document.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from pipeline_code.pipeline import layout
from pipeline_code.pipeline.trials import NOT_SCORED, SELECTION_FILE
from tests.cloud.scenario import request_for, serve_locally, upload_and_serve
from tests.cloud.series import MONTHLY, SERIES, local_run, search
from tests.cloud.world import CloudWorld

pytestmark = pytest.mark.slow


def registered_model(world: CloudWorld, tmp_path: Path) -> Path:
    """The deployed package's artifact, extracted."""
    arn = world.packages()[-1]["ModelPackageArn"]
    import boto3

    package = boto3.client("sagemaker", region_name="us-east-1").describe_model_package(ModelPackageName=arn)
    url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    return tmp_path / "model"


MODEL_JSON = "model.json"
# Stamped when and where the artifact was made, not what it is.
VOLATILE = ("trained_at", "version")


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def without_volatile(response: dict) -> dict:
    model = {k: v for k, v in response["model"].items() if k not in VOLATILE}
    return {**response, "model": model}


def comparable(model_json: Path) -> dict:
    document = json.loads(model_json.read_text())
    for key in VOLATILE:
        document.get("metadata", {}).pop(key, None)
    return document


@pytest.mark.parametrize("name", list(SERIES))
def test_the_cloud_path_serves_the_local_pipelines_forecast(name, world, tmp_path):
    series = SERIES[name]
    cloud = upload_and_serve(world, series)
    assert cloud.problems() == []
    local = local_run(series)
    assert local.promoted

    workdir = local.run_dir.parents[1]
    assert world.read(f"forecasts/{cloud.run_id}/forecast.csv") == \
        (workdir / "forecasts" / local.run_id / "forecast.csv").read_bytes()
    assert world.read("forecasts/latest/forecast.csv") == world.read(f"forecasts/{cloud.run_id}/forecast.csv")
    local_model = local.version.model_dir
    # The same numbers and model; the training time and the registry's version stamp are each path's own.
    assert without_volatile(cloud.served()) == without_volatile(serve_locally(local_model, request_for(series)))
    # The deployed package's version, set on the SageMaker model by the deploy state machine.
    assert cloud.served()["model"]["version"] == str(world.packages()[-1]["ModelPackageVersion"])

    cloud_model = registered_model(world, tmp_path)
    if name == "combined":  # search.serve's equal top 3, fitted by the Select job: not the best trial
        assert json.loads((cloud_model / MODEL_JSON).read_text())["family"] == "combination"
        selection = json.loads(world.read(f"runs/{cloud.run_id}/{layout.SELECTION_REPORT}{SELECTION_FILE}"))
        assert selection["serve"] == "equal top 3" and selection["trials"] == 4
        assert len(selection["members"]) == 3 and len(set(selection["members"])) == 3
    assert files(cloud_model) == files(local_model)
    for name in files(local_model):
        if name == MODEL_JSON:
            assert comparable(cloud_model / name) == comparable(local_model / name)
        else:
            assert (cloud_model / name).read_bytes() == (local_model / name).read_bytes(), name


def test_a_familys_failed_trial_leaves_the_rest_of_the_search_to_serve(world):
    """One family's training job fails: the Select job scores its candidates failed (the tuning report
    says why) and serves what the local pipeline serves without that family."""
    two = {**MONTHLY, "settings": {**MONTHLY["settings"], "search": search(
        families=["harmonic_arima", "seasonal_naive"], use_counterfactual_data=[1], detrend=[0],
        deseasonalize=[0, 1], fourier_k=[2])}}
    world.jobs.fail_trials = {"seasonal_naive"}
    cloud = upload_and_serve(world, two)
    assert cloud.problems() == []
    report = json.loads(world.read(f"runs/{cloud.run_id}/{layout.SELECTION_REPORT}{layout.TUNING_FILE}"))
    assert report["failures"] == {"seasonal_naive": NOT_SCORED}
    local = local_run(MONTHLY)  # the same document but for that family
    workdir = local.run_dir.parents[1]
    assert world.read(f"forecasts/{cloud.run_id}/forecast.csv") == \
        (workdir / "forecasts" / local.run_id / "forecast.csv").read_bytes()
