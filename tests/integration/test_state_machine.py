"""The synthesized training pipeline and deploy state machine, executed in moto (see aws_fakes.py for
the test-only extensions).

Each test uploads to a moto bucket and starts the run the way production does: the starter Lambda's
handler receives the EventBridge event (as the SQS message) and calls StartExecution with the name it
derives from the key and version id. moto's SageMaker emits no EventBridge events, so `Pipeline`
plays EventBridge for the registry: each package that became Approved yields the "SageMaker Model
Package State Change" event, which is matched against the synthesized rule's pattern (moto's
EventBridge pattern matcher) and, when it matches, starts the synthesized deploy state machine.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.events.models import EventPattern

from pipeline_code.engine.settings import TUNING_PARALLEL_ENV
from stacks.deploy_definition import APPROVED_EVENT_DETAIL_TYPE, build_deploy_definition
from stacks.pipeline_definition import Refs, build_definition
from stacks.settings import InfraSettings
from tests.infra import synth
from tests.integration import aws_fakes
from tests.integration.aws_fakes import evaluation_report, fast, state_sequence, wait_for

REPO = Path(__file__).resolve().parents[2]
BUNDLED = (REPO / "pipeline_code" / "data" / "us_gasoline.csv").read_bytes()  # the starter validates uploads
SETTINGS = InfraSettings()


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", REPO / "lambdas" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


start_run = _load("start_run")


class Pipeline:
    """moto world: bucket, topic, both state machines; uploads go through the starter handler."""

    def __init__(self, definition: dict[str, Any], refs: dict[str, str], world: aws_fakes.JobWorld,
                 deploy: dict[str, Any] | None = None) -> None:
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
        role = f"arn:aws:iam::{synth.ACCOUNT}:role/pipeline"
        self.arn = self.sfn.create_state_machine(
            name="pipeline", definition=json.dumps(fast(definition)), roleArn=role)["stateMachineArn"]
        self.deploy_arn = self.sfn.create_state_machine(
            name="deploy", definition=json.dumps(fast(deploy or synth.deploy_definition(refs))),
            roleArn=role)["stateMachineArn"]
        self.approval_pattern = json.dumps(approval_rule_pattern(refs))
        self.delivered: set[tuple[str, str]] = set()
        self.deploys: list[dict[str, Any]] = []

    def upload(self, key: str = "raw/gasoline.csv", body: bytes = BUNDLED) -> dict[str, Any]:
        version = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]
        return {"detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": self.bucket}, "object": {"key": key, "version-id": version}}}

    def deliver(self, event: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
        os.environ["STATE_MACHINE_ARN"] = self.arn
        os.environ[TUNING_PARALLEL_ENV] = str(InfraSettings().tuning.max_parallel_jobs)
        return start_run.handler({"Records": [{"messageId": message_id, "body": json.dumps(event)}]})

    def run(self, **world: Any) -> dict[str, Any]:
        """One upload -> its training run -> the deploy runs its registry events start (result["deploys"])."""
        for k, v in world.items():
            setattr(self.world, k, v)
        event = self.upload()
        assert self.deliver(event) == {"batchItemFailures": []}
        executions = self.sfn.list_executions(stateMachineArn=self.arn)["executions"]
        name = start_run.run_id(event["detail"]["object"]["key"], event["detail"]["object"]["version-id"])
        execution = next(e for e in executions if e["name"] == name)
        result = wait_for(self.sfn, execution["executionArn"])
        result["states"] = state_sequence(self.sfn, execution["executionArn"])
        result["deploys"] = self.registry_events()
        return result

    # -- EventBridge, played for the registry --------------------------------------------------------
    def package_event(self, arn: str) -> dict[str, Any]:
        """The "SageMaker Model Package State Change" event of a package as it is now."""
        package = self.sm.describe_model_package(ModelPackageName=arn)
        return {
            "version": "0", "id": f"event-{len(self.delivered)}", "detail-type": APPROVED_EVENT_DETAIL_TYPE,
            "source": "aws.sagemaker", "account": synth.ACCOUNT, "time": "2026-01-01T00:00:00Z",
            "region": synth.REGION, "resources": [arn],
            "detail": {k: package[k] for k in ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
                                                "ModelApprovalStatus", "ModelPackageStatus")},
        }

    def registry_events(self) -> list[dict[str, Any]]:
        """Deliver each package state not delivered yet; start the deploy machine where the rule matches."""
        results = []
        for package in self.packages():
            key = (package["ModelPackageArn"], package["ModelApprovalStatus"])
            if key in self.delivered:
                continue
            event = self.package_event(package["ModelPackageArn"])
            self.delivered.add(key)
            if EventPattern.load(self.approval_pattern).matches_event(event):
                results.append(self.start_deploy(event))
        return results

    def start_deploy(self, event: dict[str, Any]) -> dict[str, Any]:
        # EventBridge starts the target with a generated execution name.
        arn = self.sfn.start_execution(stateMachineArn=self.deploy_arn, name=str(uuid.uuid4()),
                                       input=json.dumps(event))["executionArn"]
        result = wait_for(self.sfn, arn)
        result["states"] = state_sequence(self.sfn, arn)
        self.deploys.append(result)
        return result

    def approve_another(self) -> dict[str, Any]:
        """Register a copy of the newest package as Approved (a new version) and deliver its event:
        a deployment without a training run."""
        newest = self.sm.describe_model_package(ModelPackageName=self.packages()[-1]["ModelPackageArn"])
        self.sm.create_model_package(
            ModelPackageGroupName=newest["ModelPackageGroupName"], ModelApprovalStatus="Approved",
            InferenceSpecification=newest["InferenceSpecification"],
            CustomerMetadataProperties=newest["CustomerMetadataProperties"],
        )
        (deploy,) = self.registry_events()
        return deploy

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


def approval_rule_pattern(refs: dict[str, str]) -> dict[str, Any]:
    """The synthesized EventBridge rule that starts the deploy machine, with references resolved."""
    rules = [r["Properties"] for r in synth.resources("AWS::Events::Rule").values()
             if r["Properties"]["EventPattern"].get("source") == ["aws.sagemaker"]]
    assert len(rules) == 1
    return synth.resolve(rules[0]["EventPattern"], refs)


def endpoint_backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[synth.ACCOUNT][synth.REGION]


@pytest.fixture
def aws_env(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": synth.REGION}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # the interpreter logs every caught error
    # Name aws-sdk errors the way Step Functions does (`SageMaker.SageMakerException` for unmodelled
    # errors such as ValidationException and ThrottlingException; moto uses the lower-case service name).
    # https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    for service, name in {"sagemaker": "SageMaker", "s3": "S3"}.items():
        monkeypatch.setitem(state_task_service_aws_sdk._SERVICE_ERROR_NAMES, service, name)
    # UpdateModelPackage changes only what it is given; moto 5.2.1 clears CustomerMetadataProperties
    # when an approval is all that changes. Keep them, as the service does.
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateModelPackage.html
    from moto.sagemaker.models import SageMakerModelBackend

    original_update = SageMakerModelBackend.update_model_package

    def update_model_package(self, model_package_arn, model_approval_status, approval_description,
                             customer_metadata_properties, *rest, **more):
        package = self.model_packages.get(self.model_package_name_mapping.get(model_package_arn, model_package_arn))
        kept = customer_metadata_properties if customer_metadata_properties is not None else (
            package.customer_metadata_properties if package else None)
        return original_update(self, model_package_arn, model_approval_status, approval_description, kept,
                               *rest, **more)

    monkeypatch.setattr(SageMakerModelBackend, "update_model_package", update_model_package)
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


def deployed(result: dict[str, Any]) -> dict[str, Any]:
    """The one deploy execution a run's Approved package started."""
    assert len(result["deploys"]) == 1, result["deploys"]
    return result["deploys"][0]


