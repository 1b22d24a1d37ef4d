"""The deployment paths through the emulated cloud, upload to served forecast (monthly series).

One emulated deployment lives through a sequence of uploads (module fixture `history`); each test
checks one step: the first run creates the endpoint, a second (the same candidate on a year of newer
data) updates it, a worse candidate leaves it untouched, a failed job notifies and leaves it untouched,
a bad settings file starts nothing, a Failed endpoint is deleted and created again.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cloud.scenario import CloudRun, upload_and_serve
from tests.cloud.series import MONTHLY, MONTHLY_PERIODS, document, monthly_data
from tests.cloud.world import CloudWorld

pytestmark = pytest.mark.slow

# Misses the series' second harmonic: worse than the approved model by more than the gate allows.
WEAK = document(freq="MS", season_length=12, horizon=12, window=96, step=4, deseasonalize=[0], fourier_k=[1])


def snapshot(world: CloudWorld) -> dict[str, Any]:
    return {"endpoint": world.endpoint(), "packages": [p["ModelApprovalStatus"] for p in world.packages()],
            "messages": len(world.messages()), "executions": len(world.executions())}


@pytest.fixture(scope="module")
def history(stack):
    steps: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp, CloudWorld(stack, mp) as world:
        steps["first"] = (upload_and_serve(world, MONTHLY), snapshot(world))
        # a year of newer data: the same candidate refitted is a refresh the gate lets through
        newer = monthly_data(MONTHLY_PERIODS + 12)
        steps["second"] = (upload_and_serve(world, MONTHLY, data=newer), snapshot(world))
        steps["worse"] = (upload_and_serve(world, MONTHLY, settings=WEAK, data=newer), snapshot(world))
        world.jobs.fail = {"tuning"}
        steps["failed"] = (upload_and_serve(world, MONTHLY, data=newer), snapshot(world))
        world.jobs.fail = set()
        before = snapshot(world)
        refused = world.upload(MONTHLY["name"], MONTHLY["data"], {**MONTHLY["settings"], "cv": {"windw": 96}})
        world.settle()
        steps["bad settings"] = (refused, before, snapshot(world), world.messages()[-1])
        approved = [p for p in world.packages() if p["ModelApprovalStatus"] == "Approved"][-1]["ModelPackageArn"]
        world.endpoint_record().endpoint_status = "Failed"
        world.redeliver_package_event(approved)
        world.settle()
        steps["failed endpoint"] = (world.executions()[-1], snapshot(world), world.forecast({"periods": 12, "conf": 0.8}))
        steps["findings"] = world.findings()
        yield steps


def deploy_states(run: CloudRun) -> list[str]:
    return [s for e in run.deploys for s in e["states"]]


def test_the_first_run_creates_the_endpoint(history):
    run, after = history["first"]
    assert run.problems() == []
    assert "CreateEndpoint" in deploy_states(run) and "UpdateEndpoint" not in deploy_states(run)
    assert after["endpoint"]["status"] == "InService" and after["packages"] == ["Approved"]


def test_a_second_run_updates_the_same_endpoint(history):
    first, before = history["first"]
    run, after = history["second"]
    assert run.problems() == []
    assert "UpdateEndpoint" in deploy_states(run) and "CreateEndpoint" not in deploy_states(run)
    assert after["endpoint"]["status"] == "InService"
    assert after["endpoint"]["config"] != before["endpoint"]["config"]
    assert after["packages"] == ["Approved", "Approved"]


def test_a_worse_candidate_leaves_the_endpoint_untouched(history):
    _, before = history["second"]
    run, after = history["worse"]
    assert run.pipeline["status"] == "SUCCEEDED" and run.deploys == []
    assert after["endpoint"] == before["endpoint"]
    assert after["packages"][-1] == "PendingManualApproval"
    assert run.served() is not None  # the endpoint still serves the approved model


def test_a_failed_job_notifies_and_leaves_the_endpoint_untouched(history):
    _, before = history["worse"]
    run, after = history["failed"]
    assert run.pipeline["status"] == "FAILED" and run.deploys == []
    assert "NotifyFailure" in run.pipeline["states"]
    assert after["endpoint"] == before["endpoint"] and after["packages"] == before["packages"]
    assert after["messages"] == before["messages"] + 1


def test_a_bad_settings_file_starts_nothing(history):
    refused, before, after, message = history["bad settings"]
    assert refused["data"]["result"] == {"batchItemFailures": []}
    assert after["executions"] == before["executions"]
    assert after["endpoint"] == before["endpoint"] and after["packages"] == before["packages"]
    assert "windw" in message


def test_a_failed_endpoint_is_deleted_and_created_again(history):
    execution, after, response = history["failed endpoint"]
    assert execution["status"] == "SUCCEEDED"
    assert "DeleteFailedEndpoint" in execution["states"] and "CreateEndpoint" in execution["states"]
    assert after["endpoint"]["status"] == "InService"
    assert response["statusCode"] == 200


def test_every_call_of_the_sequence_was_allowed_and_valid(history):
    assert history["findings"] == []
