"""The training pipeline's Amazon States Language definition (JSONPath), built as plain data.

`build_definition` returns a dict whose strings may carry CDK tokens (bucket name, role ARN, image URIs,
topic ARN); the construct renders it with `json.dumps`. Keeping the ASL as data makes it easy to read
next to DESIGN.md, to validate (asl-validator), to execute (moto) and to audit against the role.

Flow: Init -> SnapshotInput -> Preprocess(.sync) -> Tune(.sync)
-> Panel? (a panel: FitShards(.sync) -> ShardsAsModel; one series: Select(.sync) -> SelectedAsModel)
-> EnsureRegistry (describe, create when absent)
-> FindChampion -> [DescribeChampion] -> Evaluate(.sync)
-> ReadEvaluation (s3:getObject + States.StringToJson) -> Metadata? (the package's metadata) -> Gate
   passed (automatic mode): RegisterApproved; otherwise RegisterPending (PendingManualApproval)
-> ExportRunForecast (forecasts/<run-id>/) -> notify -> end.
Deployment is not part of this state machine: registering a package as Approved (here, or a person
approving a pending one in the registry) emits the registry's state-change event, which starts the
deploy state machine (stacks/deploy_definition.py). That is the one deploy path.
Many series (docs/panel.md): the starter sets `shards` in the execution input (the run document's
`series.instances` for a panel upload, 0 for one series). Tuning scores the panel's global choices;
FitShards is one processing job on `shards` instances whose train input is ShardedByS3Key, so each
instance fits only its shard files with the trials' best choice and writes its partial panel under its
own host name; evaluation merges the shards into the one model that is registered. One series skips it.
Errors: throttling/transient errors loop back (stacks/asl.py); any other error -> NotifyFailure -> Fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_code.engine.settings import (
    MAX_PERIODS_ENV, OBJECTIVE, RECORDED_LEVELS, SETTINGS_CHANNEL, coverage_key,
)
from pipeline_code.entrypoints.sagemaker_paths import (
    SELECTED_MODEL_OUTPUT, SELECTION_OUTPUT, TRIALS_INPUT, TUNING_JOB_ENV, WHOLE_TRAIN_CHANNEL,
)
from pipeline_code.pipeline import layout
from stacks import naming
from stacks.asl import SAGEMAKER_SYNC, SDK, SNS_PUBLISH, States, initial_retries
from stacks.settings import InfraSettings

PROCESSING_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.processing"]
# The console's page of an execution, followed by its ARN (it names the region).
EXECUTION_LINK = "https://console.aws.amazon.com/states/home#/v2/executions/details/"
EVALUATION_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.evaluation"]
PANEL_FIT_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.panel_fit"]
SELECTION_ENTRYPOINT = ["python3", "-m", "pipeline_code.entrypoints.selection"]
# The tuning job's objective, read from each training job's log with its regex: one series' CV MASE, or
# a panel's mean CV MASE over series, as the local search minimises; one series' CV MSE is logged too.
OBJECTIVE_METRIC = OBJECTIVE
# The challenger's metrics a model package carries (evaluation.json): one series', a panel's.
# Their coverages: RECORDED_LEVELS, which evaluation scores whatever the run's gate.coverage_levels.
COVERAGES = tuple(coverage_key(level) for level in RECORDED_LEVELS)
SERIES_METRICS = ("mse", "mae", "mase", *COVERAGES)
PANEL_METRICS = ("mase", "wape", *COVERAGES, "interval_score")
METRIC_DEFINITIONS = [{"Name": name, "Regex": rf"{name}=([0-9.eE+-]+);"}
                      for name in (OBJECTIVE_METRIC, "cv_mse")]
RUN_FORECAST_KEY = layout.run_forecast_key("{}")
LATEST_FORECAST_KEY = layout.LATEST_FORECAST
RUN_FORECAST_SOURCE = layout.run_key("{}", layout.FORECAST + layout.FORECAST_FILE)
RUN_BACKTEST_KEY = f"{layout.FORECASTS}{{}}/{layout.BACKTEST_FILE}"
RUN_BACKTEST_SOURCE = layout.run_key("{}", layout.FORECAST + layout.BACKTEST_FILE)


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


def resource_tags(settings: InfraSettings, refs: Refs) -> list[dict[str, str]]:
    """Tags of every SageMaker resource a state machine creates (the clean-up and the deploy key on the first)."""
    return [
        {"Key": settings.tag_key, "Value": refs.stack_name},
        {"Key": "forecast-mlops:run-id", "Value.$": "$.runId"},
    ]


def notify_failure(st: States, refs: Refs, subject: str, message: str, end: str, error: str) -> None:
    """NotifyFailure -> `end`, a Fail state named `error`: the message names the execution and the error."""
    st.add("NotifyFailure", {
        "Type": "Task",
        "Resource": SNS_PUBLISH,
        "Parameters": {
            "TopicArn": refs.topic_arn,
            "Subject": subject,
            "Message.$": f"States.Format('{message} Error: {{}}', $$.Execution.Name, States.JsonToString($.error))",
        },
        "ResultPath": None,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": end}],
        "Next": end,
    })
    st.add(end, {"Type": "Fail", "Error": error, "Cause": "See the SNS notification and the execution history."})


def build_definition(settings: InfraSettings, refs: Refs) -> dict[str, Any]:
    s = settings
    b = refs.bucket

    def runs_uri(suffix: str) -> str:
        return f"States.Format('s3://{b}/{layout.run_key('{}', suffix)}', $.runId)"

    def task(resource: str, parameters: dict[str, Any], nxt: str | None, *, result_path: str | None = None,
             result_selector: dict[str, Any] | None = None, on_error: str | None = None) -> dict[str, Any]:
        """A task to be expanded by States.task (with its transient-error loop)."""
        return {"__task__": dict(resource=resource, parameters=parameters, nxt=nxt, result_path=result_path,
                                 result_selector=result_selector, on_error=on_error)}

    tags = resource_tags(s, refs)

    def processing_input(name: str, uri_expr: str, local: str, distribution: str = "FullyReplicated") -> dict[str, Any]:
        key = "S3Uri.$"
        return {
            "InputName": name,
            "S3Input": {
                key: uri_expr,
                "LocalPath": f"/opt/ml/processing/input/{local}",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": distribution,
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

    def processing_state(kind: str, entrypoint: list[str], inputs: Any, outputs: list[dict[str, Any]], nxt: str, *,
                         result_path: str, instances: int | str = 1,
                         environment: dict[str, str] | None = None) -> dict[str, Any]:
        """A state running a processing job in the training image (its settings from its "settings"
        input), then ``nxt``; the job's name goes to ``result_path``. `instances`: a count, or a path to
        it in the state (the sharded fit's `$.shards`)."""
        params: dict[str, Any] = {
            "ProcessingJobName.$": naming.format_expr(s, kind),
            "RoleArn": refs.sagemaker_role_arn,
            "AppSpecification": {
                "ImageUri": refs.training_image,
                "ContainerEntrypoint": entrypoint,
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    **({"InstanceCount.$": instances} if isinstance(instances, str) else {"InstanceCount": instances}),
                    "InstanceType": s.processing_instance_type,
                    "VolumeSizeInGB": s.volume_size_gb,
                }
            },
            "ProcessingOutputConfig": {"Outputs": outputs},
            "StoppingCondition": {"MaxRuntimeInSeconds": s.processing_max_runtime_seconds},
            "Environment": {"FORECAST_RUN_ID.$": "$.runId", **(environment or {})},
            "Tags": tags,
        }
        if isinstance(inputs, str):
            params["ProcessingInputs.$"] = inputs
        else:
            params["ProcessingInputs"] = inputs
        return task(SAGEMAKER_SYNC.format("createProcessingJob"), params, nxt,
                    result_selector={"name.$": "$.ProcessingJobName"}, result_path=result_path)

    def as_model(suffix: str, comment: str) -> dict[str, Any]:
        """A Pass pointing evaluation's model input (`$.model.modelData`) at the run's `suffix` folder."""
        return {
            "Type": "Pass",
            "Comment": comment,
            "Parameters": {"modelData.$": runs_uri(suffix)},
            "ResultPath": "$.model",
            "Next": "EnsureRegistry",
        }

    # Every job reads the run's document (docs/design.md, "The run document"): processing and
    # evaluation from their "settings" input, training from its "settings" channel.
    settings_input = processing_input(SETTINGS_CHANNEL, runs_uri(layout.RUN_DOCUMENT), SETTINGS_CHANNEL)
    # The jobs that read the trials read only this tuning job's (a retried one leaves older trials).
    tuning_job_env = {f"{TUNING_JOB_ENV}.$": "$.tuning.name"}
    model_env = {MAX_PERIODS_ENV: str(s.max_periods)}
    evaluation_report = layout.EVALUATION_REPORT + layout.EVALUATION_FILE
    eval_key = f"States.Format('{layout.run_key('{}', evaluation_report)}', $.runId)"
    report = "$.evaluationReport.json"

    def register(status: str) -> dict[str, Any]:
        # No Tags: a versioned package (one in a ModelPackageGroupName) refuses them; tag the group instead.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html (Tags)
        return task(
            SDK.format("sagemaker", "createModelPackage"),
            {
                "ModelPackageGroupName": refs.model_package_group,
                "ModelPackageDescription.$": f"States.Format('forecast-mlops run {{}}: {{}}', $.runId, {report}.gate.reason)",
                "ModelApprovalStatus": status,
                "InferenceSpecification": {
                    "Containers": [
                        # What evaluation chose to serve: the challenger, or on a first run a better baseline.
                        {"Image": refs.serving_image, "ModelDataUrl.$": runs_uri(layout.SERVED_MODEL + layout.MODEL_ARCHIVE),
                         "Environment": model_env}
                    ],
                    "SupportedContentTypes": ["application/json"],
                    "SupportedResponseMIMETypes": ["application/json"],
                },
                "ModelMetrics": {
                    "ModelQuality": {
                        "Statistics": {
                            "ContentType": "application/json",
                            "S3Uri.$": runs_uri(evaluation_report),
                        }
                    }
                },
                "CustomerMetadataProperties.$": "$.packageMetadata",
            },
            "ExportRunForecast",
            result_selector={"arn.$": "$.ModelPackageArn", "status": status},
            result_path="$.modelPackage",
        )

    def package_metadata(metrics: tuple[str, ...]) -> dict[str, Any]:
        """The package's CustomerMetadataProperties (strings): the run, the tuning job, the gate and
        the challenger's backtest metrics (a panel's report has no MSE: series' scales differ)."""
        return {
            "Type": "Pass",
            "Parameters": {
                "run_id.$": "$.runId",
                # the served model comes from all of its trials (Select or FitShards), not one of them
                "tuning_job.$": "$.tuning.name",
                "gate_passed.$": f"States.Format('{{}}', {report}.gate.passed)",
                # the deploy machine exports a panel's backtest beside its forecast when this is not "0"
                "series_shards.$": "States.Format('{}', $.shards)",
                **{f"{metric}.$": f"States.Format('{{}}', {report}.challenger.{metric})" for metric in metrics},
            },
            "ResultPath": "$.packageMetadata",
            "Next": "Gate",
        }

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
                "retries": initial_retries(s),
                # Rendered by the starter from the run document: the tuning job's ranges (one series: the
                # family; a panel: the history and the scale) and its Grid's size and parallelism.
                "parameterRanges.$": "$.parameterRanges",
                "grid.$": "$.grid",
                # Instances of the sharded fit: series.instances for a panel, 0 for one series.
                "shards.$": "$.shards",
            },
            "Next": "SnapshotInput",
        },
        "SnapshotInput": task(
            SDK.format("s3", "copyObject"),
            {
                "Bucket": b,
                "Key.$": f"States.Format('{layout.run_key('{}', layout.INPUT_DATA)}{{}}', $.runId, $.upload.fileName)",
                "CopySource.$": "$.upload.copySource",
            },
            "Preprocess",
        ),
        "Preprocess": processing_state(
            "preprocess_job",
            PROCESSING_ENTRYPOINT,
            [processing_input("raw", runs_uri(layout.INPUT_DATA), "raw"), settings_input],
            [
                processing_output("train", layout.TRAIN, "train"),
                processing_output("test", layout.TEST, "test"),
                processing_output("report", layout.PROCESSING_REPORT, "report"),
            ],
            "Tune",
            result_path="$.preprocess",
        ),
        "Tune": task(
            SAGEMAKER_SYNC.format("createHyperParameterTuningJob"),
            {
                "HyperParameterTuningJobName.$": naming.format_expr(s, "tuning_job"),
                "HyperParameterTuningJobConfig": {
                    # Every combination of the categorical ranges, one training job each (each scores a whole
                    # family, or a panel's every choice at one history and scale): the whole space. A Grid
                    # takes categorical ranges only; its job count is the number of combinations.
                    # https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-how-it-works.html
                    "Strategy": "Grid",
                    "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": OBJECTIVE_METRIC},
                    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceLimits.html
                    "ResourceLimits": {
                        "MaxNumberOfTrainingJobs.$": "$.grid.maxJobs",
                        "MaxParallelTrainingJobs.$": "$.grid.maxParallelJobs",
                    },
                    "ParameterRanges.$": "$.parameterRanges",
                    "TrainingJobEarlyStoppingType": "Off",
                },
                "TrainingJobDefinition": {
                    "AlgorithmSpecification": {
                        "TrainingImage": refs.training_image,
                        "TrainingInputMode": "File",
                        "MetricDefinitions": METRIC_DEFINITIONS,
                    },
                    "RoleArn": refs.sagemaker_role_arn,
                    "InputDataConfig": [
                        {
                            "ChannelName": channel,
                            "ContentType": content_type,
                            "InputMode": "File",
                            "DataSource": {
                                "S3DataSource": {
                                    "S3DataType": "S3Prefix",
                                    "S3Uri.$": runs_uri(suffix),
                                    "S3DataDistributionType": "FullyReplicated",
                                }
                            },
                        }
                        # a trial scores on train only (the Select job and the sharded fit read test)
                        for channel, suffix, content_type in (
                            ("train", layout.TRAIN, "text/csv"),
                            (SETTINGS_CHANNEL, layout.RUN_DOCUMENT, "application/json"),
                        )
                    ],
                    "OutputDataConfig": {"S3OutputPath.$": runs_uri(layout.MODELS)},
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
                    "CheckpointConfig": {"S3Uri.$": runs_uri(layout.CHECKPOINTS), "LocalPath": "/opt/ml/checkpoints"},
                },
                "Tags": tags,
            },
            "Panel?",
            result_selector={"name.$": "$.HyperParameterTuningJobName"},
            result_path="$.tuning",
        ),
        "Panel?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.shards", "NumericGreaterThan": 0, "Next": "FitShards"}],
            "Default": "Select",
        },
        # One series: the model to evaluate is what search.serve picks from the trials, as the local
        # tune picks it (by default equal weights of the best members, fitted here), not the best
        # single trial. It reads each trial's <job>/output/model.tar.gz under the run's models/ prefix.
        # https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html
        "Select": processing_state(
            "selection_job",
            SELECTION_ENTRYPOINT,
            [processing_input(TRIALS_INPUT, runs_uri(layout.MODELS), TRIALS_INPUT),
             processing_input("train", runs_uri(layout.TRAIN), "train"),
             processing_input("test", runs_uri(layout.TEST), "test"), settings_input],
            [processing_output(SELECTED_MODEL_OUTPUT, layout.SELECTED_MODEL, SELECTED_MODEL_OUTPUT),
             processing_output(SELECTION_OUTPUT, layout.SELECTION_REPORT, SELECTION_OUTPUT)],
            "SelectedAsModel",
            result_path="$.selection",
            environment=tuning_job_env,
        ),
        "SelectedAsModel": as_model(layout.SELECTED_MODEL, "Evaluation's model input is the selected model's folder."),
        # Every instance gets the settings and the whole test part (small: the last horizon of each
        # series), and about 1/n of the train objects (processing writes one file per shard):
        # "ShardedByS3Key ... downloading one shard of data to each processing instance". It also gets
        # every train object again, FullyReplicated ("distribute the data from Amazon S3 to all
        # processing instances"; the same S3Uri at another LocalPath), to sum a pooled family's
        # statistics over the whole panel, so all instances fit one global model.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingS3Input.html
        # Each instance uploads its own output folder to the same S3Uri, so it writes under its host
        # name (/opt/ml/config/resourceconfig.json "current_host"), never a name another one uses.
        # https://docs.aws.amazon.com/sagemaker/latest/dg/build-your-own-processing-container.html
        # https://docs.aws.amazon.com/sagemaker/latest/dg/byoc-input-and-output.html
        "FitShards": processing_state(
            "panel_fit_job",
            PANEL_FIT_ENTRYPOINT,
            [processing_input("train", runs_uri(layout.TRAIN), "train", "ShardedByS3Key"),
             processing_input(WHOLE_TRAIN_CHANNEL, runs_uri(layout.TRAIN), WHOLE_TRAIN_CHANNEL),
             processing_input("test", runs_uri(layout.TEST), "test"), settings_input,
             # the tuning job's trials (each <job>/output/model.tar.gz): every instance takes their best
             # global choice as the local search does (pipeline/panel_tuning.py)
             processing_input(TRIALS_INPUT, runs_uri(layout.MODELS), TRIALS_INPUT)],
            [processing_output("shards", layout.SHARD_MODELS, "shards")],
            "ShardsAsModel",
            result_path="$.fit",
            instances="$.shards",
            environment=tuning_job_env,
        ),
        "ShardsAsModel": as_model(layout.SHARD_MODELS,
                                  "Evaluation's model input is the shards' folder; it merges them into one panel."),
        # The first run finds no group (any non-transient error): create it.
        "EnsureRegistry": task(
            SDK.format("sagemaker", "describeModelPackageGroup"),
            {"ModelPackageGroupName": refs.model_package_group},
            "FindChampion",
            on_error="CreateRegistry",
        ),
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
                    processing_input("train", runs_uri(layout.TRAIN), "train"),
                    processing_input("test", runs_uri(layout.TEST), "test"),
                    settings_input,
                    processing_input("model", "$.model.modelData", "model"),
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
                    processing_input("train", runs_uri(layout.TRAIN), "train"),
                    processing_input("test", runs_uri(layout.TEST), "test"),
                    settings_input,
                    processing_input("model", "$.model.modelData", "model"),
                ]
            },
            "ResultPath": "$.evaluation",
            "Next": "Evaluate",
        },
        "Evaluate": processing_state(
            "evaluation_job",
            EVALUATION_ENTRYPOINT,
            "$.evaluation.inputs",
            [
                processing_output("evaluation", layout.EVALUATION_REPORT, "evaluation"),
                processing_output("forecast", layout.FORECAST, "forecast"),
                processing_output("served", layout.SERVED_MODEL, "served"),
            ],
            "ReadEvaluation",
            result_path="$.evaluation",
        ),
        "ReadEvaluation": task(
            SDK.format("s3", "getObject"),
            {"Bucket": b, "Key.$": eval_key},
            "Metadata?",
            result_selector={"json.$": "States.StringToJson($.Body)"},
            result_path="$.evaluationReport",
        ),
        "Metadata?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.shards", "NumericGreaterThan": 0, "Next": "PanelMetadata"}],
            "Default": "SeriesMetadata",
        },
        "SeriesMetadata": package_metadata(SERIES_METRICS),
        "PanelMetadata": package_metadata(PANEL_METRICS),
        "Gate": {
            "Type": "Choice",
            "Comment": f"approval mode: {s.approval_mode}",
            "Choices": gate_choices,
            "Default": "RegisterPending",
        },
        "RegisterApproved": register("Approved"),
        "RegisterPending": register("PendingManualApproval"),
        "ExportRunForecast": task(
            SDK.format("s3", "copyObject"),
            {
                "Bucket": b,
                "Key.$": f"States.Format('{RUN_FORECAST_KEY}', $.runId)",
                "CopySource.$": f"States.Format('{b}/{RUN_FORECAST_SOURCE}', $.runId)",
                "ContentType": "text/csv",
                "MetadataDirective": "REPLACE",
            },
            "PanelBacktest?",
        ),
        "PanelBacktest?": {
            "Type": "Choice",
            "Comment": "A panel's per-item backtest goes beside its forecast.",
            "Choices": [{"Variable": "$.shards", "NumericGreaterThan": 0, "Next": "ExportRunBacktest"}],
            "Default": "Promoted?",
        },
        "ExportRunBacktest": task(
            SDK.format("s3", "copyObject"),
            {
                "Bucket": b,
                "Key.$": f"States.Format('{RUN_BACKTEST_KEY}', $.runId)",
                "CopySource.$": f"States.Format('{b}/{RUN_BACKTEST_SOURCE}', $.runId)",
                "ContentType": "text/csv",
                "MetadataDirective": "REPLACE",
            },
            "Promoted?",
        ),
        "Promoted?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.modelPackage.status", "StringEquals": "Approved", "Next": "NotifyApproved"}],
            "Default": "NotifyNotPromoted",
        },
        "NotifyApproved": task(
            SNS_PUBLISH,
            {
                "TopicArn": refs.topic_arn,
                "Subject": "forecast-mlops: new model approved",
                "Message.$": (
                    f"States.Format('Run {{}} on {{}}: promoted. Gate: {{}}. Backtest MASE {{}}, 95% interval "
                    f"coverage {{}}. Registered model package {{}} as Approved; the deploy state machine now "
                    f"deploys it to endpoint {s.endpoint_name}. Execution: {EXECUTION_LINK}{{}}', "
                    f"$.runId, $.upload.key, {report}.gate.reason, {report}.challenger.mase, "
                    f"{report}.challenger.coverage_95, $.modelPackage.arn, $$.Execution.Id)"
                ),
            },
            "Approved",
        ),
        "Approved": {"Type": "Succeed"},
        "NotifyNotPromoted": task(
            SNS_PUBLISH,
            {
                "TopicArn": refs.topic_arn,
                "Subject": "forecast-mlops: candidate not promoted",
                "Message.$": (
                    "States.Format('Run {} on {}: not promoted (gate passed: {}). Gate: {}. Backtest MASE {}, "
                    "95% interval coverage {}. Registered model package {} as PendingManualApproval; the "
                    "endpoint was not changed; approving the package in the registry deploys it. "
                    f"Execution: {EXECUTION_LINK}{{}}', $.runId, $.upload.key, "
                    f"{report}.gate.passed, {report}.gate.reason, {report}.challenger.mase, "
                    f"{report}.challenger.coverage_95, $.modelPackage.arn, $$.Execution.Id)"
                ),
            },
            "NotPromoted",
        ),
        "NotPromoted": {"Type": "Succeed"},
    }
    st = States(s, failure="NotifyFailure")
    for name, state in states.items():
        if "__task__" in state:
            st.task(name, **state["__task__"])
        else:
            st.add(name, state)
    notify_failure(
        st, refs, "forecast-mlops: run failed",
        "Run {} failed. The endpoint was not changed (only an approved package deploys).", "RunFailed",
        "PipelineFailed",
    )
    return {
        "Comment": "forecast-mlops training pipeline: preprocess, tune, evaluate, gate, register, export, notify",
        "StartAt": "Init",
        "TimeoutSeconds": 24 * 3600,
        "States": st.states,
    }
