"""The training pipeline's Amazon States Language definition (JSONPath), built as plain data.

`build_definition` returns a dict whose strings may carry CDK tokens (bucket name, role ARN, image URIs,
topic ARN); the construct renders it with `Stack.to_json_string`. Keeping the ASL as data makes it easy
to read next to DESIGN.md, to validate (asl-validator), to execute (moto) and to audit against the role
(tests/infra/test_iam_coverage.py).

Flow: Init -> SnapshotInput -> Preprocess(.sync) -> Tune(.sync) -> DescribeTuning -> DescribeBestTrainingJob
-> EnsureRegistry (describe, create when absent) -> FindChampion -> [DescribeChampion] -> Evaluate(.sync)
-> ReadEvaluation (s3:getObject + States.StringToJson) -> Gate
   passed (automatic mode): RegisterApproved -> CreateModel -> CreateEndpointConfig -> FindEndpoint
        -> CreateEndpoint (first run) | UpdateEndpoint -> wait loop until InService on the new config
        -> delete superseded endpoint configs -> export forecasts/<run-id>/ and forecasts/latest/ -> notify
   otherwise: RegisterPending (PendingManualApproval) -> export forecasts/<run-id>/ -> notify (endpoint untouched)
Any task error: Catch -> NotifyFailure -> Fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stacks import naming
from stacks.settings import InfraSettings

SAGEMAKER_SYNC = "arn:aws:states:::sagemaker:{}.sync"
SDK = "arn:aws:states:::aws-sdk:{}:{}"
SNS_PUBLISH = "arn:aws:states:::sns:publish"

PROCESSING_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.processing"]
EVALUATION_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.evaluation"]
OBJECTIVE_METRIC = "cv_mse"
OBJECTIVE_REGEX = r"cv_mse=([0-9.eE+-]+);"

# Errors worth retrying with backoff (throttling and transient service errors). A `.sync` job that
# *fails* ends with States.TaskFailed, which is not retried (bad data stays bad).
THROTTLING = ["ThrottlingException", "SageMaker.ThrottlingException"]
TRANSIENT = THROTTLING + [
    "SageMaker.AmazonSageMakerException",  # optimised integration: service errors, limits, throttling
    "SageMaker.InternalFailure",
    "S3.SlowDownException",
    "S3.InternalErrorException",
    "SNS.ThrottledException",
    "SNS.InternalErrorException",
]
# How DescribeEndpoint says "no such endpoint" (SageMaker answers ValidationException
# "Could not find endpoint ..."); matched on the cause so every SDK naming of the error works.
ENDPOINT_MISSING_CAUSE = "*Could not find endpoint*"

ENDPOINT_WAIT_STATES = ("Creating", "Updating", "SystemUpdating", "RollingBack")


@dataclass(frozen=True, kw_only=True)
class Refs:
    """Deploy-time values (CDK tokens in the app, plain strings in tests)."""

    bucket: str
    sagemaker_role_arn: str
    training_image: str
    serving_image: str
    topic_arn: str
    stack_name: str
    model_package_group: str


def build_definition(settings: InfraSettings, refs: Refs) -> dict[str, Any]:
    s = settings
    b = refs.bucket

    def runs_uri(suffix: str) -> str:
        return f"States.Format('s3://{b}/runs/{{}}/{suffix}', $.runId)"

    def retry(errors: list[str] = TRANSIENT) -> list[dict[str, Any]]:
        return [
            {
                "ErrorEquals": list(errors),
                "IntervalSeconds": 5,
                "BackoffRate": 2.0,
                "MaxAttempts": s.task_max_attempts,
                "MaxDelaySeconds": 120,
                "JitterStrategy": "FULL",
            }
        ]

    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
    tags = [
        {"Key": s.tag_key, "Value": refs.stack_name},
        {"Key": "forecast-mlops:run-id", "Value.$": "$.runId"},
    ]

    def task(resource: str, parameters: dict[str, Any], nxt: str | None, *, result_path: str | None = None,
             result_selector: dict[str, Any] | None = None, retry_on: list[str] = TRANSIENT,
             catch_to_failure: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"Type": "Task", "Resource": resource, "Parameters": parameters}
        if result_selector is not None:
            state["ResultSelector"] = result_selector
        state["ResultPath"] = result_path
        state["Retry"] = retry(retry_on)
        if catch_to_failure:
            state["Catch"] = catch
        if nxt is None:
            state["End"] = True
        else:
            state["Next"] = nxt
        return state

    def processing_input(name: str, uri_expr: str, local: str) -> dict[str, Any]:
        key = "S3Uri.$"
        return {
            "InputName": name,
            "S3Input": {
                key: uri_expr,
                "LocalPath": f"/opt/ml/processing/input/{local}",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    def processing_output(name: str, uri_suffix: str, local: str) -> dict[str, Any]:
        return {
            "OutputName": name,
            "S3Output": {
                "S3Uri.$": runs_uri(uri_suffix),
                "LocalPath": f"/opt/ml/processing/output/{local}",
                "S3UploadMode": "EndOfJob",
            },
        }

    def processing_job(kind: str, entrypoint: list[str], arguments: list[str], inputs: Any,
                       outputs: list[dict[str, Any]]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "ProcessingJobName.$": naming.format_expr(s, kind),
            "RoleArn": refs.sagemaker_role_arn,
            "AppSpecification": {
                "ImageUri": refs.training_image,
                "ContainerEntrypoint": entrypoint,
                "ContainerArguments": arguments,
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": s.processing_instance_type,
                    "VolumeSizeInGB": s.volume_size_gb,
                }
            },
            "ProcessingOutputConfig": {"Outputs": outputs},
            "StoppingCondition": {"MaxRuntimeInSeconds": s.processing_max_runtime_seconds},
            "Environment": {"FORECAST_RUN_ID.$": "$.runId"},
            "Tags": tags,
        }
        if isinstance(inputs, str):
            params["ProcessingInputs.$"] = inputs
        else:
            params["ProcessingInputs"] = inputs
        return params

    model_env = {"FORECAST_MAX_PERIODS": str(s.max_periods)}
    eval_key = "States.Format('runs/{}/reports/evaluation/evaluation.json', $.runId)"
    report = "$.evaluationReport.json"
    arn_name = "States.ArrayGetItem(States.StringSplit({}, '/'), 1)"

    def register(status: str, nxt: str) -> dict[str, Any]:
        return task(
            SDK.format("sagemaker", "createModelPackage"),
            {
                "ModelPackageGroupName": refs.model_package_group,
                "ModelPackageDescription.$": f"States.Format('forecast-mlops run {{}}: {{}}', $.runId, {report}.gate.reason)",
                "ModelApprovalStatus": status,
                "InferenceSpecification": {
                    "Containers": [
                        {"Image": refs.serving_image, "ModelDataUrl.$": "$.best.modelData", "Environment": model_env}
                    ],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
                "ModelMetrics": {
                    "ModelQuality": {
                        "Statistics": {
                            "ContentType": "application/json",
                            "S3Uri.$": runs_uri("reports/evaluation/evaluation.json"),
                        }
                    }
                },
                "CustomerMetadataProperties": {
                    "run_id.$": "$.runId",
                    "training_job.$": "$.best.trainingJob",
                    "gate_passed.$": f"States.Format('{{}}', {report}.gate.passed)",
                    **{
                        f"{metric}.$": f"States.Format('{{}}', {report}.challenger.{metric})"
                        for metric in ("mse", "mae", "mase", "coverage_80", "coverage_95")
                    },
                },
                "Tags": tags,
            },
            nxt,
            result_selector={"arn.$": "$.ModelPackageArn"},
            result_path="$.modelPackage",
        )

    def copy(key_expr: str, nxt: str) -> dict[str, Any]:
        return task(
            SDK.format("s3", "copyObject"),
            {
                "Bucket": b,
                "Key.$": key_expr,
                "CopySource.$": f"States.Format('{b}/runs/{{}}/forecast/forecast.csv', $.runId)",
                "ContentType": "text/csv",
                "MetadataDirective": "REPLACE",
            },
            nxt,
        )

    def describe_endpoint(nxt: str | None, *, catch_missing: bool) -> dict[str, Any]:
        state = task(
            SDK.format("sagemaker", "describeEndpoint"),
            {"EndpointName": s.endpoint_name},
            nxt,
            result_selector={"status.$": "$.EndpointStatus", "configName.$": "$.EndpointConfigName"},
            result_path="$.endpoint",
            retry_on=THROTTLING,
        )
        if catch_missing:
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "EndpointExists?"}]
        return state

    if s.approval_mode == "automatic":
        gate_choices = [
            {
                "And": [
                    {"Variable": f"{report}.gate.passed", "IsPresent": True},
                    {"Variable": f"{report}.gate.passed", "IsBoolean": True},
                    {"Variable": f"{report}.gate.passed", "BooleanEquals": True},
                ],
                "Next": "RegisterApproved",
            }
        ]
    else:  # manual: every candidate waits for a person, whatever the gate said
        gate_choices = [{"Variable": f"{report}.gate", "IsPresent": True, "Next": "RegisterPending"}]

    states: dict[str, Any] = {
        "Init": {
            "Type": "Pass",
            "Comment": "The run id is the execution name (derived from the S3 key and version id by the starter).",
            "Parameters": {
                "runId.$": "$$.Execution.Name",
                "upload": {
                    "key.$": "$.key",
                    "versionId.$": "$.versionId",
                    "copySource.$": "$.copySource",
                    "fileName.$": "$.fileName",
                },
            },
            "Next": "SnapshotInput",
        },
        "SnapshotInput": task(
            SDK.format("s3", "copyObject"),
            {
                "Bucket": b,
                "Key.$": "States.Format('runs/{}/input/{}', $.runId, $.upload.fileName)",
                "CopySource.$": "$.upload.copySource",
            },
            "Preprocess",
        ),
        "Preprocess": task(
            SAGEMAKER_SYNC.format("createProcessingJob"),
            processing_job(
                "preprocess_job",
                PROCESSING_ENTRYPOINT,
                s.processing_arguments(),
                [processing_input("raw", runs_uri("input/"), "raw")],
                [
                    processing_output("train", "processed/train/", "train"),
                    processing_output("test", "processed/test/", "test"),
                    processing_output("report", "reports/processing/", "report"),
                ],
            ),
            "Tune",
            result_selector={"name.$": "$.ProcessingJobName"},
            result_path="$.preprocess",
        ),
        "Tune": task(
            SAGEMAKER_SYNC.format("createHyperParameterTuningJob"),
            {
                "HyperParameterTuningJobName.$": naming.format_expr(s, "tuning_job"),
                "HyperParameterTuningJobConfig": {
                    "Strategy": s.tuning.strategy,
                    "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": OBJECTIVE_METRIC},
                    "ResourceLimits": {
                        "MaxNumberOfTrainingJobs": s.tuning.max_jobs,
                        "MaxParallelTrainingJobs": s.tuning.max_parallel_jobs,
                    },
                    "ParameterRanges": s.parameter_ranges(),
                    "TrainingJobEarlyStoppingType": "Off",
                },
                "TrainingJobDefinition": {
                    "StaticHyperParameters": s.static_hyperparameters(),
                    "AlgorithmSpecification": {
                        "TrainingImage": refs.training_image,
                        "TrainingInputMode": "File",
                        "MetricDefinitions": [{"Name": OBJECTIVE_METRIC, "Regex": OBJECTIVE_REGEX}],
                    },
                    "RoleArn": refs.sagemaker_role_arn,
                    "InputDataConfig": [
                        {
                            "ChannelName": channel,
                            "ContentType": "text/csv",
                            "InputMode": "File",
                            "DataSource": {
                                "S3DataSource": {
                                    "S3DataType": "S3Prefix",
                                    "S3Uri.$": runs_uri(f"processed/{channel}/"),
                                    "S3DataDistributionType": "FullyReplicated",
                                }
                            },
                        }
                        for channel in ("train", "test")
                    ],
                    "OutputDataConfig": {"S3OutputPath.$": runs_uri("models/")},
                    "ResourceConfig": {
                        "InstanceType": s.training_instance_type,
                        "InstanceCount": 1,
                        "VolumeSizeInGB": s.volume_size_gb,
                    },
                    "StoppingCondition": {
                        "MaxRuntimeInSeconds": s.tuning.max_runtime_seconds,
                        **({"MaxWaitTimeInSeconds": s.tuning.max_wait_seconds} if s.tuning.use_spot else {}),
                    },
                    "EnableManagedSpotTraining": s.tuning.use_spot,
                    "CheckpointConfig": {"S3Uri.$": runs_uri("checkpoints/"), "LocalPath": "/opt/ml/checkpoints"},
                },
                "Tags": tags,
            },
            "DescribeTuning",
            result_selector={"name.$": "$.HyperParameterTuningJobName"},
            result_path="$.tuning",
        ),
        "DescribeTuning": task(
            SDK.format("sagemaker", "describeHyperParameterTuningJob"),
            {"HyperParameterTuningJobName.$": "$.tuning.name"},
            "DescribeBestTrainingJob",
            result_selector={"trainingJob.$": "$.BestTrainingJob.TrainingJobName"},
            result_path="$.bestJob",
        ),
        "DescribeBestTrainingJob": task(
            SDK.format("sagemaker", "describeTrainingJob"),
            {"TrainingJobName.$": "$.bestJob.trainingJob"},
            "EnsureRegistry",
            result_selector={
                "trainingJob.$": "$.TrainingJobName",
                "modelData.$": "$.ModelArtifacts.S3ModelArtifacts",
                "hyperParameters.$": "$.HyperParameters",
            },
            result_path="$.best",
        ),
        "EnsureRegistry": {
            **task(
                SDK.format("sagemaker", "describeModelPackageGroup"),
                {"ModelPackageGroupName": refs.model_package_group},
                "FindChampion",
                retry_on=THROTTLING,
            ),
            "Comment": "The first run finds no group: create it.",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CreateRegistry"}],
        },
        "CreateRegistry": task(
            SDK.format("sagemaker", "createModelPackageGroup"),
            {
                "ModelPackageGroupName": refs.model_package_group,
                "ModelPackageGroupDescription": f"forecast-mlops models of stack {refs.stack_name}",
                "Tags": [{"Key": s.tag_key, "Value": refs.stack_name}],
            },
            "FindChampion",
        ),
        "FindChampion": task(
            SDK.format("sagemaker", "listModelPackages"),
            {
                "ModelPackageGroupName": refs.model_package_group,
                "ModelApprovalStatus": "Approved",
                "SortBy": "CreationTime",
                "SortOrder": "Descending",
                "MaxResults": 1,
            },
            "HasChampion?",
            result_selector={"packages.$": "$.ModelPackageSummaryList[*].ModelPackageArn"},
            result_path="$.champion",
        ),
        "HasChampion?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.champion.packages[0]", "IsPresent": True, "Next": "DescribeChampion"}],
            "Default": "InputsWithoutChampion",
        },
        "DescribeChampion": task(
            SDK.format("sagemaker", "describeModelPackage"),
            {"ModelPackageName.$": "$.champion.packages[0]"},
            "InputsWithChampion",
            # ArrayGetItem, not `Containers[0].ModelDataUrl`: an index inside a path is read as a list by
            # some interpreters; this form is unambiguous.
            result_selector={
                "arn.$": "$.ModelPackageArn",
                "container.$": "States.ArrayGetItem($.InferenceSpecification.Containers, 0)",
            },
            result_path="$.champion",
        ),
        "InputsWithChampion": {
            "Type": "Pass",
            "Parameters": {
                "inputs": [
                    processing_input("train", runs_uri("processed/train/"), "train"),
                    processing_input("test", runs_uri("processed/test/"), "test"),
                    processing_input("model", "$.best.modelData", "model"),
                    processing_input("champion", "$.champion.container.ModelDataUrl", "champion"),
                ]
            },
            "ResultPath": "$.evaluation",
            "Next": "Evaluate",
        },
        "InputsWithoutChampion": {
            "Type": "Pass",
            "Comment": "Empty registry (first run) or no approved model yet.",
            "Parameters": {
                "inputs": [
                    processing_input("train", runs_uri("processed/train/"), "train"),
                    processing_input("test", runs_uri("processed/test/"), "test"),
                    processing_input("model", "$.best.modelData", "model"),
                ]
            },
            "ResultPath": "$.evaluation",
            "Next": "Evaluate",
        },
        "Evaluate": task(
            SAGEMAKER_SYNC.format("createProcessingJob"),
            processing_job(
                "evaluation_job",
                EVALUATION_ENTRYPOINT,
                s.evaluation_arguments(),
                "$.evaluation.inputs",
                [
                    processing_output("evaluation", "reports/evaluation/", "evaluation"),
                    processing_output("forecast", "forecast/", "forecast"),
                ],
            ),
            "ReadEvaluation",
            result_selector={"name.$": "$.ProcessingJobName"},
            result_path="$.evaluation",
        ),
        "ReadEvaluation": task(
            SDK.format("s3", "getObject"),
            {"Bucket": b, "Key.$": eval_key},
            "Gate",
            result_selector={"json.$": "States.StringToJson($.Body)"},
            result_path="$.evaluationReport",
        ),
        "Gate": {
            "Type": "Choice",
            "Comment": f"approval mode: {s.approval_mode}",
            "Choices": gate_choices,
            "Default": "RegisterPending",
        },
        "RegisterApproved": register("Approved", "CreateModel"),
        "RegisterPending": register("PendingManualApproval", "ExportCandidateForecast"),
        "ExportCandidateForecast": copy("States.Format('forecasts/{}/forecast.csv', $.runId)", "NotifyNotPromoted"),
        "NotifyNotPromoted": task(
            SNS_PUBLISH,
            {
                "TopicArn": refs.topic_arn,
                "Subject": "forecast-mlops: candidate not promoted",
                "Message.$": (
                    "States.Format('Run {} registered model package {} as PendingManualApproval "
                    "(gate passed: {}; {}). The endpoint was not changed.', $.runId, $.modelPackage.arn, "
                    f"{report}.gate.passed, {report}.gate.reason)"
                ),
            },
            "NotPromoted",
        ),
        "NotPromoted": {"Type": "Succeed"},
        "CreateModel": task(
            SDK.format("sagemaker", "createModel"),
            {
                "ModelName.$": naming.format_expr(s, "model"),
                "ExecutionRoleArn": refs.sagemaker_role_arn,
                "PrimaryContainer": {
                    "Image": refs.serving_image,
                    "ModelDataUrl.$": "$.best.modelData",
                    "Environment": model_env,
                },
                "Tags": tags,
            },
            "CreateEndpointConfig",
            result_selector={"name.$": arn_name.format("$.ModelArn")},
            result_path="$.model",
        ),
        "CreateEndpointConfig": task(
            SDK.format("sagemaker", "createEndpointConfig"),
            {
                "EndpointConfigName.$": naming.format_expr(s, "endpoint_config"),
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName.$": "$.model.name",
                        "ServerlessConfig": {
                            "MemorySizeInMB": s.serverless_memory_mb,
                            "MaxConcurrency": s.serverless_max_concurrency,
                        },
                    }
                ],
                "Tags": tags,
            },
            "FindEndpoint",
            result_selector={"name.$": arn_name.format("$.EndpointConfigArn")},
            result_path="$.endpointConfig",
        ),
        "FindEndpoint": describe_endpoint("UpdateEndpoint", catch_missing=True),
        "EndpointExists?": {
            "Type": "Choice",
            "Comment": "DescribeEndpoint failed: a missing endpoint (first run) is created; anything else fails.",
            "Choices": [
                {
                    "Or": [
                        {"Variable": "$.error.Cause", "StringMatches": ENDPOINT_MISSING_CAUSE},
                        {"Variable": "$.error.Error", "StringEquals": "SageMaker.ResourceNotFoundException"},
                    ],
                    "Next": "CreateEndpoint",
                }
            ],
            "Default": "NotifyFailure",
        },
        "CreateEndpoint": task(
            SDK.format("sagemaker", "createEndpoint"),
            {"EndpointName": s.endpoint_name, "EndpointConfigName.$": "$.endpointConfig.name", "Tags": tags[:1]},
            "WaitForEndpoint",
        ),
        "UpdateEndpoint": task(
            SDK.format("sagemaker", "updateEndpoint"),
            {"EndpointName": s.endpoint_name, "EndpointConfigName.$": "$.endpointConfig.name"},
            "WaitForEndpoint",
        ),
        "WaitForEndpoint": {"Type": "Wait", "Seconds": s.endpoint_poll_seconds, "Next": "CheckEndpoint"},
        "CheckEndpoint": describe_endpoint("EndpointReady?", catch_missing=False),
        "EndpointReady?": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.endpoint.status", "StringEquals": "InService"},
                        {"Variable": "$.endpoint.configName", "StringEqualsPath": "$.endpointConfig.name"},
                    ],
                    "Next": "ListEndpointConfigs",
                },
                {"Variable": "$.endpoint.status", "StringEquals": "InService", "Next": "EndpointRolledBack"},
                {"Variable": "$.endpoint.status", "StringEquals": "Failed", "Next": "EndpointFailed"},
            ],
            "Default": "WaitForEndpoint",
        },
        "EndpointRolledBack": {
            "Type": "Pass",
            "Parameters": {
                "Error": "EndpointUpdateRolledBack",
                "Cause.$": "States.Format('endpoint {} kept config {}: the update to {} failed and SageMaker rolled back',"
                " $.endpoint.status, $.endpoint.configName, $.endpointConfig.name)",
            },
            "ResultPath": "$.error",
            "Next": "NotifyFailure",
        },
        "EndpointFailed": {
            "Type": "Pass",
            "Parameters": {
                "Error": "EndpointFailed",
                "Cause": f"endpoint {s.endpoint_name} is Failed; see FailureReason in DescribeEndpoint",
            },
            "ResultPath": "$.error",
            "Next": "NotifyFailure",
        },
        "ListEndpointConfigs": task(
            SDK.format("sagemaker", "listEndpointConfigs"),
            {"NameContains": f"{s.resource_prefix}-", "MaxResults": 100, "SortBy": "CreationTime",
             "SortOrder": "Ascending"},
            "DeleteSupersededConfigs",
            result_selector={"names.$": "$.EndpointConfigs[*].EndpointConfigName"},
            result_path="$.oldConfigs",
        ),
        "DeleteSupersededConfigs": {
            "Type": "Map",
            "Comment": "Only now that the endpoint serves the new config: delete the ones it no longer uses.",
            "ItemsPath": "$.oldConfigs.names",
            "ItemSelector": {
                "name.$": "$$.Map.Item.Value",
                "current.$": "$.endpointConfig.name",
            },
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Superseded?",
                "States": {
                    "Superseded?": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.name", "StringEqualsPath": "$.current", "Next": "KeepCurrent"}],
                        "Default": "DeleteEndpointConfig",
                    },
                    "KeepCurrent": {"Type": "Succeed"},
                    "DeleteEndpointConfig": {
                        "Type": "Task",
                        "Resource": SDK.format("sagemaker", "deleteEndpointConfig"),
                        "Parameters": {"EndpointConfigName.$": "$.name"},
                        "Retry": retry(THROTTLING),
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotDeleted"}],
                        "End": True,
                    },
                    "NotDeleted": {"Type": "Succeed", "Comment": "Not ours or already gone: clean-up removes leftovers."},
                },
            },
            "ResultPath": None,
            "Next": "ExportRunForecast",
        },
        "ExportRunForecast": copy("States.Format('forecasts/{}/forecast.csv', $.runId)", "ExportLatestForecast"),
        "ExportLatestForecast": copy("'forecasts/latest/forecast.csv'", "NotifySuccess"),
        "NotifySuccess": task(
            SNS_PUBLISH,
            {
                "TopicArn": refs.topic_arn,
                "Subject": "forecast-mlops: new model deployed",
                "Message.$": (
                    f"States.Format('Run {{}} deployed model package {{}} to endpoint {s.endpoint_name} "
                    f"(challenger MASE {{}}; {{}}). Forecast: s3://{b}/forecasts/latest/forecast.csv', "
                    f"$.runId, $.modelPackage.arn, {report}.challenger.mase, {report}.gate.reason)"
                ),
            },
            "Deployed",
        ),
        "Deployed": {"Type": "Succeed"},
        "NotifyFailure": {
            "Type": "Task",
            "Resource": SNS_PUBLISH,
            "Parameters": {
                "TopicArn": refs.topic_arn,
                "Subject": "forecast-mlops: run failed",
                "Message.$": (
                    "States.Format('Run {} failed. The endpoint changes only when the new config of a run is InService; "
                    "a run failing before that left it as it was. Error: {}', "
                    "$$.Execution.Name, States.JsonToString($.error))"
                ),
            },
            "ResultPath": None,
            "Retry": retry(TRANSIENT),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "RunFailed"}],
            "Next": "RunFailed",
        },
        "RunFailed": {"Type": "Fail", "Error": "PipelineFailed", "Cause": "See the SNS notification and the execution history."},
    }
    # The single-quoted literal key of ExportLatestForecast is not an intrinsic: make it a plain key.
    latest = states["ExportLatestForecast"]["Parameters"]
    latest["Key"] = "forecasts/latest/forecast.csv"
    del latest["Key.$"]
    return {
        "Comment": "forecast-mlops training pipeline: preprocess, tune, evaluate, gate, register, deploy, export, notify",
        "StartAt": "Init",
        "TimeoutSeconds": 24 * 3600,
        "States": states,
    }
