"""runs, tuning and models on a deployed stack, against botocore Stubbers with realistic responses (the
shapes are checked against the service models): the calls made, their parameters, the output, and
refusals that change nothing."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from pipeline_code.cli import cloud
from pipeline_code.cli.main import main
from pipeline_code.cli.views import models_table, run_detail, runs_table, trials_table

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "forecast-mlops"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/3f6e2a10-0b1c-11f1-9d2e-06a1b2c3d4e5"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ForecastPipeline"
DEPLOY = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ForecastDeploy"
BUCKET = "forecast-mlops-data-abc123"
ENDPOINT = "forecast-mlops"
GROUP = "fcst-models-3f6e2a10-0b1c-11f1-9d2e-06a1b2c3d4e5"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}:9c1e2f"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
SERVICES = ("cloudformation", "stepfunctions", "s3", "sagemaker", "sts", "ecr")


# One session for every test: its loader reads each service model once.
SESSION = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


class FakeSession:
    """Real botocore clients (request and response shapes validated), each behind a Stubber."""

    def __init__(self) -> None:
        self.clients = {name: SESSION.client(name) for name in SERVICES}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}
        for stub in self.stubs.values():
            stub.activate()

    def client(self, name: str):
        return self.clients[name]

    def done(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


@pytest.fixture
def aws():
    fake = FakeSession()
    fake.stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [{
        "StackId": STACK_ID, "StackName": STACK, "CreationTime": T0, "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (
            ("StateMachineArn", MACHINE), ("DeployStateMachineArn", DEPLOY), ("BucketName", BUCKET),
            ("EndpointName", ENDPOINT), ("ApiUrl", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/forecast"))],
    }]}, {"StackName": STACK})
    yield fake
    fake.done()


def ops(aws) -> cloud.StackOps:
    return cloud.StackOps(STACK, session=aws)


def execution_arn(name: str) -> str:
    return MACHINE.replace(":stateMachine:", ":execution:") + f":{name}"


EVALUATION = {"gate": {"passed": True, "reason": "challenger MASE 0.81 is 6.2% better than the approved 0.86"},
              "challenger": {"mase": 0.81, "coverage_80": 0.79, "coverage_95": 0.94, "mse": 1.2e5},
              "seasonal_naive": {"mase": 1.24}, "spec": {"family": "harmonic_arima", "fourier_k": 4}}


def described(name: str, status: str, minutes: int, *, package: str | None = None, **extra) -> dict:
    start = T0 + timedelta(hours=minutes)
    out = {"executionArn": execution_arn(name), "stateMachineArn": MACHINE, "name": name, "status": status,
           "startDate": start,
           "input": json.dumps({"key": f"raw/{name.split('-')[0]}.csv", "versionId": "3HL4kqtJlcpXroDTDmJ",
                                "copySource": f"{BUCKET}/raw/x.csv", "fileName": "x.csv"})}
    if status != "RUNNING":
        out["stopDate"] = start + timedelta(minutes=42)
    if package:
        out["output"] = json.dumps({"runId": name, "evaluationReport": {"json": EVALUATION},
                                    "modelPackage": {"arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/"
                                                            f"{GROUP}/{package.split('/')[0]}",
                                                     "status": package.split("/")[1]}})
    return {**out, **extra}


EXECUTIONS = [
    described("sales-9a1b2c3d4e", "RUNNING", 5),
    described("sales-8a1b2c3d4e", "FAILED", 4, error="States.TaskFailed",
              cause="ProcessingJob fcst-sales-8a1b2c3d4e-pre0 failed: ClientError: [gap] line 88"),
    described("sales-7a1b2c3d4e", "SUCCEEDED", 3, package="3/PendingManualApproval"),
    described("sales-6a1b2c3d4e", "SUCCEEDED", 2, package="2/Approved"),
]


def body(document: dict) -> StreamingBody:
    raw = json.dumps(document).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def stub_runs(aws) -> None:
    sfn, s3 = aws.stubs["stepfunctions"], aws.stubs["s3"]
    sfn.add_response("list_executions", {"executions": [
        {k: e[k] for k in ("executionArn", "stateMachineArn", "name", "status", "startDate", "stopDate") if k in e}
        for e in EXECUTIONS]}, {"stateMachineArn": MACHINE})
    for e in EXECUTIONS:
        sfn.add_response("describe_execution", e, {"executionArn": e["executionArn"]})
    s3.add_response("list_objects_v2", {"CommonPrefixes": [{"Prefix": f"runs/{n}/"} for n in (
        "sales-6a1b2c3d4e", "bad-1234567890")], "KeyCount": 2}, {"Bucket": BUCKET, "Prefix": "runs/", "Delimiter": "/"})
    s3.add_client_error("get_object", "NoSuchKey", http_status_code=404,
                        expected_params={"Bucket": BUCKET, "Key": "runs/sales-6a1b2c3d4e/run.json"})
    s3.add_response("get_object", {"Body": body({
        "run_id": "bad-1234567890", "state": "refused", "stage": "validation", "data": f"s3://{BUCKET}/raw/bad.csv",
        "reason": "s3://b/raw/bad.settings.json: search.fourier_k: must be a list", "at": "2026-11-20T12:30:00+00:00"})},
        {"Bucket": BUCKET, "Key": "runs/bad-1234567890/run.json"})
    s3.add_response("list_objects_v2", {"Contents": [
        {"Key": "raw/sales.csv", "LastModified": T0 + timedelta(hours=5), "Size": 31000},
        {"Key": "raw/sales.settings.json", "LastModified": T0 + timedelta(hours=6), "Size": 80},
        {"Key": "raw/stock.csv", "LastModified": T0 + timedelta(hours=6), "Size": 9000}], "KeyCount": 3},
        {"Bucket": BUCKET, "Prefix": "raw/"})


def test_runs_list_from_executions_records_and_uploads(aws):
    stub_runs(aws)
    found = ops(aws).runs()
    assert [(r.state, r.run_id) for r in found] == [
        ("queued", "-"), ("running", "sales-9a1b2c3d4e"), ("failed", "sales-8a1b2c3d4e"),
        ("refused", "bad-1234567890"), ("gated", "sales-7a1b2c3d4e"), ("promoted", "sales-6a1b2c3d4e")]
    assert found[0].data == f"s3://{BUCKET}/raw/stock.csv"
    assert "[gap] line 88" in found[2].reason
    promoted = found[-1]
    assert (promoted.version, promoted.duration_s, promoted.metrics["mase"]) == ("v0002", 42 * 60, 0.81)
    assert promoted.spec == "harmonic_arima(fourier_k=4)" and "6.2% better" in promoted.reason
    assert runs_table(found).splitlines()[0].startswith("STATE")


def test_runs_show_timings_evaluation_and_links(aws):
    e = EXECUTIONS[3]
    aws.stubs["stepfunctions"].add_response("describe_execution", e, {"executionArn": e["executionArn"]})
    events, t, n = [], e["startDate"], 0
    for state, seconds in (("Init", 0), ("Preprocess", 300), ("Tune", 1500), ("Select", 90), ("Evaluate", 400),
                           ("RegisterApproved", 2), ("ExportRunForecast", 1)):
        n += 1
        events.append({"timestamp": t, "type": "PassStateEntered" if state == "Init" else "TaskStateEntered",
                       "id": n, "stateEnteredEventDetails": {"name": state}})
        t += timedelta(seconds=seconds)
        n += 1
        events.append({"timestamp": t, "type": "PassStateExited" if state == "Init" else "TaskStateExited",
                       "id": n, "stateExitedEventDetails": {"name": state}})
    aws.stubs["stepfunctions"].add_response("get_execution_history", {"events": events},
                                            {"executionArn": e["executionArn"]})
    detail = ops(aws).run("sales-6a1b2c3d4e")
    assert detail.timings == {"preprocess": 300, "tune": 1500, "train": 90, "evaluate": 400, "register": 2,
                              "export": 1}
    assert detail.evaluation["gate"]["passed"] is True and detail.evaluation["challenger"]["mase"] == 0.81
    assert detail.links["evaluation"] == f"s3://{BUCKET}/runs/sales-6a1b2c3d4e/reports/evaluation/evaluation.json"
    assert detail.links["selection"] == f"s3://{BUCKET}/runs/sales-6a1b2c3d4e/reports/selection/"
    assert detail.links["execution"].endswith(e["executionArn"])
    assert "timings per stage" in run_detail(detail)


def test_runs_show_unknown(aws, capsys):
    aws.stubs["stepfunctions"].add_client_error("describe_execution", "ExecutionDoesNotExist",
                                                expected_params={"executionArn": execution_arn("nope")})
    aws.stubs["s3"].add_client_error("get_object", "NoSuchKey", http_status_code=404)
    with pytest.raises(cloud.RunNotFound, match="not a run of stack"):
        ops(aws).run("nope")


def test_tuning_show_lists_one_series_candidates_from_the_select_jobs_report(aws):
    """One series' trials are whole families: its candidates and combinations are in the Select job's
    tuning.json, as in the local run's."""
    report = {"candidates": [
        {"hyperparameters": {"family": "theta", "history": "all", "scale": "log"}, "cv_mase": 0.82},
        {"hyperparameters": {"family": "ets", "history": "window", "scale": "raw"}, "cv_mase": float("inf")},
        {"hyperparameters": {"family": "combination", "kind": "equal top 2", "weights": [0.5, 0.5],
                             "members": [{"family": "theta"}, {"family": "mstl"}]}, "cv_mase": 0.79}]}
    aws.stubs["s3"].add_response(
        "get_object", {"Body": body(report)},
        {"Bucket": BUCKET, "Key": "runs/sales-6a1b2c3d4e/reports/selection/tuning.json"})
    run_id, trials = ops(aws).trials("sales-6a1b2c3d4e")
    assert run_id == "sales-6a1b2c3d4e"
    assert [(t.parameters["family"], t.objective, t.status) for t in trials] == [
        ("theta", 0.82, "Completed"), ("ets", None, "Failed"), ("combination", 0.79, "Completed")]
    rows = trials_table(trials).splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["3", "1", "2"]  # by objective, the failed one last


