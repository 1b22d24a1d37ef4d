"""Unit tests of the image-build custom resource (botocore Stubber: no AWS, no Docker)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tests.infra.lambdas import load

image_build = load("image_build")
PROPS = {"ProjectName": "build", "ImageTag": "abc123"}


@pytest.fixture
def codebuild(monkeypatch):
    client = boto3.client("codebuild", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(image_build, "_codebuild", lambda: client)
    with Stubber(client) as stub:
        yield stub


def test_create_starts_a_build_with_the_tag(codebuild):
    codebuild.add_response("start_build", {"build": {"id": "build:1"}}, {
        "projectName": "build",
        "environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": "abc123", "type": "PLAINTEXT"}]})
    out = image_build.on_event({"RequestType": "Create", "ResourceProperties": PROPS})
    assert out == {"PhysicalResourceId": "images-abc123", "Data": {"BuildId": "build:1", "ImageTag": "abc123"}}


def test_delete_does_nothing(codebuild):
    out = image_build.on_event({"RequestType": "Delete", "PhysicalResourceId": "images-abc123", "ResourceProperties": PROPS})
    assert out == {"PhysicalResourceId": "images-abc123"}
    assert image_build.is_complete({"RequestType": "Delete"}) == {"IsComplete": True}


@pytest.mark.parametrize("status,complete", [("IN_PROGRESS", False), ("SUCCEEDED", True)])
def test_is_complete_follows_the_build(codebuild, status, complete):
    codebuild.add_response("batch_get_builds", {"builds": [{"id": "build:1", "buildStatus": status}]}, {"ids": ["build:1"]})
    out = image_build.is_complete({"RequestType": "Create", "Data": {"BuildId": "build:1", "ImageTag": "abc123"}})
    assert out["IsComplete"] is complete


def test_a_failed_build_fails_the_deployment(codebuild):
    codebuild.add_response("batch_get_builds", {"builds": [{"id": "build:1", "buildStatus": "FAILED",
                                                            "logs": {"deepLink": "https://logs"}}]}, {"ids": ["build:1"]})
    with pytest.raises(RuntimeError, match="FAILED; see https://logs"):
        image_build.is_complete({"RequestType": "Update", "Data": {"BuildId": "build:1", "ImageTag": "abc123"}})
