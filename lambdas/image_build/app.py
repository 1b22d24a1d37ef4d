"""Custom resource (CDK Provider framework) that builds the training and serving images in CodeBuild.

`on_event` starts a build of the project named in the resource properties with the requested image
tag; `is_complete` polls it. Deleting the resource deletes nothing: the ECR repositories are emptied
and deleted by CloudFormation (EmptyOnDelete).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3

LOG = logging.getLogger()
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

_FAILED = {"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}


def _codebuild():
    return boto3.client("codebuild")


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    props = event["ResourceProperties"]
    tag = props["ImageTag"]
    physical_id = event.get("PhysicalResourceId") or f"images-{tag}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    build = _codebuild().start_build(
        projectName=props["ProjectName"],
        environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": tag, "type": "PLAINTEXT"}],
    )["build"]
    LOG.info("started image build %s for tag %s", build["id"], tag)
    return {"PhysicalResourceId": f"images-{tag}", "Data": {"BuildId": build["id"], "ImageTag": tag}}


def is_complete(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    builds = _codebuild().batch_get_builds(ids=[build_id]).get("builds", [])
    if not builds:
        raise RuntimeError(f"image build {build_id} not found")
    status = builds[0].get("buildStatus", "IN_PROGRESS")
    if status == "SUCCEEDED":
        return {"IsComplete": True, "Data": {"ImageTag": event["Data"]["ImageTag"]}}
    if status in _FAILED:
        logs = builds[0].get("logs", {}).get("deepLink", "the CodeBuild console")
        raise RuntimeError(f"image build {build_id} ended {status}; see {logs}")
    return {"IsComplete": False}
