"""Unit tests of the starter Lambda (moto Step Functions; executions stay RUNNING, nothing executes)."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from moto import mock_aws

from stacks.settings import RUN_ID_MAX
from tests.infra.lambdas import load

start_run = load("start_run")
DEFINITION = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


@pytest.fixture
def sfn(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        client = boto3.client("stepfunctions")
        arn = client.create_state_machine(name="p", definition=DEFINITION,
                                          roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
        monkeypatch.setenv("STATE_MACHINE_ARN", arn)
        yield client, arn


def event(key: str, version: str = "v1", message_id: str = "m1") -> dict:
    body = {"detail": {"bucket": {"name": "b"}, "object": {"key": key, "version-id": version}}}
    return {"Records": [{"messageId": message_id, "body": json.dumps(body)}]}


@pytest.mark.parametrize("key", ["raw/gasoline.csv", "raw/a/b/Weekly Gasoline (US) ++ 2024!.csv", "raw/" + "x" * 300 + ".csv",
                                 "raw/.csv", "raw/ÄÖÜ.csv"])
def test_run_ids_are_short_lowercase_and_sagemaker_safe(key):
    run_id = start_run.run_id(key, "version")
    assert len(run_id) <= RUN_ID_MAX
    assert re.fullmatch(r"[a-z0-9](-*[a-z0-9])*", run_id)
    assert start_run.run_id(key, "version") == run_id
    assert start_run.run_id(key, "other") != run_id


def test_input_carries_an_encoded_copy_source_with_the_version():
    data = start_run.execution_input("b", "raw/my file+1.csv", "v 1")
    assert data["copySource"] == "b/raw/my%20file%2B1.csv?versionId=v%201"
    assert data["fileName"] == "my_file_1.csv"


def test_starts_one_execution_named_from_key_and_version(sfn):
    client, arn = sfn
    assert start_run.handler(event("raw/g.csv")) == {"batchItemFailures": []}
    (execution,) = client.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == start_run.run_id("raw/g.csv", "v1")


def test_duplicate_event_while_running_starts_nothing(sfn):
    client, arn = sfn
    start_run.handler(event("raw/g.csv"))
    assert start_run.handler(event("raw/g.csv", message_id="m2")) == {"batchItemFailures": []}
    assert len(client.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_an_upload_during_a_run_waits_in_the_queue(sfn):
    client, arn = sfn
    start_run.handler(event("raw/first.csv"))  # stays RUNNING in moto
    result = start_run.handler(event("raw/second.csv", message_id="m2"))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert len(client.list_executions(stateMachineArn=arn)["executions"]) == 1
    # Once the run is over, the retried message starts the second run.
    (running,) = client.list_executions(stateMachineArn=arn)["executions"]
    client.stop_execution(executionArn=running["executionArn"])
    assert start_run.handler(event("raw/second.csv", message_id="m2")) == {"batchItemFailures": []}
    assert len(client.list_executions(stateMachineArn=arn)["executions"]) == 2


def test_events_outside_raw_are_ignored(sfn):
    client, arn = sfn
    assert start_run.handler(event("forecasts/latest/forecast.csv")) == {"batchItemFailures": []}
    assert start_run.handler(event("raw/folder/")) == {"batchItemFailures": []}
    assert client.list_executions(stateMachineArn=arn)["executions"] == []


def test_an_unexpected_error_leaves_the_message_for_a_retry(sfn, monkeypatch):
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    assert start_run.handler(event("raw/g.csv")) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
