"""The deploy state machine's ASL: deploy one Approved model package to the serverless endpoint.

It is the one deploy path. An EventBridge rule starts it on the registry's "SageMaker Model Package
State Change" event for our group with `ModelApprovalStatus: Approved`: the training pipeline's own
registration in automatic mode, and a person approving a pending package. A rejected package emits
an event the rule does not match, so nothing deploys.
https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html#eventbridge-model-package

SageMaker may send an event more than once, and may send it late, so the machine is idempotent: it
re-reads the package (still Approved?), names the model and config after the package (creating one
that exists already goes on), and ends without change when the endpoint already serves that config.

Flow: Init -> DescribePackage -> StillApproved? -> CreateModel -> CreateEndpointConfig -> FindEndpoint
   missing -> CreateEndpoint; InService -> UpdateEndpoint (or AlreadyServing when it serves this config);
   Failed -> DeleteEndpoint, wait until it is gone, CreateEndpoint (UpdateEndpoint is refused on a Failed
   endpoint: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html);
   Creating/Updating/SystemUpdating/RollingBack/Deleting -> wait and look again (bounded);
   a create, update or delete refused because another deploy of the package got there first -> the same;
   OutOfService/UpdateRollbackFailed -> fail.
-> poll until InService on the new config; every other status ends the wait with a named error, and the
   wait is bounded by `endpoint_max_polls` (endpoint statuses:
   https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html#API_DescribeEndpoint_ResponseSyntax)
-> delete superseded endpoint configs tagged as this stack's -> export forecasts/latest/ (a panel's backtest too) -> notify.
Any other error -> NotifyFailure -> Fail.
"""

from __future__ import annotations

from typing import Any

from pipeline_code.engine.settings import MODEL_VERSION_ENV
from stacks import naming
from pipeline_code.pipeline.layout import LATEST_BACKTEST as LATEST_BACKTEST_KEY
from stacks.asl import SDK, SNS_PUBLISH, States, initial_retries
from stacks.pipeline_definition import (
    LATEST_FORECAST_KEY,
    RUN_BACKTEST_SOURCE,
    RUN_FORECAST_SOURCE,
    Refs,
    notify_failure,
    resource_tags,
)
from stacks.settings import InfraSettings

APPROVED_EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"
# The endpoint will change by itself: wait and look again.
ENDPOINT_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack")
# How DescribeEndpoint says "no such endpoint" (SageMaker answers ValidationException
# "Could not find endpoint ..."); matched on the cause so every naming of the error works.
ENDPOINT_MISSING_CAUSE = "*Could not find endpoint*"
ALREADY_EXISTS_CAUSE = "*already exist*"
# How SageMaker refuses to change an endpoint that another call is changing (ValidationException).
ENDPOINT_IN_PROGRESS_CAUSE = "*in-progress endpoint*"