def test_first_run_creates_the_endpoint_then_the_second_updates_the_same_endpoint(pipeline):
    first = pipeline.run()
    assert first["status"] == "SUCCEEDED", first
    # Empty registry: the group is created, no champion goes to the evaluation.
    assert "CreateRegistry" in first["states"] and "InputsWithoutChampion" in first["states"]
    assert first["states"][-1] == "Approved" and "CreateEndpoint" not in first["states"]
    deploy = deployed(first)
    assert deploy["status"] == "SUCCEEDED", deploy
    assert "CreateEndpoint" in deploy["states"] and "UpdateEndpoint" not in deploy["states"]
    endpoint = pipeline.endpoint()
    assert endpoint["EndpointStatus"] == "InService"
    first_config = endpoint["EndpointConfigName"]
    config = pipeline.sm.describe_endpoint_config(EndpointConfigName=first_config)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": SETTINGS.serverless_memory_mb, "MaxConcurrency": SETTINGS.serverless_max_concurrency}
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["Approved"]
    first_forecast = pipeline.read("forecasts/latest/forecast.csv")
    assert first_forecast.startswith(b"timestamp,mean")
    run1 = first["executionArn"].rsplit(":", 1)[-1]
    assert pipeline.read(f"forecasts/{run1}/forecast.csv") == first_forecast

    second = pipeline.run(evaluation=evaluation_report(passed=True, mase=0.7))
    assert second["status"] == "SUCCEEDED", second
    assert "EnsureRegistry" in second["states"] and "CreateRegistry" not in second["states"]
    assert "DescribeChampion" in second["states"]
    deploy2 = deployed(second)
    assert "UpdateEndpoint" in deploy2["states"] and "CreateEndpoint" not in deploy2["states"]
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
    assert "champion" not in pipeline.world.inputs[evaluations[0]]
    assert pipeline.world.inputs[evaluations[1]][-2:] == ["model", "champion"]
    # Every SageMaker resource the deploy created carries the clean-up tag.
    for arn in (endpoint2["EndpointArn"],
                pipeline.sm.describe_endpoint_config(EndpointConfigName=endpoint2["EndpointConfigName"])["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in pipeline.sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags[SETTINGS.tag_key] == synth.STACK
    assert any("is deployed to endpoint" in m for m in pipeline.messages())


def test_registration_sends_no_tags_to_a_versioned_package(pipeline, monkeypatch):
    """CreateModelPackage with a ModelPackageGroupName refuses Tags (moto accepts them: checked here)."""
    from moto.sagemaker import responses

    original = responses.SageMakerResponse.create_model_package
    sent = []

    def create_model_package(self):
        sent.append(json.loads(self.body))
        return original(self)

    monkeypatch.setattr(responses.SageMakerResponse, "create_model_package", create_model_package)
    assert pipeline.run()["status"] == "SUCCEEDED"
    assert sent and all("ModelPackageGroupName" in r and "Tags" not in r for r in sent)


def test_a_worse_candidate_is_registered_pending_and_the_endpoint_is_untouched(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    before = pipeline.endpoint()
    latest = pipeline.read("forecasts/latest/forecast.csv")

    worse = pipeline.run(evaluation=evaluation_report(passed=False, reason="MASE 1.2 is not below 0.8", mase=1.2))
    assert worse["status"] == "SUCCEEDED"
    assert worse["states"][-1] == "NotPromoted"
    assert worse["deploys"] == []
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["Approved", "PendingManualApproval"]
    after = pipeline.endpoint()
    assert after["EndpointConfigName"] == before["EndpointConfigName"]
    assert aws_fakes.UPDATES == []
    assert pipeline.read("forecasts/latest/forecast.csv") == latest
    assert any("PendingManualApproval" in m and "not changed" in m for m in pipeline.messages())


def test_approving_a_pending_package_deploys_it_and_rejecting_does_not(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    worse = pipeline.run(evaluation=evaluation_report(passed=False, mase=1.2))
    assert worse["deploys"] == []
    pending = pipeline.packages()[-1]["ModelPackageArn"]
    before = pipeline.endpoint()["EndpointConfigName"]

    pipeline.sm.update_model_package(ModelPackageArn=pending, ModelApprovalStatus="Rejected")
    assert pipeline.registry_events() == []  # the rule does not match a rejection
    assert pipeline.endpoint()["EndpointConfigName"] == before

    pipeline.sm.update_model_package(ModelPackageArn=pending, ModelApprovalStatus="Approved")
    (deploy,) = pipeline.registry_events()
    assert deploy["status"] == "SUCCEEDED", deploy
    assert "UpdateEndpoint" in deploy["states"]
    version = pipeline.sm.describe_model_package(ModelPackageName=pending)["ModelPackageVersion"]
    assert pipeline.endpoint()["EndpointConfigName"].endswith(f"-v{version}-c")

    # SageMaker may send the event again: the second delivery changes nothing.
    again = pipeline.start_deploy(pipeline.package_event(pending))
    assert again["status"] == "SUCCEEDED" and again["states"][-1] == "AlreadyServing"
    assert len(aws_fakes.UPDATES) == 1  # the first deploy created the endpoint; the approval updated it


def test_a_stale_approval_event_deploys_nothing(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    first = pipeline.sm.describe_model_package(ModelPackageName=pipeline.packages()[0]["ModelPackageArn"])
    pending = pipeline.sm.create_model_package(
        ModelPackageGroupName=first["ModelPackageGroupName"], ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification=first["InferenceSpecification"],
        CustomerMetadataProperties=first["CustomerMetadataProperties"])["ModelPackageArn"]
    event = pipeline.package_event(pending)
    event["detail"]["ModelApprovalStatus"] = "Approved"  # delivered late: the package is pending again
    result = pipeline.start_deploy(event)
    assert result["status"] == "SUCCEEDED" and result["states"][-1] == "NotApproved"


def test_a_failed_endpoint_is_deleted_and_created_again(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    endpoint_backend().endpoints[SETTINGS.endpoint_name].endpoint_status = "Failed"
    deploy = pipeline.approve_another()
    assert deploy["status"] == "SUCCEEDED", deploy
    states = deploy["states"]
    assert states.index("DeleteFailedEndpoint") < states.index("CreateEndpoint")
    assert "UpdateEndpoint" not in states
    assert pipeline.endpoint()["EndpointStatus"] == "InService"


def test_a_terminal_endpoint_status_ends_the_wait_with_a_named_failure(pipeline, monkeypatch):
    assert pipeline.run()["status"] == "SUCCEEDED"
    original = aws_fakes._backend_update_endpoint
    for status in ("OutOfService", "UpdateRollbackFailed", "Deleting", "Failed"):
        def update_then_break(self, endpoint_name, endpoint_config_name, status=status):
            arn = original(self, endpoint_name, endpoint_config_name)
            self.endpoints[endpoint_name].endpoint_status = status
            return arn

        monkeypatch.setattr(aws_fakes.sm_models.SageMakerModelBackend, "update_endpoint", update_then_break)
        endpoint_backend().endpoints[SETTINGS.endpoint_name].endpoint_status = "InService"
        deploy = pipeline.approve_another()
        assert deploy["status"] == "FAILED", status
        assert deploy["states"][-3:] == ["EndpointNotReady", "NotifyFailure", "DeployFailed"], status
        assert deploy["states"].count("CheckEndpoint") == 1, status  # no spinning
        assert f"became {status}" in pipeline.messages()[-1]


def test_the_endpoint_wait_is_bounded(aws_env, synthesized, monkeypatch):
    definition, refs = synthesized
    settings = InfraSettings(endpoint_max_polls=3)
    pipeline = Pipeline(definition, refs, aws_env, deploy=build_deploy_definition(settings, refs_of(definition)))
    assert pipeline.run()["status"] == "SUCCEEDED"
    original = aws_fakes._backend_update_endpoint

    def update_forever(self, endpoint_name, endpoint_config_name):
        arn = original(self, endpoint_name, endpoint_config_name)
        self.endpoints[endpoint_name].endpoint_status = "Updating"
        return arn

    monkeypatch.setattr(aws_fakes.sm_models.SageMakerModelBackend, "update_endpoint", update_forever)
    deploy = pipeline.approve_another()
    assert deploy["status"] == "FAILED"
    assert deploy["states"].count("CheckEndpoint") == 4  # the first look and 3 polls
    assert deploy["states"][-3:] == ["EndpointTimedOut", "NotifyFailure", "DeployFailed"]


def _fail_create_model(monkeypatch, code: str, message: str, times: int) -> list[str]:
    from moto.core.exceptions import JsonRESTError

    calls: list[str] = []
    original = aws_fakes.sm_models.SageMakerModelBackend.create_model

    def create_model(self, *args, **kwargs):
        calls.append(code)
        if len(calls) <= times:
            raise JsonRESTError(code, message)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(aws_fakes.sm_models.SageMakerModelBackend, "create_model", create_model)
    return calls


def test_a_throttled_call_is_retried_and_succeeds(pipeline, monkeypatch):
    calls = _fail_create_model(monkeypatch, "ThrottlingException", "Rate exceeded", times=1)
    deploy = deployed(pipeline.run())
    assert deploy["status"] == "SUCCEEDED", deploy
    assert len(calls) == 2 and "CreateModel.Transient?" in deploy["states"]


@pytest.mark.parametrize("code,message", [
    ("ValidationException", "1 validation error detected: Value at 'primaryContainer.image' failed"),
    ("ResourceLimitExceeded", "The account-level service limit 'Total number of models' is 10"),
])
def test_validation_and_quota_errors_fail_at_once(pipeline, monkeypatch, code, message):
    calls = _fail_create_model(monkeypatch, code, message, times=99)
    deploy = deployed(pipeline.run())
    assert deploy["status"] == "FAILED"
    assert len(calls) == 1
    assert deploy["states"][-2:] == ["NotifyFailure", "DeployFailed"]
    assert pipeline.endpoint() is None


def test_a_failing_processing_job_notifies_and_fails_with_the_endpoint_untouched(pipeline):
    assert pipeline.run()["status"] == "SUCCEEDED"
    before = pipeline.endpoint()
    failed = pipeline.run(fail={"preprocess"})
    assert failed["status"] == "FAILED"
    assert failed["states"][-2:] == ["NotifyFailure", "RunFailed"]
    assert "Tune" not in failed["states"] and failed["deploys"] == []
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
    assert len(names["preprocess"]) == 2 and len(set(names["preprocess"])) == 2
    assert len(names["tuning"]) == 2 and len(set(names["tuning"])) == 2
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


def refs_of(automatic: dict[str, Any]) -> Refs:
    """The Refs a synthesized training definition was built with."""
    states = automatic["States"]
    register = states["RegisterApproved"]["Parameters"]
    return Refs(
        bucket=states["ReadEvaluation"]["Parameters"]["Bucket"],
        sagemaker_role_arn=states["Preprocess"]["Parameters"]["RoleArn"],
        training_image=states["Preprocess"]["Parameters"]["AppSpecification"]["ImageUri"],
        serving_image=register["InferenceSpecification"]["Containers"][0]["Image"],
        topic_arn=states["NotifyFailure"]["Parameters"]["TopicArn"],
        stack_name=synth.STACK,
        model_package_group=register["ModelPackageGroupName"],
    )


def test_manual_approval_mode_registers_pending_and_approval_deploys(aws_env, synthesized):
    automatic, refs = synthesized
    manual = build_definition(InfraSettings(approval_mode="manual"), refs_of(automatic))
    pipeline = Pipeline(manual, refs, aws_env)
    result = pipeline.run(evaluation=evaluation_report(passed=True))
    assert result["status"] == "SUCCEEDED" and result["deploys"] == []
    assert [p["ModelApprovalStatus"] for p in pipeline.packages()] == ["PendingManualApproval"]
    assert pipeline.endpoint() is None
    pipeline.sm.update_model_package(ModelPackageArn=pipeline.packages()[0]["ModelPackageArn"],
                                     ModelApprovalStatus="Approved")
    (deploy,) = pipeline.registry_events()
    assert deploy["status"] == "SUCCEEDED", deploy
    assert pipeline.endpoint()["EndpointStatus"] == "InService"


def test_only_a_completed_approved_package_starts_a_deploy(pipeline):
    """SageMaker sends an event at each status change of a package: one created Approved deploys once."""
    pattern = EventPattern.load(pipeline.approval_pattern)
    event = {"source": "aws.sagemaker", "detail-type": APPROVED_EVENT_DETAIL_TYPE,
             "detail": {"ModelPackageGroupName": json.loads(pipeline.approval_pattern)["detail"]["ModelPackageGroupName"][0],
                        "ModelApprovalStatus": "Approved", "ModelPackageStatus": "InProgress"}}
    assert not pattern.matches_event(event)
    event["detail"]["ModelPackageStatus"] = "Completed"
    assert pattern.matches_event(event)


def _lose_race(monkeypatch, method: str, message: str) -> list[str]:
    """The first `method` call meets another deploy's change of the endpoint: that deploy's call
    goes through, this one is refused with SageMaker's message."""
    calls: list[str] = []
    original = getattr(aws_fakes.sm_models.SageMakerModelBackend, method)

    def racing(self, *args, **kwargs):
        calls.append(method)
        result = original(self, *args, **kwargs)
        if len(calls) == 1:
            raise aws_fakes.sm_models.ValidationError(message=message)
        return result

    monkeypatch.setattr(aws_fakes.sm_models.SageMakerModelBackend, method, racing)
    return calls


def test_a_deploy_that_loses_the_race_to_create_the_endpoint_finds_it_serving_its_package(pipeline, monkeypatch):
    calls = _lose_race(monkeypatch, "create_endpoint",
                       f'Cannot create already existing endpoint "arn:aws:sagemaker:{synth.REGION}:{synth.ACCOUNT}:'
                       f'endpoint/{SETTINGS.endpoint_name}".')
    deploy = deployed(pipeline.run())
    assert deploy["status"] == "SUCCEEDED", deploy
    after = deploy["states"][deploy["states"].index("CreateEndpoint") + 1:]
    assert after[after.index("CreatedMeanwhile?"):] == [
        "CreatedMeanwhile?", "EndpointBusy", "EndpointBusy.Count", "WaitWhileBusy", "FindEndpoint", "EndpointFound",
        "AlreadyServing"]
    assert calls == ["create_endpoint"] and pipeline.endpoint()["EndpointStatus"] == "InService"


def test_a_deploy_whose_update_meets_another_update_waits_and_updates(pipeline, monkeypatch):
    assert pipeline.run()["status"] == "SUCCEEDED"
    calls = _lose_race(monkeypatch, "update_endpoint",
                       f'Cannot update in-progress endpoint "arn:aws:sagemaker:{synth.REGION}:{synth.ACCOUNT}:'
                       f'endpoint/{SETTINGS.endpoint_name}".')
    deploy = pipeline.approve_another()
    assert deploy["status"] == "SUCCEEDED", deploy
    states = deploy["states"]
    assert "UpdatedMeanwhile?" in states and "NotifyFailure" not in states
    # The other update served the same config meanwhile, so this deploy finds it served.
    assert states[-1] == "AlreadyServing" and calls == ["update_endpoint"]


def test_a_refused_update_that_is_not_a_race_still_fails(pipeline, monkeypatch):
    assert pipeline.run()["status"] == "SUCCEEDED"
    _lose_race(monkeypatch, "update_endpoint", "The endpoint config is invalid")
    deploy = pipeline.approve_another()
    assert deploy["status"] == "FAILED"
    assert deploy["states"][-3:] == ["UpdatedMeanwhile?", "NotifyFailure", "DeployFailed"]


def test_a_deploy_whose_delete_of_a_failed_endpoint_meets_another_waits_and_creates(pipeline, monkeypatch):
    assert pipeline.run()["status"] == "SUCCEEDED"
    endpoint_backend().endpoints[SETTINGS.endpoint_name].endpoint_status = "Failed"
    _lose_race(monkeypatch, "delete_endpoint",
               f'Cannot update in-progress endpoint "arn:aws:sagemaker:{synth.REGION}:{synth.ACCOUNT}:'
               f'endpoint/{SETTINGS.endpoint_name}".')
    deploy = pipeline.approve_another()
    assert deploy["status"] == "SUCCEEDED", deploy
    states = deploy["states"]
    assert states.index("DeletedMeanwhile?") < states.index("WaitForDeletion") < states.index("CreateEndpoint")
    assert pipeline.endpoint()["EndpointStatus"] == "InService"
