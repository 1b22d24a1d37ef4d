"""Upload to served forecast through the emulated cloud: the same model and numbers as the local pipeline.

For each series (the bundled weekly data, a monthly and a daily series) the run document goes up as the
settings file beside the data; the cloud run's registered artifact, its forecast file and the forecast
the API serves must equal what `run_pipeline` produces locally for the same data and document.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.cloud.scenario import request_for, serve_locally, upload_and_serve
from tests.cloud.series import SERIES, local_run
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


@pytest.mark.parametrize("name", list(SERIES))
def test_the_cloud_path_serves_the_local_pipelines_forecast(name, world, tmp_path):
    series = SERIES[name]
    cloud = upload_and_serve(world, series)
    assert cloud.problems() == []
    local = local_run(series)
    assert local.promoted

    cloud_model = registered_model(world, tmp_path)
    local_model = local.version.model_dir
    assert sorted(p.relative_to(cloud_model).as_posix() for p in cloud_model.rglob("*")) == \
        sorted(p.relative_to(local_model).as_posix() for p in local_model.rglob("*"))
    for path in local_model.rglob("*"):
        if path.is_file():
            assert (cloud_model / path.relative_to(local_model)).read_bytes() == path.read_bytes(), path.name

    workdir = local.run_dir.parents[1]
    assert world.read(f"forecasts/{cloud.run_id}/forecast.csv") == \
        (workdir / "forecasts" / local.run_id / "forecast.csv").read_bytes()
    assert world.read("forecasts/latest/forecast.csv") == world.read(f"forecasts/{cloud.run_id}/forecast.csv")
    assert cloud.served() == serve_locally(local_model, request_for(series))