def approval_event_pattern(group_name: str) -> dict[str, Any]:
    """The EventBridge pattern of an Approved package of our group."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [APPROVED_EVENT_DETAIL_TYPE],
        # SageMaker sends an event at each status change of a package (Pending, InProgress, Completed):
        # a package created Approved deploys once, when it is Completed.
        "detail": {"ModelPackageGroupName": [group_name], "ModelApprovalStatus": ["Approved"],
                   "ModelPackageStatus": ["Completed"]},
    }


def build_deploy_definition(settings: InfraSettings, refs: Refs) -> dict[str, Any]:
    s = settings
    b = refs.bucket
    st = States(s, failure="NotifyFailure")
    endpoint = s.endpoint_name
    status = "$.endpoint.status"

    def status_in(names: tuple[str, ...]) -> dict[str, Any]:
        return {"Or": [{"Variable": status, "StringEquals": n} for n in names]}

    def poll_again(name: str, nxt: str, exhausted: str) -> None:
        """Count one poll, then `nxt`; past `endpoint_max_polls`, `exhausted` instead."""
        st.add(name, {
            "Type": "Choice",
            "Choices": [{"Variable": "$.polls.count", "NumericLessThan": s.endpoint_max_polls, "Next": f"{name}.Count"}],
            "Default": exhausted,
        })
        st.add(f"{name}.Count", {
            "Type": "Pass",
            "Parameters": {"count.$": "States.MathAdd($.polls.count, 1)"},
            "ResultPath": "$.polls",
            "Next": nxt,
        })

    def describe_endpoint(name: str, nxt: str, on_error: str | None = None) -> None:
        st.task(name, SDK.format("sagemaker", "describeEndpoint"), {"EndpointName": endpoint}, nxt,
                result_selector={"status.$": "$.EndpointStatus", "configName.$": "$.EndpointConfigName"},
                result_path="$.endpoint", on_error=on_error)

    def exists_choice(name: str, cause: str, found: str, *more: tuple[str, str]) -> None:
        """After a failed call: `found` when the cause matches (or the next state of the first of `more`'s
        (cause, next) pairs that matches), else the failure notification."""
        st.add(name, {
            "Type": "Choice",
            "Choices": [{"Variable": "$.error.Cause", "StringMatches": c, "Next": n} for c, n in ((cause, found), *more)],
            "Default": "NotifyFailure",
        })

    st.add("Init", {
        "Type": "Pass",
        "Comment": "Input: the registry's state-change event (EventBridge).",
        "Parameters": {
            "packageArn.$": "$.detail.ModelPackageArn",
            "retries": initial_retries(s),
            "polls": {"count": 0},
        },
        "Next": "DescribePackage",
    })
    st.task(
        "DescribePackage", SDK.format("sagemaker", "describeModelPackage"), {"ModelPackageName.$": "$.packageArn"},
        "StillApproved?",
        result_selector={
            "arn.$": "$.ModelPackageArn",
            "approval.$": "$.ModelApprovalStatus",
            "version.$": "$.ModelPackageVersion",
            "runId.$": "$.CustomerMetadataProperties.run_id",
            "metadata.$": "$.CustomerMetadataProperties",
            "container.$": "States.ArrayGetItem($.InferenceSpecification.Containers, 0)",
        },
        result_path="$.package",
    )
    st.add("StillApproved?", {
        "Type": "Choice",
        "Comment": "A late or repeated event: deploy only what is Approved now.",
        "Choices": [{"Variable": "$.package.approval", "StringEquals": "Approved", "Next": "Names"}],
        "Default": "NotApproved",
    })
    st.add("NotApproved", {"Type": "Succeed"})
    st.add("Names", {
        "Type": "Pass",
        "Parameters": {
            "runId.$": "$.package.runId",
            "model.$": naming.deploy_format_expr(s, "model"),
            "config.$": naming.deploy_format_expr(s, "endpoint_config"),
            # The package's version, for the container to report (Environment values are strings).
            "environment": {f"{MODEL_VERSION_ENV}.$": "States.Format('{}', $.package.version)"},
        },
        "ResultPath": "$.names",
        "Next": "CreateModel",
    })
    tags = [{"Key": t["Key"], **({"Value.$": "$.names.runId"} if "Value.$" in t else {"Value": t["Value"]})}
            for t in resource_tags(s, refs)]
    st.task(
        "CreateModel", SDK.format("sagemaker", "createModel"),
        {
            "ModelName.$": "$.names.model",
            "ExecutionRoleArn": refs.sagemaker_role_arn,
            "PrimaryContainer": {
                "Image.$": "$.package.container.Image",
                "ModelDataUrl.$": "$.package.container.ModelDataUrl",
                # The package's environment plus the version (intrinsics: States.JsonMerge, shallow)
                # https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html#asl-intrsc-func-json-manipulate
                "Environment.$": "States.JsonMerge($.package.container.Environment, $.names.environment, false)",
            },
            "Tags": tags,
        },
        "CreateEndpointConfig", on_error="ModelExists?",
    )
    exists_choice("ModelExists?", ALREADY_EXISTS_CAUSE, "CreateEndpointConfig")
    st.task(
        "CreateEndpointConfig", SDK.format("sagemaker", "createEndpointConfig"),
        {
            "EndpointConfigName.$": "$.names.config",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName.$": "$.names.model",
                    "ServerlessConfig": {
                        "MemorySizeInMB": s.serverless_memory_mb,
                        "MaxConcurrency": s.serverless_max_concurrency,
                    },
                }
            ],
            "Tags": tags,
        },
        "FindEndpoint", on_error="ConfigExists?",
    )
    exists_choice("ConfigExists?", ALREADY_EXISTS_CAUSE, "FindEndpoint")

    # ---- the endpoint as found ----------------------------------------------------------------------
    describe_endpoint("FindEndpoint", "EndpointFound", on_error="EndpointExists?")
    exists_choice("EndpointExists?", ENDPOINT_MISSING_CAUSE, "CreateEndpoint")
    st.add("EndpointFound", {
        "Type": "Choice",
        "Choices": [
            {"And": [{"Variable": status, "StringEquals": "InService"},
                     {"Variable": "$.endpoint.configName", "StringEqualsPath": "$.names.config"}],
             "Next": "AlreadyServing"},
            {"Variable": status, "StringEquals": "InService", "Next": "UpdateEndpoint"},
            {"Variable": status, "StringEquals": "Failed", "Next": "DeleteFailedEndpoint"},
            {**status_in(ENDPOINT_BUSY + ("Deleting",)), "Next": "EndpointBusy"},
        ],
        "Default": "EndpointUnusable",
    })
    st.add("AlreadyServing", {"Type": "Succeed", "Comment": "The endpoint already serves this package."})
    poll_again("EndpointBusy", "WaitWhileBusy", "EndpointTimedOut")
    st.add("WaitWhileBusy", {"Type": "Wait", "Seconds": s.endpoint_poll_seconds, "Next": "FindEndpoint"})
    st.failed("EndpointUnusable", "EndpointUnusable",
              "States.Format('endpoint {} is {}: it cannot be updated; repair or delete it, then approve again', "
              f"'{endpoint}', $.endpoint.status)", "NotifyFailure")

    # ---- a Failed endpoint is deleted and created again ---------------------------------------------
    st.task("DeleteFailedEndpoint", SDK.format("sagemaker", "deleteEndpoint"), {"EndpointName": endpoint},
            "WaitForDeletion", on_error="DeletedMeanwhile?")
    # Another deploy of the same package deleted it first (see CreateEndpoint below).
    exists_choice("DeletedMeanwhile?", ENDPOINT_IN_PROGRESS_CAUSE, "WaitForDeletion",
                  (ENDPOINT_MISSING_CAUSE, "CreateEndpoint"))
    st.add("WaitForDeletion", {"Type": "Wait", "Seconds": s.endpoint_poll_seconds, "Next": "CheckDeleted"})
    describe_endpoint("CheckDeleted", "StillDeleting", on_error="EndpointGone?")
    exists_choice("EndpointGone?", ENDPOINT_MISSING_CAUSE, "CreateEndpoint")
    st.add("StillDeleting", {
        "Type": "Choice",
        "Choices": [{"Variable": status, "StringEquals": "Deleting", "Next": "DeletionPoll"}],
        "Default": "EndpointUnusable",
    })
    poll_again("DeletionPoll", "WaitForDeletion", "EndpointTimedOut")

    # ---- create or update, then wait for InService on the new config --------------------------------
    # SageMaker may send one state change more than once, so two deploys of one package can run at
    # once (https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html).
    # The one that loses the race to create or update the endpoint is refused ("Cannot create already
    # existing endpoint", "Cannot update in-progress endpoint"): it waits and looks again, and then
    # finds the endpoint serving its config (AlreadyServing) or free to update.
    st.task("CreateEndpoint", SDK.format("sagemaker", "createEndpoint"),
            {"EndpointName": endpoint, "EndpointConfigName.$": "$.names.config", "Tags": tags[:1]},
            "WaitForEndpoint", on_error="CreatedMeanwhile?")
    exists_choice("CreatedMeanwhile?", ALREADY_EXISTS_CAUSE, "EndpointBusy")
    st.task("UpdateEndpoint", SDK.format("sagemaker", "updateEndpoint"),
            {"EndpointName": endpoint, "EndpointConfigName.$": "$.names.config"}, "WaitForEndpoint",
            on_error="UpdatedMeanwhile?")
    exists_choice("UpdatedMeanwhile?", ENDPOINT_IN_PROGRESS_CAUSE, "EndpointBusy")
    st.add("WaitForEndpoint", {"Type": "Wait", "Seconds": s.endpoint_poll_seconds, "Next": "CheckEndpoint"})
    describe_endpoint("CheckEndpoint", "EndpointReady?")
    st.add("EndpointReady?", {
        "Type": "Choice",
        "Choices": [
            {"And": [{"Variable": status, "StringEquals": "InService"},
                     {"Variable": "$.endpoint.configName", "StringEqualsPath": "$.names.config"}],
             "Next": "ListEndpointConfigs"},
            {"Variable": status, "StringEquals": "InService", "Next": "EndpointRolledBack"},
            {**status_in(ENDPOINT_BUSY), "Next": "EndpointPoll"},
        ],
        "Default": "EndpointNotReady",
    })
    poll_again("EndpointPoll", "WaitForEndpoint", "EndpointTimedOut")
    st.failed("EndpointRolledBack", "EndpointUpdateRolledBack",
              "States.Format('endpoint {} kept config {}: the update to {} failed and SageMaker rolled back', "
              f"'{endpoint}', $.endpoint.configName, $.names.config)", "NotifyFailure")
    st.failed("EndpointNotReady", "EndpointNotReady",
              "States.Format('endpoint {} became {} while deploying config {}; see FailureReason in "
              f"DescribeEndpoint', '{endpoint}', $.endpoint.status, $.names.config)", "NotifyFailure")
    st.failed("EndpointTimedOut", "EndpointTimedOut",
              f"States.Format('endpoint {{}} was still {{}} after {s.endpoint_max_polls} polls "
              f"{s.endpoint_poll_seconds} s apart', '{endpoint}', $.endpoint.status)", "NotifyFailure")

    # ---- clean up superseded configs (ours only: name prefix and stack tag) -------------------------
    st.task(
        "ListEndpointConfigs", SDK.format("sagemaker", "listEndpointConfigs"),
        {"NameContains": f"{s.resource_prefix}-", "MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Ascending"},
        "DeleteSupersededConfigs",
        result_selector={"configs.$": "$.EndpointConfigs"},
        result_path="$.oldConfigs",
    )
    st.add("DeleteSupersededConfigs", {
        "Type": "Map",
        "Comment": "Only now that the endpoint serves the new config: delete our configs it no longer uses.",
        "ItemsPath": "$.oldConfigs.configs",
        "ItemSelector": {
            "name.$": "$$.Map.Item.Value.EndpointConfigName",
            "arn.$": "$$.Map.Item.Value.EndpointConfigArn",
            "current.$": "$.names.config",
        },
        "MaxConcurrency": 1,
        "ItemProcessor": superseded_config_processor(s, refs),
        "ResultPath": None,
        "Next": "ExportLatestForecast",
    })
    st.task(
        "ExportLatestForecast", SDK.format("s3", "copyObject"),
        {
            "Bucket": b,
            "Key": LATEST_FORECAST_KEY,
            "CopySource.$": f"States.Format('{b}/{RUN_FORECAST_SOURCE}', $.names.runId)",
            "ContentType": "text/csv",
            "MetadataDirective": "REPLACE",
        },
        "PanelBacktest?",
    )
    st.add("PanelBacktest?", {
        "Type": "Choice",
        "Comment": "A panel's per-item backtest goes beside its forecast (packages registered before panels lack the key).",
        "Choices": [{"And": [
            {"Variable": "$.package.metadata.series_shards", "IsPresent": True},
            {"Not": {"Variable": "$.package.metadata.series_shards", "StringEquals": "0"}},
        ], "Next": "ExportLatestBacktest"}],
        "Default": "NotifyDeployed",
    })
    st.task(
        "ExportLatestBacktest", SDK.format("s3", "copyObject"),
        {
            "Bucket": b,
            "Key": LATEST_BACKTEST_KEY,
            "CopySource.$": f"States.Format('{b}/{RUN_BACKTEST_SOURCE}', $.names.runId)",
            "ContentType": "text/csv",
            "MetadataDirective": "REPLACE",
        },
        "NotifyDeployed",
    )
    st.task(
        "NotifyDeployed", SNS_PUBLISH,
        {
            "TopicArn": refs.topic_arn,
            "Subject": "forecast-mlops: new model deployed",
            "Message.$": (
                f"States.Format('Model package {{}} (run {{}}) is deployed to endpoint {endpoint} as config {{}}. "
                f"Forecast: s3://{b}/{LATEST_FORECAST_KEY}', $.package.arn, $.names.runId, $.names.config)"
            ),
        },
        "Deployed",
    )
    st.add("Deployed", {"Type": "Succeed"})
    notify_failure(
        st, refs, "forecast-mlops: deployment failed",
        "Deployment {} failed; the endpoint keeps serving what it served before unless the error says otherwise.",
        "DeployFailed", "DeployFailed",
    )
    return {
        "Comment": "forecast-mlops deploy: an Approved model package -> the serverless endpoint",
        "StartAt": "Init",
        "TimeoutSeconds": 6 * 3600,
        "States": st.states,
    }


def superseded_config_processor(settings: InfraSettings, refs: Refs) -> dict[str, Any]:
    """Per listed config: skip the current one and any config without this stack's tag; delete the rest."""
    keep = {"Type": "Succeed"}
    return {
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "Superseded?",
        "States": {
            "Superseded?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.name", "StringEqualsPath": "$.current", "Next": "KeepCurrent"}],
                "Default": "ReadTags",
            },
            "KeepCurrent": keep,
            "ReadTags": {
                "Type": "Task",
                "Resource": SDK.format("sagemaker", "listTags"),
                "Parameters": {"ResourceArn.$": "$.arn"},
                "ResultSelector": {"stack.$": f"$.Tags[?(@.Key == '{settings.tag_key}')].Value"},
                "ResultPath": "$.tags",
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotDeleted"}],
                "Next": "Tagged?",
            },
            "Tagged?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.tags.stack[0]", "IsPresent": True, "Next": "Ours?"}],
                "Default": "NotOurs",
            },
            "Ours?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.tags.stack[0]", "StringEquals": refs.stack_name, "Next": "DeleteEndpointConfig"}],
                "Default": "NotOurs",
            },
            "NotOurs": {**keep, "Comment": "Same name prefix, but not tagged as this stack's: left alone."},
            "DeleteEndpointConfig": {
                "Type": "Task",
                "Resource": SDK.format("sagemaker", "deleteEndpointConfig"),
                "Parameters": {"EndpointConfigName.$": "$.name"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotDeleted"}],
                "End": True,
            },
            "NotDeleted": {**keep, "Comment": "Already gone or not deletable now: the clean-up removes leftovers."},
        },
    }
