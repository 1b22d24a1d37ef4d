"""Test-only extensions of moto 5.2.1 so the pipeline's state machine really executes in moto.

What moto does natively (and we rely on unchanged): the Step Functions interpreter (JSONPath, intrinsic
functions incl. States.Format/StringToJson/StringSplit/ArrayGetItem/JsonToString, Choice, Map, Wait,
Retry/Catch with `$$.State.RetryCount`), `aws-sdk:*` tasks (forwarded to moto's SageMaker/S3 with the
ASL parameters), `sns:publish`, and SageMaker's registry/model/endpoint-config/endpoint APIs.

What moto lacks, added here and only here (never in product code):
  * optimised SageMaker integrations (`arn:aws:states:::sagemaker:*.sync`): moto's engine treats the
    `sagemaker` service as unsupported (callbacks only). `FakeSageMakerSyncTask` creates the job in moto,
    then plays the job through a job world (the stub `JobWorld` here writes the outputs the container
    contract promises, or fails it; tests/cloud/sagemaker.py runs the real containers) and returns the Describe* output as `.sync` does; failures surface as `States.TaskFailed`.
    It can also throttle the first create of a job *after* creating it (the real "job created but
    the response was lost" case) to prove retried names never collide.
  * `UpdateEndpoint`: moto has no handler; `install_update_endpoint` adds one to moto's backend/response
    classes (switch the config, stay InService) and records calls.
  * `aws-sdk:*` results: Step Functions returns s3:getObject's Body and all timestamps as strings; moto's
    interpreter leaves a botocore stream / datetime objects in the state (and later fails on them).
    `_aws_sdk_bodies_as_strings` converts them as the service does.
  * a second StartExecution on a state machine that already ran fails in moto 5.2.1 (it deep-copies the
    state machine, including finished executions whose workers hold locks); executions are shared, not
    copied, by the clone (`Execution.__deepcopy__` returns the execution itself).
  * moto lists a new execution before it sets its status (`Execution.start`), so a concurrent
    ListExecutions with `statusFilter` fails on `None.value`; AWS shows a started execution as RUNNING
    at once, and so does `_status` here.
  * moto's HPO job reports a fixed fake best training job; the world creates a real training job in
    moto and points BestTrainingJob at it.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3
from moto.sagemaker import models as sm_models
from moto.stepfunctions.parser.backend import execution as sfn_execution
from moto.sagemaker import responses as sm_responses
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.utils import camel_to_snake_case

from tests.cloud.jobs import JobFailed

ACCOUNT = "123456789012"
REGION = "us-east-1"

DESCRIBE_FOR = {
    "createProcessingJob": ("describe_processing_job", "ProcessingJobName"),
    "createHyperParameterTuningJob": ("describe_hyper_parameter_tuning_job", "HyperParameterTuningJobName"),
    "createTrainingJob": ("describe_training_job", "TrainingJobName"),
}


class FakeTaskError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def evaluation_report(*, passed: bool, reason: str = "", mase: float = 0.8, champion: dict | None = None) -> dict:
    metrics = {"mse": 12.5, "mae": 2.9, "mase": mase, "coverage_80": 0.81, "coverage_95": 0.94}
    return {
        "gate": {"passed": passed, "reason": reason or ("challenger beats the champion" if passed else "worse")},
        "challenger": metrics,
        "champion": champion,
        "seasonal_naive": {**metrics, "mase": 1.0},
        "spec": {"use_counterfactual_data": 1, "detrend": 0, "deseasonalize": 1, "fourier_k": 3},
    }


@dataclass
class JobWorld:
    """What the containers would do, per job kind; set by each test."""

    evaluation: dict[str, Any] = field(default_factory=lambda: evaluation_report(passed=True))
    fail: set[str] = field(default_factory=set)  # "preprocess", "tuning", "selection", "evaluation"
    throttle_once_after_create: set[str] = field(default_factory=set)  # same kinds
    created: list[tuple[str, str]] = field(default_factory=list)  # (kind, job name)
    inputs: dict[str, list[str]] = field(default_factory=dict)  # job name -> input names
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kind(self, action: str, params: dict[str, Any]) -> str:
        if action == "createHyperParameterTuningJob":
            return "tuning"
        entry = " ".join(params.get("AppSpecification", {}).get("ContainerEntrypoint", []))
        return next((kind for kind in ("evaluation", "selection") if entry.endswith(kind)), "preprocess")

    # -- side effects ---------------------------------------------------------------------------
    def run(self, kind: str, name: str, params: dict[str, Any]) -> None:
        s3 = boto3.client("s3", region_name=REGION)
        if kind == "preprocess":
            for out in params["ProcessingOutputConfig"]["Outputs"]:
                bucket, key = s3_uri(out["S3Output"]["S3Uri"])
                body = b"timestamp,value\n2024-01-05,3.1\n" if out["OutputName"] != "report" else b"{}"
                s3.put_object(Bucket=bucket, Key=key.rstrip("/") + f"/{out['OutputName']}.csv", Body=body)
        elif kind == "evaluation":
            self.inputs[name] = [i["InputName"] for i in params.get("ProcessingInputs", [])]
            for out in params["ProcessingOutputConfig"]["Outputs"]:
                bucket, key = s3_uri(out["S3Output"]["S3Uri"])
                if out["OutputName"] == "evaluation":
                    s3.put_object(Bucket=bucket, Key=key.rstrip("/") + "/evaluation.json",
                                  Body=json.dumps(self.evaluation).encode())
                else:
                    s3.put_object(Bucket=bucket, Key=key.rstrip("/") + "/forecast.csv",
                                  Body=b"timestamp,mean,lower,upper\n2024-01-12,3.2,3.0,3.4\n")
        elif kind == "selection":  # the best trial's model, as the selection job writes it with one family
            self.inputs[name] = [i["InputName"] for i in params.get("ProcessingInputs", [])]
            for out in params["ProcessingOutputConfig"]["Outputs"]:
                bucket, key = s3_uri(out["S3Output"]["S3Uri"])
                s3.put_object(Bucket=bucket, Key=key.rstrip("/") + "/model.json", Body=b'{"spec": {"fourier_k": 3}}')
        elif kind == "tuning":
            definition = params["TrainingJobDefinition"]
            training_name = f"{name}-001-abcdef12"
            sm = boto3.client("sagemaker", region_name=REGION)
            sm.create_training_job(
                TrainingJobName=training_name,
                HyperParameters={**definition.get("StaticHyperParameters", {}), "fourier_k": "3"},
                AlgorithmSpecification={"TrainingImage": definition["AlgorithmSpecification"]["TrainingImage"],
                                        "TrainingInputMode": "File"},
                RoleArn=definition["RoleArn"],
                OutputDataConfig=definition["OutputDataConfig"],
                ResourceConfig=definition["ResourceConfig"],
                StoppingCondition={"MaxRuntimeInSeconds": 3600},
            )
            artifact = sm.describe_training_job(TrainingJobName=training_name)["ModelArtifacts"]["S3ModelArtifacts"]
            bucket, key = s3_uri(artifact)
            s3.put_object(Bucket=bucket, Key=key, Body=_model_tar())
            job = sm_models.sagemaker_backends[ACCOUNT][REGION].hyper_parameter_tuning_jobs[name]
            job.best_training_job = {**job.best_training_job, "TrainingJobName": training_name,
                                     "TuningJobName": name}

    def fail_job(self, kind: str, name: str) -> None:
        backend = sm_models.sagemaker_backends[ACCOUNT][REGION]
        reason = f"ClientError: {kind} failed: column 'value' has non-numeric entries (row 7)"
        if kind == "tuning":
            job = backend.hyper_parameter_tuning_jobs[name]
            job.hyper_parameter_tuning_job_status = "Failed"
            job.failure_reason = reason
        else:
            job = backend.processing_jobs[name]
            job.processing_job_status = "Failed"
            job.failure_reason = reason
            job.exit_message = reason


def _model_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = json.dumps({"spec": {"fourier_k": 3}}).encode()
        info = tarfile.TarInfo("model.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


WORLD = JobWorld()


class FakeSageMakerSyncTask(StateTaskServiceCallback):
    """`arn:aws:states:::sagemaker:<createX>[.sync]` for moto's interpreter (see module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_integration_patterns={ResourceCondition.Sync, ResourceCondition.WaitForTaskToken})

    def _validate_service_integration_is_supported(self) -> None:
        return None

    def _get_sfn_resource_type(self) -> str:
        return "sagemaker"

    def _from_error(self, env, ex: Exception) -> FailureEvent:
        if isinstance(ex, FakeTaskError):
            return FailureEvent(
                env=env,
                error_name=(
                    StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed)
                    if ex.error == "States.TaskFailed"
                    else CustomErrorName(error_name=ex.error)
                ),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(), resourceType="sagemaker", error=ex.error, cause=ex.cause
                    )
                ),
            )
        return super()._from_error(env, ex)

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> None:
        action = self.resource.api_action
        params = normalised_parameters
        sm = boto3.client("sagemaker", region_name=resource_runtime_part.region)
        name_key = DESCRIBE_FOR.get(action, (None, None))[1]
        name = params.get(name_key, "") if name_key else ""
        kind = WORLD.kind(action, params) if name_key else action
        with WORLD.lock:
            if name_key and any(n == name for _, n in WORLD.created):
                raise FakeTaskError("SageMaker.ResourceInUseException", f"job {name} already exists")
            WORLD.created.append((kind, name))
        try:
            response = getattr(sm, camel_to_snake_case(action))(**params)
        except sm.exceptions.ClientError as err:  # pragma: no cover - surfaced as the real service would
            raise FakeTaskError("SageMaker.AmazonSageMakerException", str(err)) from None
        if kind in WORLD.throttle_once_after_create:
            WORLD.throttle_once_after_create.discard(kind)
            raise FakeTaskError("SageMaker.AmazonSageMakerException", "ThrottlingException: Rate exceeded")
        response.pop("ResponseMetadata", None)
        self._pending = (action, kind, name, params)
        env.stack.append(response)

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials) -> Callable:
        action, kind, name, params = self._pending
        describe, key = DESCRIBE_FOR[action]

        def resolve() -> dict[str, Any]:
            sm = boto3.client("sagemaker", region_name=resource_runtime_part.region)
            try:
                if kind in WORLD.fail:
                    WORLD.fail_job(kind, name)
                    raise JobFailed("failed on purpose by the test")
                WORLD.run(kind, name, params)
            except JobFailed:  # the world marked the job Failed in moto; .sync reports TaskFailed
                out = getattr(sm, describe)(**{key: name})
                out.pop("ResponseMetadata", None)
                raise FakeTaskError("States.TaskFailed", json.dumps(out, default=str)) from None
            out = getattr(sm, describe)(**{key: name})
            out.pop("ResponseMetadata", None)
            return json.loads(json.dumps(out, default=str))

        return resolve