def test_tuning_show_lists_a_panels_training_jobs_sorted_by_objective(aws):
    aws.stubs["s3"].add_client_error(  # a panel's run has no Select job
        "get_object", "NoSuchKey", http_status_code=404,
        expected_params={"Bucket": BUCKET, "Key": "runs/sales-6a1b2c3d4e/reports/selection/tuning.json"})
    sm = aws.stubs["sagemaker"]
    name = "fcst-sales-6a1b2c3d4e-t0"
    sm.add_response("list_hyper_parameter_tuning_jobs", {"HyperParameterTuningJobSummaries": [{
        "HyperParameterTuningJobName": name, "HyperParameterTuningJobStatus": "Completed", "Strategy": "Bayesian",
        "HyperParameterTuningJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{name}",
        "CreationTime": T0, "TrainingJobStatusCounters": {"Completed": 3, "NonRetryableError": 1},
        "ObjectiveStatusCounters": {"Succeeded": 3, "Failed": 1}}]},
        {"NameContains": "-sales-6a1b2c3d4e-t", "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 10})
    jobs = []
    for i, (k, objective) in enumerate(((1, 0.91), (4, 0.72), (2, None), (3, 0.80))):
        job = {"TrainingJobName": f"{name}-{i + 1:03d}-1a2b3c4d", "CreationTime": T0 + timedelta(minutes=i),
               "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}-{i + 1:03d}-1a2b3c4d",
               "TrainingJobStatus": "Failed" if objective is None else "Completed",
               "TunedHyperParameters": {"fourier_k": str(k), "detrend": "1", "_tuning_objective_metric": "cv_mase"}}
        if objective is not None:
            job["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "cv_mase", "Value": objective,
                                                                  "Type": "Minimize"}
        jobs.append(job)
    sm.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": jobs[::-1]},
                    {"HyperParameterTuningJobName": name, "SortBy": "CreationTime", "SortOrder": "Ascending"})
    run_id, trials = ops(aws).trials("sales-6a1b2c3d4e")
    assert [(t.order, t.parameters["fourier_k"]) for t in trials] == [(1, "1"), (2, "4"), (3, "2"), (4, "3")]
    assert all("_tuning_objective_metric" not in t.parameters for t in trials)
    rows = trials_table(trials).splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["2", "4", "1", "3"]  # by objective, the failed one last
    assert rows[-1].split()[2:4] == ["-", "Failed"]


def package(version: int, status: str, *, description: str | None = None) -> dict:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{version}"
    out = {"ModelPackageName": GROUP, "ModelPackageGroupName": GROUP, "ModelPackageVersion": version,
           "ModelPackageArn": arn, "CreationTime": T0 + timedelta(days=version), "ModelPackageStatus": "Completed",
           "ModelPackageStatusDetails": {"ValidationStatuses": []}, "ModelApprovalStatus": status,
           "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataUrl":
                                      f"s3://{BUCKET}/runs/sales-{version}/models/model.tar.gz"}],
                                      "SupportedContentTypes": ["application/json"],
                                      "SupportedResponseMIMETypes": ["application/json"]},
           "CustomerMetadataProperties": {"run_id": f"sales-{version}", "mase": f"0.{90 - version}",
                                          "gate_passed": "True"},
           "LastModifiedTime": T0 + timedelta(days=10)}
    if description:
        out["ApprovalDescription"] = description
    return out


