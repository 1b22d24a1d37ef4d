"""Manual approval through the emulated cloud: a candidate waits in the registry; approving it deploys
it (the registry's state-change event starts the deploy machine), rejecting one deploys nothing.

Its own module: one emulated deployment per process at a time (moto's state is process-wide), and the
path tests' deployment lives for their whole module.
"""

from __future__ import annotations

import json

import pytest

from tests.cloud.scenario import upload_and_serve
from tests.cloud.series import MONTHLY
from tests.cloud.stack import synthesize
from tests.cloud.world import CloudWorld

pytestmark = pytest.mark.slow


def test_manual_approval_deploys_on_approval_only(monkeypatch):
    manual = synthesize({"approval_mode": "manual"})
    with CloudWorld(manual, monkeypatch) as world:
        run = upload_and_serve(world, MONTHLY)
        assert run.pipeline["status"] == "SUCCEEDED", run.problems()
        assert run.deploys == [] and world.endpoint() is None
        package = world.packages()[-1]
        assert package["ModelApprovalStatus"] == "PendingManualApproval"
        world.approve(package["ModelPackageArn"])
        world.settle()
        deploy = world.executions()[-1]
        assert deploy["status"] == "SUCCEEDED" and "CreateEndpoint" in deploy["states"]
        response = world.forecast({"periods": 12, "conf": 0.8})
        assert response["statusCode"] == 200 and len(json.loads(response["body"])["forecasts"]) == 12
        upload_and_serve(world, MONTHLY)
        executions = len(world.executions())
        world.approve(world.packages()[-1]["ModelPackageArn"], "Rejected")
        world.settle()
        assert len(world.executions()) == executions  # a rejection deploys nothing
        assert world.findings() == []