# ---- UpdateEndpoint -------------------------------------------------------------------------------
UPDATES: list[tuple[str, str]] = []


def _backend_update_endpoint(self, endpoint_name: str, endpoint_config_name: str) -> str:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = sm_models.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
        raise sm_models.ValidationError(message=f"Could not find endpoint '{arn}'.")
    config = self.describe_endpoint_config(endpoint_config_name)
    endpoint.endpoint_config_name = endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = sm_models.utcnow()
    UPDATES.append((endpoint_name, endpoint_config_name))
    return endpoint.arn


def _response_update_endpoint(self) -> str:
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return json.dumps({"EndpointArn": arn})


_original_aws_sdk_eval = StateTaskServiceAwsSdk._eval_service_task


def _aws_sdk_bodies_as_strings(self, env, resource_runtime_part, normalised_parameters, state_credentials):
    _original_aws_sdk_eval(self, env, resource_runtime_part, normalised_parameters, state_credentials)
    output = env.stack[-1]
    if isinstance(output, dict):
        for key, value in list(output.items()):
            if hasattr(value, "read"):
                output[key] = value.read().decode("utf-8")
        # Step Functions returns timestamps as strings; moto keeps datetime objects.
        env.stack[-1] = json.loads(json.dumps(output, default=str))


def _status(execution) -> str:
    """An execution's status, RUNNING from the moment it is listed (see the module docstring)."""
    return (execution.exec_status or sfn_execution.ExecutionStatus.RUNNING).value