PACKAGES = [package(1, "Approved"), package(2, "Approved"), package(3, "PendingManualApproval"),
            package(4, "Rejected", description="reject by arn:aws:iam::123456789012:user/ana: coverage too low")]


def stub_models(aws, serving: int | None = 2) -> None:
    sm = aws.stubs["sagemaker"]
    sm.add_response("list_model_package_groups", {"ModelPackageGroupSummaryList": [{
        "ModelPackageGroupName": GROUP, "CreationTime": T0, "ModelPackageGroupStatus": "Completed",
        "ModelPackageGroupArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{GROUP}"}]},
        {"NameContains": STACK_ID.rsplit("/", 1)[-1]})
    sm.add_response("list_model_packages", {"ModelPackageSummaryList": [
        {k: p[k] for k in ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "CreationTime",
                           "ModelPackageStatus", "ModelApprovalStatus")} for p in PACKAGES]},
        {"ModelPackageGroupName": GROUP, "SortBy": "CreationTime", "SortOrder": "Ascending"})
    for p in PACKAGES:
        sm.add_response("describe_model_package", p, {"ModelPackageName": p["ModelPackageArn"]})
    if serving is None:
        sm.add_client_error("describe_endpoint", "ValidationException",
                            f"Could not find endpoint \"{ENDPOINT}\".", expected_params={"EndpointName": ENDPOINT})
    else:
        sm.add_response("describe_endpoint", {
            "EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
            "EndpointConfigName": f"fcst-sales-{serving}-v{serving}-c", "EndpointStatus": "InService",
            "CreationTime": T0, "LastModifiedTime": T0}, {"EndpointName": ENDPOINT})


