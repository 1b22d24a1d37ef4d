"""The emulated cloud: the synthesized stack running in moto, with real jobs, endpoint and checks.

`CloudWorld` (a context manager) starts moto with Step Functions execution, installs the `.sync`
SageMaker task of tests/integration/aws_fakes.py with the real job world (tests/cloud/sagemaker.py),
the endpoint host (tests/cloud/endpoints.py) and the audit (tests/cloud/audit.py), and creates the
bucket, topic and every state machine the stack's upload path and event rules reach. Then:

* `upload(name, data, settings=None)`: the object lands in ``raw/`` and its EventBridge event goes
  through the upload rule to the starter Lambda (the deployed asset, with its role and environment);
* `settle()`: waits until no execution is running and every emitted event has been delivered;
* SageMaker's "Model Package State Change" events (on CreateModelPackage and on an approval change)
  go through the stack's rules to their state machine targets, as EventBridge would;
* `approve(package_arn)`: a person approving a package in the registry;
* `forecast(body)`: a POST /forecast through the invoke Lambda to the served endpoint.

Every AWS call made for a role is checked against that role's policy and the service model;
`findings()` lists what AWS would have refused (tests assert it is empty).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from moto.sagemaker import models as sm_models
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import StateTaskService

from tests.cloud import endpoints
from tests.cloud.audit import Audit
from tests.cloud.jobs import JobRunner, Transfer
from tests.cloud.policy import ACCOUNT, REGION, Request
from tests.cloud.sagemaker import SageMakerJobs, backend
from tests.cloud.stack import LambdaFunction, SynthesizedStack
from tests.integration import aws_fakes

SYNC_RESOURCE = "arn:aws:states:::sagemaker:"
SDK_RESOURCE = "arn:aws:states:::aws-sdk:"
# The EventBridge rules Step Functions manages for `.sync` SageMaker jobs.
# https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
SYNC_RULES = {"createProcessingJob": "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
              "createTrainingJob": "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
              "createHyperParameterTuningJob": "StepFunctionsGetEventsForSageMakerTuningJobsRule"}
PACKAGE_EVENT = "SageMaker Model Package State Change"
SETTLE_TIMEOUT_SECONDS = 900.0  # bounds a hang only


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge pattern matching (exact values, `prefix`, nested objects)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(p, value[k]) for k, p in pattern.items())
    for option in pattern:
        if isinstance(option, dict) and "prefix" in option:
            if isinstance(value, str) and value.startswith(option["prefix"]):
                return True
        elif option == value:
            return True
    return False


def load_lambda(function: LambdaFunction, name: str):
    """The deployed asset's handler module (its folder first on sys.path, like the Lambda task root)."""
    module_name, _, _ = function.handler.partition(".")
    sys.path.insert(0, str(function.code))
    try:
        spec = importlib.util.spec_from_file_location(f"cloud_lambda_{name}", function.code / f"{module_name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(function.code))
    return module


class CloudWorld:
    """One emulated deployment of `stack` (see the module docstring); use as a context manager."""

    def __init__(self, stack: SynthesizedStack, monkeypatch: pytest.MonkeyPatch, *, max_workers: int = 2) -> None:
        self.stack = stack
        self.monkeypatch = monkeypatch
        self.workdir = Path(tempfile.mkdtemp(prefix="forecast-cloud-"))
        roles = list(stack.resources("AWS::IAM::Role"))
        self.audit = Audit({role: stack.role_policy(role) for role in roles}, package_arn=self._next_package_arn)
        self.jobs = SageMakerJobs(JobRunner(self.workdir / "jobs", self.transfer, max_workers),
                                  as_service=lambda: self.audit.acting_as(None))
        self.host = endpoints.EndpointHost(self.workdir / "endpoints", self.transfer, stack.serving_images())
        self.bucket = stack.bucket()
        self.topic_arn = stack.topic_arn()
        self.starter_fn = stack.lambda_function("STATE_MACHINE_ARN")
        self.invoke_fn = stack.lambda_function("ENDPOINT_NAME")
        self.pipeline_arn = self.starter_fn.environment["STATE_MACHINE_ARN"]
        self.machines: dict[str, str] = {}  # state machine ARN -> its role
        self._deliveries: list[threading.Thread] = []
        self.delivery_errors: list[str] = []  # events EventBridge could not deliver
        self._finished: dict[str, dict[str, Any]] = {}  # execution ARN -> its record, once it has ended
        self._exit = ExitStack()

    # ---- set-up -------------------------------------------------------------------------------------
    def __enter__(self) -> "CloudWorld":
        mp = self.monkeypatch
        for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            mp.setenv(var, value)
        mp.delenv("AWS_PROFILE", raising=False)
        logging.getLogger("moto").setLevel(logging.CRITICAL)  # the interpreter logs every caught error
        self._exit.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                                                  "lambda": {"use_docker": False}}))
        self._exit.enter_context(self.audit.installed())
        self._exit.callback(self.host.stop_all)
        aws_fakes.install(mp, self.jobs)
        endpoints.install(mp, self.host)
        self._install_attribution()
        self._install_registry_events()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("sns", region_name=REGION).create_topic(Name=self.topic_arn.rsplit(":", 1)[-1])
        targets = [self.pipeline_arn] + [t["Arn"] for r in self.stack.event_rules() for t in r["targets"]
                                         if ":states:" in t["Arn"]]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for lid, _ in self.stack.resources("AWS::StepFunctions::StateMachine").items():
            arn = self.stack.refs[lid]
            if arn in targets:
                role = self.stack.machine_role(lid)
                created = sfn.create_state_machine(
                    name=lid, definition=json.dumps(aws_fakes.fast(self.stack.definition(lid))),
                    roleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}")["stateMachineArn"]
                assert created == arn, (created, arn)
                self.machines[arn] = role
        self.starter = load_lambda(self.starter_fn, "starter")
        self.invoke = load_lambda(self.invoke_fn, "invoke")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._exit.close()

    def transfer(self, role_arn: str) -> Transfer:
        role = role_arn.rsplit("/", 1)[-1]
        return Transfer(lambda: boto3.client("s3", region_name=REGION), lambda: self.audit.acting_as(role))

    def _install_attribution(self) -> None:
        """Each state machine task calls AWS as its state machine's role (and `.sync` needs the rules)."""
        original = StateTaskService._eval_execution
        world = self

        def eval_execution(task, env) -> None:
            machine = env.states.context_object.context_object_data["StateMachine"]["Id"]
            role = world.machines.get(machine)
            resource = task.resource.resource_arn
            if role and resource.startswith(SYNC_RESOURCE) and resource.endswith(".sync"):
                rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{SYNC_RULES[task.resource.api_action]}"
                world.audit.check_implied(role, [Request(f"events:{a}", rule) for a in
                                                 ("PutTargets", "PutRule", "DescribeRule")], resource)
            if role and resource.startswith(SDK_RESOURCE):
                world.audit.check_sdk_action(role, task._get_boto_service_name(), task.resource.api_action)
            with world.audit.acting_as(role):
                original(task, env)

        self.monkeypatch.setattr(StateTaskService, "_eval_execution", eval_execution)

    # ---- the registry's events -----------------------------------------------------------------------
    def _next_package_arn(self, params: dict[str, Any]) -> str | None:
        group = params.get("ModelPackageGroupName")
        if not group:
            return None
        version = 1 + sum(p.model_package_group_name == group for p in backend().model_packages.values())
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group.lower()}/{version}"

    def _install_registry_events(self) -> None:
        """SageMaker emits a state-change event when a package is created or its approval changes.
        https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html"""
        cls = sm_models.SageMakerModelBackend
        create, update = cls.create_model_package, cls.update_model_package
        world = self

        def create_model_package(self, *args: Any, **kwargs: Any) -> str:
            arn = create(self, *args, **kwargs)
            world._emit_package_event(arn)
            return arn

        def update_model_package(self, model_package_arn: str, model_approval_status: str | None, *args: Any,
                                 **kwargs: Any) -> str:
            package = self.model_packages[self.model_package_name_mapping.get(model_package_arn, model_package_arn)]
            before, metadata = package.model_approval_status, package.customer_metadata_properties
            arn = update(self, model_package_arn, model_approval_status, *args, **kwargs)
            if package.customer_metadata_properties is None:  # moto drops it; the service keeps it
                package.customer_metadata_properties = metadata
            if model_approval_status and model_approval_status != before:
                world._emit_package_event(arn)
            return arn

        self.monkeypatch.setattr(cls, "create_model_package", create_model_package)
        self.monkeypatch.setattr(cls, "update_model_package", update_model_package)

    def package_event(self, arn: str) -> dict[str, Any]:
        """The registry's state-change event for a package as it is now."""
        package = backend().model_packages[backend().model_package_name_mapping.get(arn, arn)]
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": PACKAGE_EVENT, "source": "aws.sagemaker",
            "account": ACCOUNT, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": REGION,
            "resources": [arn],
            "detail": {"ModelPackageGroupName": package.model_package_group_name,
                       "ModelPackageVersion": package.model_package_version, "ModelPackageArn": arn,
                       "ModelPackageName": package.model_package_name,
                       "ModelApprovalStatus": package.model_approval_status,
                       "ModelPackageStatus": package.model_package_status},
        }

    def _emit_package_event(self, arn: str) -> None:
        def deliver(event: dict[str, Any]) -> None:
            try:
                self.deliver(event)
            except Exception as err:  # noqa: BLE001 - reported by settle()
                self.delivery_errors.append(f"{event['detail-type']} {arn}: {err}")

        thread = threading.Thread(target=deliver, args=(self.package_event(arn),), daemon=True)
        thread.start()
        self._deliveries.append(thread)  # only started threads: settle() joins them

    def redeliver_package_event(self, arn: str) -> list[str]:
        """EventBridge delivers at least once: the same package's event again."""
        return self.deliver(self.package_event(arn))

    def deliver(self, event: dict[str, Any]) -> list[str]:
        """EventBridge: start every state machine target of every matching rule (as the target's role)."""
        started = []
        for rule in self.stack.event_rules():
            if not matches(rule["pattern"], event):
                continue
            for target in rule["targets"]:
                if target["Arn"] in self.machines:
                    role = target["RoleArn"].rsplit("/", 1)[-1]
                    with self.audit.acting_as(role):
                        sfn = boto3.client("stepfunctions", region_name=REGION)
                        # Step Functions names an unnamed execution with a UUID (moto 5.2.1 uses "None")
                        started.append(sfn.start_execution(stateMachineArn=target["Arn"], name=str(uuid.uuid4()),
                                                           input=json.dumps(event))["executionArn"])
        return started

    # ---- what a user does ---------------------------------------------------------------------------
    def upload(self, name: str, data: bytes, settings: dict[str, Any] | bytes | None = None) -> dict[str, Any]:
        """Put raw/<name> (and its settings file first); each object's event reaches the starter."""
        results = {}
        if settings is not None:
            body = settings if isinstance(settings, bytes) else json.dumps(settings).encode()
            stem = name.rsplit(".", 1)[0]
            results["settings"] = self._put_and_notify(f"raw/{stem}.settings.json", body)
        results["data"] = self._put_and_notify(f"raw/{name}", data)
        return results

    def _put_and_notify(self, key: str, body: bytes) -> dict[str, Any]:
        s3 = boto3.client("s3", region_name=REGION)
        version = s3.put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"]
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
                 "account": ACCOUNT, "region": REGION, "resources": [f"arn:aws:s3:::{self.bucket}"],
                 "detail": {"bucket": {"name": self.bucket}, "object": {"key": key, "version-id": version}}}
        assert any(matches(r["pattern"], event) for r in self.stack.event_rules()), f"no rule matches {key}"
        for var, value in self.starter_fn.environment.items():
            self.monkeypatch.setenv(var, value)
        with self.audit.acting_as(self.starter_fn.role):
            result = self.starter.handler({"Records": [{"messageId": str(uuid.uuid4()), "body": json.dumps(event)}]})
        return {"key": key, "version": version, "result": result,
                "run_id": self.starter.run_id(key, version)}

    def approve(self, package_arn: str, status: str = "Approved") -> None:
        """A person changes a package's approval in the registry (not checked against a role)."""
        boto3.client("sagemaker", region_name=REGION).update_model_package(
            ModelPackageArn=package_arn, ModelApprovalStatus=status)

    def forecast(self, body: dict[str, Any] | str) -> dict[str, Any]:
        """POST /forecast (API Gateway proxy event) through the invoke Lambda; its proxy response."""
        for var, value in self.invoke_fn.environment.items():
            self.monkeypatch.setenv(var, value)
        event = {"resource": "/forecast", "path": "/forecast", "httpMethod": "POST",
                 "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
                 "requestContext": {"requestId": str(uuid.uuid4()), "stage": "v1"},
                 "body": body if isinstance(body, str) else json.dumps(body)}
        context = SimpleNamespace(function_name="invoke", memory_limit_in_mb=256, aws_request_id=str(uuid.uuid4()),
                                  invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:invoke")
        self.invoke.runtime_client.cache_clear()
        with self.audit.acting_as(self.invoke_fn.role):
            return self.invoke.handler(event, context)

    # ---- waiting and reading ------------------------------------------------------------------------
    def settle(self) -> None:
        """Until every delivered event's execution and every execution has finished."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for thread in list(self._deliveries):
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            running = [e for arn in self.machines
                       for e in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]]
            if not running and all(not t.is_alive() for t in self._deliveries):
                assert not self.delivery_errors, self.delivery_errors
                return
            time.sleep(0.2)
        raise TimeoutError("executions still running")

    def executions(self, machine_arn: str | None = None) -> list[dict[str, Any]]:
        """Every execution (oldest first) with its status, the states it entered and its task failures."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        out = []
        for arn in [machine_arn] if machine_arn else list(self.machines):
            for e in reversed(sfn.list_executions(stateMachineArn=arn)["executions"]):
                out.append(self._finished.get(e["executionArn"]) or self._execution(sfn, arn, e["executionArn"]))
        return out

    def _execution(self, sfn: Any, machine_arn: str, arn: str) -> dict[str, Any]:
        """One execution's record; an ended one is kept (its history no longer changes, and moto's
        serialization of a long history is the slowest call the tests make)."""
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        failures = [d for x in events for k, d in x.items() if k.endswith("FailedEventDetails")]
        record = {**sfn.describe_execution(executionArn=arn), "machine": machine_arn,
                  "states": [x["stateEnteredEventDetails"]["name"] for x in events if "stateEnteredEventDetails" in x],
                  "failures": [f"{d.get('error', '')}: {str(d.get('cause', ''))[:500]}" for d in failures]}
        if record["status"] != "RUNNING":
            self._finished[arn] = record
        return record

    def endpoint(self, name: str | None = None) -> dict[str, Any] | None:
        name = name or self.invoke_fn.environment["ENDPOINT_NAME"]
        endpoint = backend().endpoints.get(name)
        return None if endpoint is None else {"status": endpoint.endpoint_status, "config": endpoint.endpoint_config_name,
                                              "failure": endpoint.failure_reason}

    def endpoint_record(self, name: str | None = None):
        """moto's endpoint object (a test may put it in a state SageMaker can reach, e.g. Failed)."""
        return backend().endpoints[name or self.invoke_fn.environment["ENDPOINT_NAME"]]

    def packages(self) -> list[dict[str, Any]]:
        sm = boto3.client("sagemaker", region_name=REGION)
        out = []
        for group in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]:
            out += sm.list_model_packages(ModelPackageGroupName=group["ModelPackageGroupName"], SortBy="CreationTime",
                                          SortOrder="Ascending")["ModelPackageSummaryList"]
        return out

    def messages(self) -> list[str]:
        from moto.sns.models import sns_backends

        return [n[1] for n in sns_backends[ACCOUNT][REGION].topics[self.topic_arn].sent_notifications]

    def read(self, key: str) -> bytes:
        return boto3.client("s3", region_name=REGION).get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def findings(self) -> list[str]:
        return self.audit.findings()


@contextmanager
def cloud(stack: SynthesizedStack, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Iterator[CloudWorld]:
    with CloudWorld(stack, monkeypatch, **kwargs) as world:
        yield world