# ---- parsing ----------------------------------------------------------------------------------
_SYNTAX_TREES: dict[str, Any] = {}  # definition -> its ANTLR tree (read only once built)
_PARSE = AmazonStateLanguageParser.parse


def _parse(definition: str) -> tuple[Any, Any]:
    """moto's parse with the lexing and parsing (pure-Python ANTLR: about a second for this project's
    definitions, at every CreateStateMachine and every execution) done once per definition; the
    evaluation components are still built afresh each time, as they carry an execution's state."""
    tree = _SYNTAX_TREES.get(definition)
    if tree is None:
        program, tree = _PARSE(definition)  # raises for a definition moto refuses: never cached
        _SYNTAX_TREES[definition] = tree
        return program, tree
    return Preprocessor().visit(tree), tree


def install(monkeypatch, world: Any = None) -> Any:
    """Install every extension for one test (undone by pytest's monkeypatch); returns the job world:
    a fresh stub `JobWorld` unless `world` (same interface; tests/cloud runs the jobs for real)."""
    global WORLD
    WORLD = JobWorld() if world is None else world
    UPDATES.clear()
    original = state_task_factory.state_task_service_for

    def service_for(service_name: str):
        if service_name == "sagemaker":
            return FakeSageMakerSyncTask()
        return original(service_name=service_name)

    monkeypatch.setattr(state_task_factory, "state_task_service_for", service_for)
    monkeypatch.setattr(AmazonStateLanguageParser, "parse", staticmethod(_parse))
    monkeypatch.setattr(StateTaskServiceAwsSdk, "_eval_service_task", _aws_sdk_bodies_as_strings)
    monkeypatch.setattr(sfn_execution.Execution, "__deepcopy__", lambda self, memo: self, raising=False)
    monkeypatch.setattr(sfn_execution.Execution, "status", property(_status))
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "update_endpoint", _backend_update_endpoint, raising=False)
    monkeypatch.setattr(sm_responses.SageMakerResponse, "update_endpoint", _response_update_endpoint, raising=False)
    return WORLD


def wait_for(sfn, execution_arn: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll until the execution leaves RUNNING (no timing assertion: the timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return desc
        time.sleep(0.2)


def state_sequence(sfn, execution_arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def failure_events(sfn, execution_arn: str) -> list[dict[str, Any]]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e for e in events if e["type"] in ("TaskFailed", "ExecutionFailed")]


def fast(definition: dict[str, Any]) -> dict[str, Any]:
    """Test-only: no real waiting in Wait states and retries (the logic is unchanged)."""
    d = copy.deepcopy(definition)

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state["Type"] == "Wait":
                state.pop("SecondsPath", None)
                state["Seconds"] = 0
            for retry in state.get("Retry", []):
                retry.update(IntervalSeconds=1, MaxDelaySeconds=1)
                retry.pop("JitterStrategy", None)
            if state["Type"] == "Map":
                walk((state.get("ItemProcessor") or state["Iterator"])["States"])

    walk(d["States"])
    return d
