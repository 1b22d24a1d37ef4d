"""The synthesized training pipeline, executed in moto (see aws_fakes.py for the test-only extensions).

Each test uploads to a moto bucket and starts the run the way production does: the starter Lambda's
handler receives the EventBridge event (as the SQS message) and calls StartExecution with the name it
derives from the key and version id.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stacks.pipeline_definition import Refs, build_definition
from stacks.settings import InfraSettings
from tests.infra import synth
from tests.integration import aws_fakes
from tests.integration.aws_fakes import evaluation_report, state_sequence, wait_for

REPO = Path(__file__).resolve().parents[2]
SETTINGS = InfraSettings()


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", REPO / "lambdas" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


start_run = _load("start_run")


def fast(definition: dict[str, Any]) -> dict[str, Any]:
    """Test-only: no real waiting between endpoint polls and retries (the logic is unchanged)."""
    d = copy.deepcopy(definition)

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state["Type"] == "Wait":
                state["Seconds"] = 0
            for retry in state.get("Retry", []):
                retry["IntervalSeconds"] = 1
                retry["MaxDelaySeconds"] = 1
                retry.pop("JitterStrategy", None)
            if state["Type"] == "Map":
                walk(state["ItemProcessor"]["States"])

    walk(d["States"])
    return d


class Pipeline:
    """moto world: bucket, topic, state machine; uploads go through the starter handler."""

    def __init__(self, definition: dict[str, Any], refs: dict[str, str], world: aws_fakes.JobWorld) -> None:
        self.world = world
        self.s3 = boto3.client("s3", region_name=synth.REGION)
        self.sfn = boto3.client("stepfunctions", region_name=synth.REGION)
        self.sm = boto3.client("sagemaker", region_name=synth.REGION)
        self.sns = boto3.client("sns", region_name=synth.REGION)
        self.bucket = refs[next(k for k in refs if k.startswith("StorageData") and "." not in k)]
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        topic_id = next(k for k in refs if k.startswith("NotificationsTopic") and "." not in k)
        self.topic_arn = self.sns.create_topic(Name=topic_id)["TopicArn"]
        assert self.topic_arn == refs[topic_id]
        self.arn = self.sfn.create_state_machine(
            name="pipeline", definition=json.dumps(fast(definition)),
            roleArn=f"arn:aws:iam::{synth.ACCOUNT}:role/pipeline",
        )["stateMachineArn"]

    def upload(self, key: str = "raw/gasoline.csv", body: bytes = b"timestamp,value\n") -> dict[str, Any]:
        version = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]
        return {"detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": self.bucket}, "object": {"key": key, "version-id": version}}}

    def deliver(self, event: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
        os.environ["STATE_MACHINE_ARN"] = self.arn
        return start_run.handler({"Records": [{"messageId": message_id, "body": json.dumps(event)}]})

    def run(self, **world: Any) -> dict[str, Any]:
        for k, v in world.items():
            setattr(self.world, k, v)
        event = self.upload()
        assert self.deliver(event) == {"batchItemFailures": []}
        executions = self.sfn.list_executions(stateMachineArn=self.arn)["executions"]
        name = start_run.run_id(event["detail"]["object"]["key"], event["detail"]["object"]["version-id"])
        execution = next(e for e in executions if e["name"] == name)
        result = wait_for(self.sfn, execution["executionArn"])
        result["states"] = state_sequence(self.sfn, execution["executionArn"])
        return result

    def endpoint(self) -> dict[str, Any] | None:
        try:
            return self.sm.describe_endpoint(EndpointName=SETTINGS.endpoint_name)
        except self.sm.exceptions.ClientError:
            return None

    def packages(self) -> list[dict[str, Any]]:
        groups = self.sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
        assert len(groups) <= 1
        if not groups:
            return []
        return self.sm.list_model_packages(ModelPackageGroupName=groups[0]["ModelPackageGroupName"],
                                           SortBy="CreationTime", SortOrder="Ascending")["ModelPackageSummaryList"]

    def messages(self) -> list[str]:
        from moto.sns.models import sns_backends

        topic = sns_backends[synth.ACCOUNT][synth.REGION].topics[self.topic_arn]
        return [n[1] for n in topic.sent_notifications]

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture
def aws_env(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": synth.REGION}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # the interpreter logs every caught error
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield aws_fakes.install(monkeypatch)


@pytest.fixture(scope="module")
def synthesized() -> tuple[dict[str, Any], dict[str, str]]:
    refs = synth.fake_refs()
    return synth.pipeline_definition(refs), refs


@pytest.fixture
def pipeline(aws_env, synthesized) -> Pipeline:
    definition, refs = synthesized
    return Pipeline(definition, refs, aws_env)


def test_first_run_creates_the_endpoint_then_the_second_updates_the_same_endpoint(pipeline):
    first = pipeline.run()
    assert first["status"] == "SUCCEEDED", first
    # Empty registry: the group is created, no champion goes to the evaluation.
    assert "CreateRegistry" in first["states"] and "InputsWithoutChampion" in first["states"]
    assert "CreateEndpoint" in first["states"] and "UpdateEndpoint" not in first["states"]
    endpoint = pipeline.endpoint()
    assert endpoint["EndpointStatus"] == "InService"
    first_config = endpoint["EndpointConfigName"]
    config = pipeline.sm.describe_endpoint_config(EndpointConfigName=first_config)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": SETTINGS.serverless_memory_mb, "MaxConcurrency": SETTINGS.serverless_max_concurrency}
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["Approved"]
    first_forecast = pipeline.read("forecasts/latest/forecast.csv")
    assert first_forecast.startswith(b"timestamp,mean")
    run1 = first["name"] if "name" in first else first["executionArn"].rsplit(":", 1)[-1]
    assert pipeline.read(f"forecasts/{run1}/forecast.csv") == first_forecast

    second = pipeline.run(evaluation=evaluation_report(passed=True, mase=0.7))
    assert second["status"] == "SUCCEEDED", second
    assert "EnsureRegistry" in second["states"] and "CreateRegistry" not in second["states"]
    assert "DescribeChampion" in second["states"]
    assert "UpdateEndpoint" in second["states"] and "CreateEndpoint" not in second["states"]
    endpoint2 = pipeline.endpoint()
    assert endpoint2["EndpointName"] == SETTINGS.endpoint_name
    assert endpoint2["EndpointConfigName"] != first_config
    assert aws_fakes.UPDATES == [(SETTINGS.endpoint_name, endpoint2["EndpointConfigName"])]
    # The superseded config is deleted only after the endpoint serves the new one.
    names = [c["EndpointConfigName"] for c in pipeline.sm.list_endpoint_configs()["EndpointConfigs"]]
    assert names == [endpoint2["EndpointConfigName"]]
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["Approved", "Approved"]
    # The second evaluation compared against the champion.
    evaluations = [name for kind, name in pipeline.world.created if kind == "evaluation"]
    assert pipeline.world.inputs[evaluations[0]] == ["train", "test", "model"]
    assert pipeline.world.inputs[evaluations[1]] == ["train", "test", "model", "champion"]
    # Every SageMaker resource the pipeline created carries the clean-up tag.
    for arn in (endpoint2["EndpointArn"],
                pipeline.sm.describe_endpoint_config(EndpointConfigName=endpoint2["EndpointConfigName"])["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in pipeline.sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags[SETTINGS.tag_key] == synth.STACK
    assert any("deployed model package" in m for m in pipeline.messages())


def test_a_worse_candidate_is_registered_pending_and_the_endpoint_is_untouched(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    before = pipeline.endpoint()
    latest = pipeline.read("forecasts/latest/forecast.csv")

    worse = pipeline.run(evaluation=evaluation_report(passed=False, reason="MASE 1.2 is not below 0.8", mase=1.2))
    assert worse["status"] == "SUCCEEDED"
    assert worse["states"][-1] == "NotPromoted"
    assert "CreateModel" not in worse["states"] and "UpdateEndpoint" not in worse["states"]
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["Approved", "PendingManualApproval"]
    after = pipeline.endpoint()
    assert after["EndpointConfigName"] == before["EndpointConfigName"]
    assert aws_fakes.UPDATES == []
    assert pipeline.read("forecasts/latest/forecast.csv") == latest
    assert any("PendingManualApproval" in m and "not changed" in m for m in pipeline.messages())


def test_a_failing_processing_job_notifies_and_fails_with_the_endpoint_untouched(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    before = pipeline.endpoint()
    failed = pipeline.run(fail={"preprocess"})
    assert failed["status"] == "FAILED"
    assert failed["states"][-2:] == ["NotifyFailure", "RunFailed"]
    assert "Tune" not in failed["states"]
    assert pipeline.endpoint()["EndpointConfigName"] == before["EndpointConfigName"]
    assert aws_fakes.UPDATES == []
    message = pipeline.messages()[-1]
    assert "failed" in message and "non-numeric" in message


def test_the_first_run_with_a_failing_evaluation_creates_no_endpoint(pipeline):
    failed = pipeline.run(fail={"evaluation"})
    assert failed["status"] == "FAILED"
    assert failed["states"][-2:] == ["NotifyFailure", "RunFailed"]
    assert pipeline.endpoint() is None


def test_retried_jobs_get_new_names_within_sagemaker_limits(pipeline):
    """Regression: a create that succeeded but answered with a throttle must not collide on retry."""
    result = pipeline.run(throttle_once_after_create={"preprocess", "tuning"})
    assert result["status"] == "SUCCEEDED", result
    names = {kind: [n for k, n in pipeline.world.created if k == kind] for kind in ("preprocess", "tuning")}
    assert [n[-1] for n in names["preprocess"]] == ["0", "1"]
    assert [n[-1] for n in names["tuning"]] == ["0", "1"]
    assert len(set(names["preprocess"])) == 2 and len(set(names["tuning"])) == 2
    assert all(len(n) <= 63 for n in names["preprocess"]) and all(len(n) <= 32 for n in names["tuning"])


def test_a_duplicate_upload_event_starts_one_execution(pipeline):
    event = pipeline.upload()
    assert pipeline.deliver(event, "m-1") == {"batchItemFailures": []}
    assert pipeline.deliver(event, "m-2") == {"batchItemFailures": []}  # same key + version: same name
    executions = pipeline.sfn.list_executions(stateMachineArn=pipeline.arn)["executions"]
    assert len(executions) == 1
    wait_for(pipeline.sfn, executions[0]["executionArn"])
    assert pipeline.deliver(event, "m-3") == {"batchItemFailures": []}  # also after it finished
    assert len(pipeline.sfn.list_executions(stateMachineArn=pipeline.arn)["executions"]) == 1


def test_manual_approval_mode_never_deploys(aws_env, synthesized):
    _, refs = synthesized
    automatic = synth.pipeline_definition(refs)
    settings = InfraSettings(approval_mode="manual")
    manual = build_definition(settings, Refs(
        bucket=automatic["States"]["ReadEvaluation"]["Parameters"]["Bucket"],
        sagemaker_role_arn=automatic["States"]["CreateModel"]["Parameters"]["ExecutionRoleArn"],
        training_image=automatic["States"]["Preprocess"]["Parameters"]["AppSpecification"]["ImageUri"],
        serving_image=automatic["States"]["CreateModel"]["Parameters"]["PrimaryContainer"]["Image"],
        topic_arn=automatic["States"]["NotifyFailure"]["Parameters"]["TopicArn"],
        stack_name=synth.STACK,
        model_package_group=automatic["States"]["EnsureRegistry"]["Parameters"]["ModelPackageGroupName"],
    ))
    pipeline = Pipeline(manual, refs, aws_env)
    result = pipeline.run(evaluation=evaluation_report(passed=True))
    assert result["status"] == "SUCCEEDED"
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["PendingManualApproval"]
    assert pipeline.endpoint() is None