def test_models_list_marks_the_endpoints_version(aws):
    stub_models(aws)
    rows = ops(aws).models()
    assert [(m.version, m.status, m.serving) for m in rows] == [
        ("v0001", "Superseded", False), ("v0002", "Approved", True), ("v0003", "PendingManualApproval", False),
        ("v0004", "Rejected", False)]
    assert rows[3].decision["by"] == "arn:aws:iam::123456789012:user/ana"
    assert rows[3].decision["reason"] == "coverage too low"
    assert "* v0002" in models_table(rows)


def stub_servable(aws, version: int, *, artifact: bool = True, image: bool = True) -> None:
    aws.stubs["s3"].add_response("head_object", {"ContentLength": 1024}, {
        "Bucket": BUCKET, "Key": f"runs/sales-{version}/models/model.tar.gz"}) if artifact else \
        aws.stubs["s3"].add_client_error("head_object", "404", http_status_code=404)
    if not artifact:
        return
    repository = IMAGE.split("/", 1)[1].split(":")[0]
    if image:
        aws.stubs["ecr"].add_response("describe_images", {"imageDetails": [{"repositoryName": repository,
                                                                            "imageTags": ["9c1e2f"]}]},
                                      {"repositoryName": repository, "imageIds": [{"imageTag": "9c1e2f"}]})
    else:
        aws.stubs["ecr"].add_client_error("describe_images", "ImageNotFoundException",
                                          "The image with imageId {imageTag:'9c1e2f'} does not exist")


