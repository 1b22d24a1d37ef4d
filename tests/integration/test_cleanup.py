"""Regression: endpoints orphaned by `cdk destroy`. The clean-up Lambda deletes the pipeline's tagged
endpoint, endpoint configs and models (moto SageMaker), stops running runs, and leaves the rest alone."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from tests.infra.lambdas import load

cleanup = load("cleanup")
TAG = "forecast-mlops:stack"
ROLE = "arn:aws:iam::123456789012:role/sm"
ENV = {"STACK_NAME": "ForecastMlops", "TAG_KEY": TAG, "RESOURCE_PREFIX": "fcst", "ENDPOINT_NAME": "forecast-mlops"}


@pytest.fixture
def aws(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                       **ENV}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield boto3.client("sagemaker"), boto3.client("stepfunctions")


def _deploy(sm, model: str, config: str, endpoint: str | None, stack: str | None) -> None:
    tags = [{"Key": TAG, "Value": stack}] if stack else []
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/s:1"}, Tags=tags)
    sm.create_endpoint_config(EndpointConfigName=config, Tags=tags, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}])
    if endpoint:
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=tags)


def test_delete_removes_only_our_tagged_resources(aws, monkeypatch):
    sm, sfn = aws
    _deploy(sm, "fcst-run1-m0", "fcst-run1-c0", "forecast-mlops", "ForecastMlops")   # ours, serving
    _deploy(sm, "fcst-run0-m0", "fcst-run0-c0", None, "ForecastMlops")               # ours, superseded
    _deploy(sm, "fcst-other-m0", "fcst-other-c0", None, "AnotherStack")             # same prefix, other stack
    _deploy(sm, "fcst-untagged-m0", "fcst-untagged-c0", None, None)                 # same prefix, no tag
    _deploy(sm, "someone-m", "someone-c", "someone-endpoint", None)                  # untagged, not ours
    machine = sfn.create_state_machine(name="p", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    sfn.start_execution(stateMachineArn=machine, name="run-2", input="{}")  # RUNNING in moto
    deploy = sfn.create_state_machine(name="d", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    sfn.start_execution(stateMachineArn=deploy, name="deploy-1", input="{}")
    monkeypatch.setenv("STATE_MACHINE_ARN", machine)
    monkeypatch.setenv("DEPLOY_STATE_MACHINE_ARN", deploy)
    responses = []
    monkeypatch.setattr(cleanup, "send", lambda event, context, status, reason="", data=None: responses.append((status, data)))

    cleanup.handler({"RequestType": "Delete", "StackId": "s", "RequestId": "r", "LogicalResourceId": "l",
                     "ResponseURL": "https://example.invalid", "PhysicalResourceId": "forecast-mlops-cleanup"})

    assert responses == [("SUCCESS", {"executions": "2", "endpoints": "1", "endpoint_configs": "2", "models": "2"})]
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["someone-endpoint"]
    assert sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]) == [
        "fcst-other-c0", "fcst-untagged-c0", "someone-c"]
    assert sorted(m["ModelName"] for m in sm.list_models()["Models"]) == ["fcst-other-m0", "fcst-untagged-m0", "someone-m"]
    for arn in (machine, deploy):
        assert sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"] == []


def test_create_and_update_do_nothing_and_errors_fail_the_delete(aws, monkeypatch):
    sm, _ = aws
    _deploy(sm, "fcst-run1-m0", "fcst-run1-c0", "forecast-mlops", "ForecastMlops")
    responses = []
    monkeypatch.setattr(cleanup, "send", lambda event, context, status, reason="", data=None: responses.append((status, reason)))
    base = {"StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResponseURL": "https://example.invalid"}
    cleanup.handler({**base, "RequestType": "Create"})
    cleanup.handler({**base, "RequestType": "Update"})
    assert [r[0] for r in responses] == ["SUCCESS", "SUCCESS"]
    assert sm.list_endpoints()["Endpoints"]
    monkeypatch.setattr(cleanup, "cleanup", lambda **kw: (_ for _ in ()).throw(RuntimeError("AccessDenied")))
    cleanup.handler({**base, "RequestType": "Delete"})
    assert responses[-1][0] == "FAILED" and "AccessDenied" in responses[-1][1]


def test_the_response_goes_to_the_presigned_url(monkeypatch):
    sent = {}

    class Response:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def urlopen(request, timeout):
        sent["url"], sent["body"], sent["method"] = request.full_url, json.loads(request.data), request.get_method()
        return Response()

    monkeypatch.setattr(cleanup.urllib.request, "urlopen", urlopen)
    cleanup.send({"StackId": "s", "RequestId": "r", "LogicalResourceId": "l", "ResponseURL": "https://cfn.invalid/x"},
                 None, "SUCCESS", data={"n": "1"})
    assert sent["method"] == "PUT" and sent["url"] == "https://cfn.invalid/x"
    assert sent["body"]["Status"] == "SUCCESS" and sent["body"]["PhysicalResourceId"] == "forecast-mlops-cleanup"


def test_another_deployments_endpoint_with_our_prefix_is_never_looked_at(aws, monkeypatch):
    """The role may read the tags of our endpoint only: reading another's (AccessDenied in AWS) failed
    the stack's deletion. Only the endpoint named ENDPOINT_NAME is ours."""
    sm, _ = aws
    _deploy(sm, "fcst-run1-m0", "fcst-run1-c0", "forecast-mlops", "ForecastMlops")
    _deploy(sm, "fcst-b-m0", "fcst-b-c0", "fcst-endpoint-b", "OtherDeployment")  # same prefix, its own endpoint
    looked_at: list[str] = []
    tagged = cleanup._tagged
    monkeypatch.setattr(cleanup, "_tagged", lambda arn, *a: looked_at.append(arn) or tagged(arn, *a))
    done = cleanup.cleanup(stack_name="ForecastMlops", tag_key=TAG, prefix="fcst", endpoint_name="forecast-mlops")
    assert done["endpoints"] == ["forecast-mlops"]
    assert not [arn for arn in looked_at if ":endpoint/" in arn and not arn.endswith("/forecast-mlops")]
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["fcst-endpoint-b"]
