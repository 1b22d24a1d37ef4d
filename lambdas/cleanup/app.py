"""Custom resource: on stack deletion, delete what the pipeline created outside CloudFormation.

CloudFormation does not know the endpoint, endpoint configs and models a training run creates, and a
serverless endpoint left behind keeps its configuration (and any provisioned settings) around. On
`Delete` this function first stops running executions of both state machines (training and deploy, so
none creates anything after the clean-up), then deletes every SageMaker endpoint, endpoint config and
model whose name is ours (the stable endpoint name or the resource prefix) *and* that carries our tag
``forecast-mlops:stack=<stack name>``: a resource with our name prefix but without the tag, or with
another stack's, is left alone (another stack may share the prefix in the account).
Create and Update do nothing. The model registry (no running cost) is kept as the run history.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any, Callable, Iterator

import boto3

LOG = logging.getLogger()
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


def _sagemaker():
    return boto3.client("sagemaker")


def _sfn():
    return boto3.client("stepfunctions")


def _pages(call: Callable[..., dict[str, Any]], key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = call(**kwargs)
        yield from page.get(key, [])
        token = page.get("NextToken") or page.get("nextToken")
        if not token:
            return
        kwargs["NextToken" if "NextToken" in page else "nextToken"] = token


def _tagged(arn: str, tag_key: str, stack_name: str) -> bool:
    tags = _sagemaker().list_tags(ResourceArn=arn).get("Tags", [])
    return any(t.get("Key") == tag_key and t.get("Value") == stack_name for t in tags)


def stop_running_executions(state_machine_arn: str) -> list[str]:
    stopped = []
    for execution in _pages(_sfn().list_executions, "executions", stateMachineArn=state_machine_arn,
                            statusFilter="RUNNING"):
        _sfn().stop_execution(executionArn=execution["executionArn"], cause="stack deletion")
        stopped.append(execution["name"])
    return stopped


def cleanup(*, stack_name: str, tag_key: str, prefix: str, endpoint_name: str,
            state_machine_arns: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Delete our tagged endpoints, then endpoint configs, then models; return what was deleted."""
    sm = _sagemaker()
    done: dict[str, list[str]] = {"executions": [], "endpoints": [], "endpoint_configs": [], "models": []}
    for arn in state_machine_arns:
        done["executions"] += stop_running_executions(arn)

    # The deploy machine creates one endpoint, named endpoint_name, and configs and models named
    # "<prefix>-...": only those are listed (NameContains, 100 a page) and their tags read. Another
    # deployment's endpoint that shares the prefix is not ours, and this role may not read its tags.
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ListEndpoints.html
    named = f"{prefix}-"
    for ep in _pages(sm.list_endpoints, "Endpoints", NameContains=endpoint_name, MaxResults=100):
        if ep["EndpointName"] == endpoint_name and _tagged(ep["EndpointArn"], tag_key, stack_name):
            sm.delete_endpoint(EndpointName=ep["EndpointName"])
            done["endpoints"].append(ep["EndpointName"])
    for cfg in _pages(sm.list_endpoint_configs, "EndpointConfigs", NameContains=named, MaxResults=100):
        if cfg["EndpointConfigName"].startswith(named) and _tagged(cfg["EndpointConfigArn"], tag_key, stack_name):
            sm.delete_endpoint_config(EndpointConfigName=cfg["EndpointConfigName"])
            done["endpoint_configs"].append(cfg["EndpointConfigName"])
    for model in _pages(sm.list_models, "Models", NameContains=named, MaxResults=100):
        if model["ModelName"].startswith(named) and _tagged(model["ModelArn"], tag_key, stack_name):
            sm.delete_model(ModelName=model["ModelName"])
            done["models"].append(model["ModelName"])
    LOG.info("clean-up: %s", json.dumps(done))
    return done


def send(event: dict[str, Any], context: Any, status: str, reason: str = "", data: dict | None = None) -> None:
    """The CloudFormation custom resource response (PUT to the pre-signed ResponseURL)."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": (reason or f"see log stream {getattr(context, 'log_stream_name', '?')}")[:1000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or "forecast-mlops-cleanup",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": data or {},
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - CloudFormation's URL
        LOG.info("custom resource response: %s", response.status)


def handler(event: dict[str, Any], context: Any = None) -> None:
    LOG.info("request %s", event.get("RequestType"))
    try:
        if event["RequestType"] == "Delete":
            done = cleanup(
                stack_name=os.environ["STACK_NAME"],
                tag_key=os.environ["TAG_KEY"],
                prefix=os.environ["RESOURCE_PREFIX"],
                endpoint_name=os.environ["ENDPOINT_NAME"],
                state_machine_arns=tuple(filter(None, (os.environ.get("STATE_MACHINE_ARN"),
                                                       os.environ.get("DEPLOY_STATE_MACHINE_ARN")))),
            )
            send(event, context, "SUCCESS", data={k: str(len(v)) for k, v in done.items()})
        else:
            send(event, context, "SUCCESS")
    except Exception as err:  # noqa: BLE001 - CloudFormation must always get an answer
        LOG.exception("clean-up failed")
        send(event, context, "FAILED", reason=f"clean-up failed: {err}")
