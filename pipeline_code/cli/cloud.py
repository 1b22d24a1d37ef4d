"""``runs``, ``tuning`` and ``models`` on a deployed stack (``--stack NAME``), with boto3.

Where the answers come from:

* the stack's outputs (CloudFormation DescribeStacks): ``StateMachineArn``, ``BucketName``,
  ``EndpointName``, ``DeployStateMachineArn``; the registry's group is ``ModelPackageGroupName`` when the
  stack outputs it, else the group whose name holds the stack id's UUID (stacks/training_pipeline.py);
* runs: the state machine's executions (ListExecutions, DescribeExecution: the input names the upload,
  the output carries the evaluation report and the package) and the run records in the bucket
  (``runs/<id>/run.json``: refused at validation, no execution); uploads under ``raw/`` newer than the
  newest execution are ``queued`` (the starter starts one run at a time, oldest first);
* tuning: one series' every candidate from the Select job's ``reports/selection/tuning.json``; a panel's
  trials from the run's HPO job (ListHyperParameterTuningJobs by name, ListTrainingJobsForHyperParameterTuningJob).
  **boto3, not the sagemaker SDK**: v3's ``sagemaker-core`` wraps the same two calls in resource classes and
  the v2 ``HyperparameterTuningJobAnalytics`` builds a pandas frame from them; either would add a heavy
  dependency (pydantic models of every SageMaker shape, rich, ...) to the client for two paginated calls;
* models: the Model Registry group (ListModelPackages, DescribeModelPackage, UpdateModelPackage with the
  reason in ApprovalDescription); which version serves comes from the endpoint's config, named
  ``<prefix>-<run id>-v<version>-c`` by the deploy state machine (stacks/naming.py).

API references:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ListTrainingJobsForHyperParameterTuningJob.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperParameterTrainingJobSummary.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateModelPackage.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ModelPackageSummary.html
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from pipeline_code.cli.views import ModelRow, Trial, report_trials
from pipeline_code.pipeline import layout
from pipeline_code.pipeline.registry import APPROVED, PENDING, REJECTED, SUPERSEDED, RegistryError, check_decision
from pipeline_code.pipeline.runs import (
    FAILED, QUEUED, RUNNING, STATES, RunDetail, RunNotFound, RunSummary, describe_spec, evaluation_summary,
    headline, parse_time, state_of,
)

CONFIG_VERSION = re.compile(r"-v(\d+)-c$")
DECISION = re.compile(r"^(approve|reject|rollback) by (\S+): ?(.*)$", re.S)
# The local stages' names: one series' Select job and a panel's sharded fit fit the model to evaluate.
STATE_TIMINGS = {"Preprocess": "preprocess", "Tune": "tune", "Select": "train", "FitShards": "train",
                 "Evaluate": "evaluate", "RegisterApproved": "register", "RegisterPending": "register",
                 "ExportRunForecast": "export"}
DESCRIPTION_MAX = 1024  # ApprovalDescription length limit (API_UpdateModelPackage.html)


class StackError(RuntimeError):
    """The stack, or something it names, cannot be read."""


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(name: str) -> int:
    match = re.fullmatch(r"v?0*(\d+)", name.strip())
    if not match:
        raise RegistryError(f"{name!r} is not a version: versions are named v0001 (or 1), v0002, ...")
    return int(match.group(1))


class StackOps:
    """The deployed stack's runs, tuning jobs and model registry."""

    def __init__(self, stack: str, region: str | None = None, session: Any = None) -> None:
        import boto3

        self.session = session or boto3.session.Session(region_name=region)
        self._clients: dict[str, Any] = {}
        self.stack = stack
        try:
            found = self._client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        except Exception as err:  # noqa: BLE001 - botocore's errors: the message says why
            raise StackError(f"cannot read stack {stack!r}: {err}") from None
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        self.stack_id = found.get("StackId", "")
        missing = [k for k in ("StateMachineArn", "BucketName", "EndpointName", "DeployStateMachineArn")
                   if k not in self.outputs]
        if missing:
            raise StackError(f"stack {stack!r} lacks the outputs {', '.join(missing)}")
        self.bucket = self.outputs["BucketName"]
        self._group: str | None = self.outputs.get("ModelPackageGroupName")

    def _client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def where(self) -> str:
        return f"stack {self.stack}"

    # --- runs ------------------------------------------------------------------------------------

    def runs(self, limit: int = 100) -> list[RunSummary]:
        sfn = self._client("stepfunctions")
        executions = []
        for page in sfn.get_paginator("list_executions").paginate(
                stateMachineArn=self.outputs["StateMachineArn"], PaginationConfig={"MaxItems": limit}):
            executions += page["executions"]
        found = [self._summary(sfn.describe_execution(executionArn=e["executionArn"])) for e in executions]
        started = {r.run_id for r in found}
        found += [r for r in self._records() if r.run_id not in started]
        newest = max((e["startDate"] for e in executions), default=None)
        found += self._queued(newest)
        epoch = datetime.min.replace(tzinfo=timezone.utc)
        return sorted(found, key=lambda r: (r.started_at or epoch, r.run_id), reverse=True)

    def run(self, run_id: str) -> RunDetail:
        sfn = self._client("stepfunctions")
        arn = self._execution_arn(run_id)
        try:
            execution = sfn.describe_execution(executionArn=arn)
        except sfn.exceptions.ExecutionDoesNotExist:
            record = self._record(run_id)
            if not record:
                raise RunNotFound(f"{run_id!r} is not a run of stack {self.stack} (forecast-mlops runs list"
                                  f" --stack {self.stack} shows them)") from None
            return RunDetail(record, links=self._links(run_id, None))
        summary = self._summary(execution)
        output = _json(execution.get("output"))
        evaluation = ((output.get("evaluationReport") or {}).get("json")) or {}
        return RunDetail(summary, self._timings(arn), evaluation_summary(evaluation), self._links(run_id, arn))

    def _execution_arn(self, run_id: str) -> str:
        # arn:aws:states:region:account:stateMachine:NAME -> ...:execution:NAME:RUN
        machine = self.outputs["StateMachineArn"]
        return machine.replace(":stateMachine:", ":execution:", 1) + f":{run_id}"

    def _summary(self, execution: dict[str, Any]) -> RunSummary:
        status = execution["status"]
        given = _json(execution.get("input"))
        output = _json(execution.get("output"))
        evaluation = ((output.get("evaluationReport") or {}).get("json")) or {}
        package = output.get("modelPackage") or {}
        if status == "RUNNING":
            state, reason = RUNNING, None
        elif status == "SUCCEEDED":
            state = state_of("succeeded", promoted=package.get("status") == APPROVED)
            reason = (evaluation.get("gate") or {}).get("reason")
        else:
            state = FAILED
            reason = ": ".join(str(x) for x in (execution.get("error"), execution.get("cause")) if x) or status
        stop = execution.get("stopDate")
        arn = package.get("arn") or ""
        return RunSummary(
            run_id=execution["name"], state=state, data=given.get("key"), started_at=execution.get("startDate"),
            duration_s=(stop - execution["startDate"]).total_seconds() if stop else None,
            spec=describe_spec(evaluation.get("spec") or (output.get("best") or {}).get("hyperParameters")),
            metrics=headline(evaluation.get("challenger")), reason=reason,
            version=version_name(int(arn.rsplit("/", 1)[-1])) if arn.rsplit("/", 1)[-1].isdigit() else None,
        )

    def _timings(self, arn: str) -> dict[str, float]:
        sfn = self._client("stepfunctions")
        entered: dict[str, datetime] = {}
        timings: dict[str, float] = {}
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            for event in page["events"]:
                details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
                stage = STATE_TIMINGS.get(details.get("name", ""))
                if not stage:
                    continue
                if event["type"].endswith("StateEntered"):
                    entered[stage] = event["timestamp"]
                elif event["type"].endswith("StateExited") and stage in entered:
                    seconds = (event["timestamp"] - entered.pop(stage)).total_seconds()
                    timings[stage] = round(timings.get(stage, 0.0) + seconds, 3)
        return timings

    def _links(self, run_id: str, arn: str | None) -> dict[str, str]:
        root = f"s3://{self.bucket}/"
        links = {
            "run document": root + layout.run_key(run_id, layout.RUN_DOCUMENT),
            "evaluation": root + layout.run_key(run_id, layout.EVALUATION_REPORT + layout.EVALUATION_FILE),
            "processing report": root + layout.run_key(run_id, layout.PROCESSING_REPORT),
            "selection": root + layout.run_key(run_id, layout.SELECTION_REPORT),
            "models and plots": root + layout.run_key(run_id, layout.MODELS),
            "forecast": root + layout.run_forecast_key(run_id),
        }
        if arn:
            region = arn.split(":")[3]
            links["execution"] = (f"https://{region}.console.aws.amazon.com/states/home?region={region}"
                                  f"#/v2/executions/details/{arn}")
        return links

    def _records(self) -> list[RunSummary]:
        """Run records without an execution (refused at validation)."""
        s3 = self._client("s3")
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=layout.RUNS,
                                                                 Delimiter="/"):
            for prefix in page.get("CommonPrefixes", []):
                run_id = prefix["Prefix"][len(layout.RUNS):].rstrip("/")
                record = self._record(run_id)
                if record:
                    out.append(record)
        return out

    def _record(self, run_id: str) -> RunSummary | None:
        s3 = self._client("s3")
        try:
            body = s3.get_object(Bucket=self.bucket, Key=layout.run_key(run_id, layout.RUN_RECORD))["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        record = _json(body)
        if record.get("state") not in STATES:
            return None
        return RunSummary(run_id=run_id, state=record["state"], data=record.get("data"),
                          started_at=parse_time(record.get("at")), reason=record.get("reason"))

    def _queued(self, newest: datetime | None) -> list[RunSummary]:
        s3 = self._client("s3")
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=layout.RAW):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith(".csv") and (newest is None or obj["LastModified"] > newest):
                    out.append(RunSummary(run_id="-", state=QUEUED, data=f"s3://{self.bucket}/{key}",
                                          started_at=obj["LastModified"], reason="waits for the run before it"))
        return out

    # --- tuning ----------------------------------------------------------------------------------

    def trials(self, run_id: str) -> tuple[str, list[Trial]]:
        """One series' run: every candidate and combination, from the Select job's ``tuning.json`` (the
        tuning job's trials are whole families); a panel's: each training job of its tuning job."""
        s3 = self._client("s3")
        key = layout.run_key(run_id, layout.SELECTION_REPORT + layout.TUNING_FILE)
        try:
            return run_id, report_trials(_json(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()))
        except s3.exceptions.NoSuchKey:
            pass
        sm = self._client("sagemaker")
        jobs = sm.list_hyper_parameter_tuning_jobs(NameContains=f"-{run_id}-t", SortBy="CreationTime",
                                                   SortOrder="Descending", MaxResults=10)
        names = [j["HyperParameterTuningJobName"] for j in jobs["HyperParameterTuningJobSummaries"]]
        if not names:
            raise RunNotFound(f"no tuning job for run {run_id!r} in this account and region (forecast-mlops"
                              f" runs list --stack {self.stack} shows the runs)")
        summaries = []
        for page in sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
                HyperParameterTuningJobName=names[0], SortBy="CreationTime", SortOrder="Ascending"):
            summaries += page["TrainingJobSummaries"]
        summaries.sort(key=lambda s: s["CreationTime"])
        trials = []
        for order, s in enumerate(summaries, 1):
            metric = s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            trials.append(Trial(order=order, objective=metric.get("Value"),
                                parameters={k: str(v) for k, v in s.get("TunedHyperParameters", {}).items()
                                            if not k.startswith("_")},
                                status=s["TrainingJobStatus"], name=s["TrainingJobName"]))
        return run_id, trials

    # --- models ----------------------------------------------------------------------------------

    def group(self) -> str:
        if self._group:
            return self._group
        uuid = self.stack_id.rsplit("/", 1)[-1]
        groups = self._client("sagemaker").list_model_package_groups(NameContains=uuid)["ModelPackageGroupSummaryList"]
        if not groups:
            raise StackError(f"stack {self.stack} has no model package group yet (no run has registered a model)")
        self._group = groups[0]["ModelPackageGroupName"]
        return self._group

    def serving_version(self) -> int | None:
        sm = self._client("sagemaker")
        try:
            config = sm.describe_endpoint(EndpointName=self.outputs["EndpointName"])["EndpointConfigName"]
        except sm.exceptions.ClientError as err:
            if "Could not find endpoint" in str(err):
                return None
            raise
        match = CONFIG_VERSION.search(config)
        return int(match.group(1)) if match else None

    def _packages(self) -> list[dict[str, Any]]:
        sm = self._client("sagemaker")
        found = []
        for page in sm.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=self.group(), SortBy="CreationTime", SortOrder="Ascending"):
            found += page["ModelPackageSummaryList"]
        return [sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in found]

    def models(self) -> list[ModelRow]:
        packages = self._packages()
        serving = self.serving_version()
        return [_row(p, serving) for p in packages]

    def decide(self, action: str, version: str, reason: str | None) -> str:
        """approve / reject: UpdateModelPackage (an approval's state-change event starts the deploy
        state machine); rollback: the package is approved again with the reason, and the deploy state
        machine is started for it, the same deploy path (an update that leaves the status Approved is
        not a state change, so no event is relied on)."""
        number = version_number(version)
        packages = {p["ModelPackageVersion"]: p for p in self._packages()}
        serving = self.serving_version()
        if number not in packages:
            raise RegistryError(f"no version {version_name(number)} in model package group {self.group()};"
                                " nothing changed")
        package = packages[number]
        row = _row(package, serving)
        check_decision(action, row.version, row.status)
        if action != "reject":
            self._check_servable(package)
        who = self._client("sts").get_caller_identity()["Arn"]
        description = f"{action} by {who}: {reason or ''}"[:DESCRIPTION_MAX]
        status = REJECTED if action == "reject" else APPROVED
        self._client("sagemaker").update_model_package(
            ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus=status, ApprovalDescription=description)
        name = version_name(number)
        if action == "reject":
            return f"{name} rejected; it stays undeployed"
        if action == "approve":
            return (f"{name} approved; the registry's state-change event starts the deploy state machine,"
                    f" which updates endpoint {self.outputs['EndpointName']} in place")
        execution = self._client("stepfunctions").start_execution(
            stateMachineArn=self.outputs["DeployStateMachineArn"],
            name=f"rollback-{number}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}",
            input=json.dumps({"detail": {"ModelPackageArn": package["ModelPackageArn"],
                                         "ModelPackageGroupName": self.group(), "ModelApprovalStatus": APPROVED}}),
        )
        return (f"rolling back to {name}: deploy execution {execution['executionArn']} updates endpoint"
                f" {self.outputs['EndpointName']} in place")

    def _check_servable(self, package: dict[str, Any]) -> None:
        """The artifact in S3 and the image in ECR must both still exist."""
        container = package["InferenceSpecification"]["Containers"][0]
        name = version_name(package["ModelPackageVersion"])
        bucket, _, key = container["ModelDataUrl"].removeprefix("s3://").partition("/")
        s3 = self._client("s3")
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as err:
            raise RegistryError(f"{name} cannot be served: its artifact {container['ModelDataUrl']} is gone"
                                f" ({err.response['Error'].get('Code')}); nothing changed") from None
        image = container["Image"]
        repository = image.split("/", 1)[1].split("@")[0].split(":")[0]
        ref = ({"imageDigest": image.split("@", 1)[1]} if "@" in image
               else {"imageTag": image.rsplit(":", 1)[1]})
        ecr = self._client("ecr")
        try:
            ecr.describe_images(repositoryName=repository, imageIds=[ref])
        except ecr.exceptions.ClientError as err:
            raise RegistryError(f"{name} cannot be served: its image {image} is gone"
                                f" ({err.response['Error'].get('Code')}); nothing changed") from None


def _row(package: dict[str, Any], serving: int | None) -> ModelRow:
    number = package["ModelPackageVersion"]
    status = package.get("ModelApprovalStatus", PENDING)
    if status == APPROVED and serving is not None and number != serving:
        status = SUPERSEDED
    decision: dict[str, Any] = {}
    match = DECISION.match(package.get("ApprovalDescription") or "")
    if match:
        when = package.get("LastModifiedTime")
        decision = {"action": match.group(1), "by": match.group(2), "reason": match.group(3) or None,
                    "at": when.isoformat(timespec="seconds") if isinstance(when, datetime) else when}
    props = package.get("CustomerMetadataProperties") or {}
    return ModelRow(version=version_name(number), status=status, serving=number == serving,
                    run_id=props.get("run_id"), registered_at=package.get("CreationTime"),
                    metrics=headline(props), decision=decision)


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
