"""A panel upload through the emulated cloud: the fit sharded over two instances, one registered model.

Six monthly series with ``series.instances: 2``: processing writes two shard files, the tuning job
scores the panel's global choices, the sharded fit runs as one processing job on two instances (each
receives only its train shard file, ShardedByS3Key, and every train file for the pooled family's
statistics, and writes its partial panel under its own host name), evaluation merges the shards and
gates, registration and the deploy machine serve the merged model, and the endpoint answers an
``item_id`` request with the local pipeline's forecast.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from pipeline_code.engine.core.panel_artifact import PanelModel
from pipeline_code.engine.panel_data import shard_of
from pipeline_code.entrypoints.sagemaker_paths import WHOLE_TRAIN_CHANNEL
from pipeline_code.pipeline import layout
from tests.cloud.scenario import request_for, serve_locally, upload_and_serve
from tests.cloud.series import PANEL, PANEL_ITEMS, local_run
from tests.cloud.test_same_forecast import registered_model, without_volatile
from tests.cloud.world import CloudWorld

pytestmark = pytest.mark.slow
SHARDS = PANEL["settings"]["series"]["instances"]


def download(world: CloudWorld, prefix: str, target: Path) -> Path:
    s3 = boto3.client("s3", region_name="us-east-1")
    for item in s3.list_objects_v2(Bucket=world.bucket, Prefix=prefix).get("Contents", []):
        path = target / item["Key"][len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(world.read(item["Key"]))
    return target


def test_a_panel_is_fitted_in_shards_merged_registered_and_served(world, tmp_path):
    cloud = upload_and_serve(world, PANEL)
    assert cloud.problems() == []
    assert "FitShards" in cloud.states() and "ShardsAsModel" in cloud.states()

    # One processing job on two instances; each received one train shard file, all test files.
    (fit_job,) = [name for kind, name in world.jobs.created if kind == "processing" and "-fit" in name]
    received = world.jobs.runner.received[fit_job]
    assert sorted(received) == ["algo-1", "algo-2"]
    train = {host: [key.rsplit("/", 1)[-1] for key in inputs["train"]] for host, inputs in received.items()}
    assert sorted(f for files in train.values() for f in files) == [f"series-{k:05d}.csv" for k in range(SHARDS)]
    assert all(len(files) == 1 for files in train.values())
    assert all(len(inputs["test"]) == SHARDS for inputs in received.values())
    # and every train file again, to sum the pooled family's statistics over the whole panel
    assert all(sorted(inputs[WHOLE_TRAIN_CHANNEL]) == sorted(k for files in received.values() for k in files["train"])
               for inputs in received.values())
    assert world.jobs.runner.overwritten == []

    # Each instance's partial panel holds exactly the items of its shard, under its own host name.
    shards = download(world, layout.run_key(cloud.run_id, layout.SHARD_MODELS), tmp_path / "shards")
    for host, (file_name,) in train.items():
        shard = int(file_name.removeprefix("series-").removesuffix(".csv"))
        expected = sorted(item for item in PANEL_ITEMS if shard_of(item, SHARDS) == shard)
        assert expected and PanelModel.load(shards / host).items == expected

    # One registered version holds every series; the endpoint answers an item with the local forecast.
    model = registered_model(world, tmp_path)
    assert PanelModel.load(model).items == sorted(PANEL_ITEMS)
    local = local_run(PANEL)
    assert local.promoted
    assert without_volatile(cloud.served()) == \
        without_volatile(serve_locally(local.version.model_dir, request_for(PANEL)))
    workdir = local.run_dir.parents[1]
    assert world.read(f"forecasts/{cloud.run_id}/forecast.csv") == \
        (workdir / "forecasts" / local.run_id / "forecast.csv").read_bytes()
    # The deploy machine exports the served panel's per-item backtest beside the latest forecast.
    backtest = world.read(layout.LATEST_BACKTEST)
    assert backtest == world.read(f"forecasts/{cloud.run_id}/{layout.BACKTEST_FILE}")
    assert backtest.startswith(b"item_id,")
    # An item the model does not hold: a 404 naming it through the API, never a 5xx.
    unknown = world.forecast({**PANEL["request"], "item_id": "no-such-sku"})
    assert unknown["statusCode"] == 404 and "no-such-sku" in unknown["body"]