def stub_update(aws, version: int, status: str, description: str) -> None:
    aws.stubs["sts"].add_response("get_caller_identity", {
        "UserId": "AIDAEXAMPLE", "Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ops"}, {})
    aws.stubs["sagemaker"].add_response("update_model_package", {"ModelPackageArn": PACKAGES[version - 1][
        "ModelPackageArn"]}, {"ModelPackageArn": PACKAGES[version - 1]["ModelPackageArn"],
                              "ModelApprovalStatus": status, "ApprovalDescription": description})


def test_approve_updates_the_package_and_leaves_the_deploy_to_its_event(aws):
    stub_models(aws)
    stub_servable(aws, 3)
    stub_update(aws, 3, "Approved", f"approve by arn:aws:iam::{ACCOUNT}:user/ops: beats v0002 on new data")
    message = ops(aws).decide("approve", "v0003", "beats v0002 on new data")
    assert "deploy state machine" in message


def test_reject_updates_the_package(aws):
    stub_models(aws)
    stub_update(aws, 3, "Rejected", f"reject by arn:aws:iam::{ACCOUNT}:user/ops: ")
    assert "stays undeployed" in ops(aws).decide("reject", "3", None)


def test_rollback_reapproves_and_starts_the_deploy_state_machine(aws):
    stub_models(aws)
    stub_servable(aws, 1)
    stub_update(aws, 1, "Approved", f"rollback by arn:aws:iam::{ACCOUNT}:user/ops: v0002 drifts")
    aws.stubs["stepfunctions"].add_response("start_execution", {
        "executionArn": DEPLOY.replace(":stateMachine:", ":execution:") + ":rollback-1-x", "startDate": T0},
        {"stateMachineArn": DEPLOY, "name": ANY, "input": json.dumps({"detail": {
            "ModelPackageArn": PACKAGES[0]["ModelPackageArn"], "ModelPackageGroupName": GROUP,
            "ModelApprovalStatus": "Approved"}})})
    assert "rolling back to v0001" in ops(aws).decide("rollback", "v0001", "v0002 drifts")


@pytest.mark.parametrize("action, version, servable, message", [
    ("approve", "v0002", None, "already approved"),
    ("approve", "v0001", None, "models rollback v0001"),
    ("reject", "v0002", None, "roll back to an earlier one first"),
    ("rollback", "v0003", None, "never approved"),
    ("rollback", "v0009", None, "no version v0009"),
    ("rollback", "v0001", {"artifact": False}, "artifact s3://"),
    ("rollback", "v0001", {"image": False}, f"image {IMAGE} is gone"),
])
def test_refusals_change_nothing(aws, action, version, servable, message):
    stub_models(aws)
    if servable is not None:
        stub_servable(aws, 1, **servable)
    # no update_model_package, no start_execution stubbed: a call would fail the test
    with pytest.raises(cloud.RegistryError, match=message.replace("(", r"\(").replace(".", r"\.")):
        ops(aws).decide(action, version, "why")


def test_without_an_endpoint_no_version_serves(aws):
    stub_models(aws, serving=None)
    assert [m.status for m in ops(aws).models()][:2] == ["Approved", "Approved"]


def test_a_stack_without_the_outputs(capsys, monkeypatch):
    fake = FakeSession()
    fake.stubs["cloudformation"].add_client_error("describe_stacks", "ValidationError",
                                                  f"Stack with id {STACK} does not exist")
    monkeypatch.setattr("boto3.session.Session", lambda region_name=None: fake)
    assert main(["runs", "list", "--stack", STACK]) == 2
    assert "cannot read stack 'forecast-mlops'" in capsys.readouterr().err
