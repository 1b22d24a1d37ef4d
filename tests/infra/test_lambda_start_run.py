"""Unit tests of the starter Lambda: run ids, the queue discipline, and the run document it builds
(moto S3, SNS and Step Functions; executions stay RUNNING, nothing executes)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from pipeline_code.engine.settings import TUNING_PARALLEL_ENV, Settings
from stacks.settings import RUN_ID_MAX
from tests.infra.lambdas import load
from tests.run_documents import BAD_SETTINGS

start_run = load("start_run")
DEFINITION = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
BUCKET = "forecast-data"


def weekly_csv(rows: int = 600, start: date = date(2005, 1, 7)) -> bytes:
    lines = ["timestamp,value"] + [f"{start + timedelta(weeks=i)},{100 + (i % 52)}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


class World:
    """moto's S3 (versioned), SNS (a queue subscribed to the topic) and Step Functions."""

    def __init__(self) -> None:
        self.s3, self.sfn = boto3.client("s3"), boto3.client("stepfunctions")
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.arn = self.sfn.create_state_machine(name="p", definition=DEFINITION,
                                                 roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        self.topic = sns.create_topic(Name="t")["TopicArn"]
        self.queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def upload(self, key: str, body: bytes = b"", *, message_id: str = "m1") -> dict:
        version = self.s3.put_object(Bucket=BUCKET, Key=key, Body=body or weekly_csv())["VersionId"]
        return event(key, version, message_id)

    def executions(self) -> list[dict]:
        return self.sfn.list_executions(stateMachineArn=self.arn)["executions"]

    def notifications(self) -> list[str]:
        messages = boto3.client("sqs").receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        return [m["Body"] for m in messages.get("Messages", [])]

    def json(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


# the deployment's training jobs at once: more than the default families' Grid has
MAX_PARALLEL = 8


@pytest.fixture
def world(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        w = World()
        monkeypatch.setenv("STATE_MACHINE_ARN", w.arn)
        monkeypatch.setenv("TOPIC_ARN", w.topic)
        monkeypatch.setenv("RUN_DEFAULTS", "{}")
        monkeypatch.setenv(TUNING_PARALLEL_ENV, str(MAX_PARALLEL))
        yield w


def event(key: str, version: str = "v1", message_id: str = "m1") -> dict:
    body = {"detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "version-id": version}}}
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


def test_starts_one_execution_named_from_key_and_version(world):
    message = world.upload("raw/g.csv")
    assert start_run.handler(message) == {"batchItemFailures": []}
    (execution,) = world.executions()
    version = json.loads(message["Records"][0]["body"])["detail"]["object"]["version-id"]
    assert execution["name"] == start_run.run_id("raw/g.csv", version)


def test_the_run_document_is_written_once_and_the_ranges_come_from_it(world):
    """Defaults, the deployment's layer, the settings file beside the data, then the data itself."""
    world.s3.put_object(Bucket=BUCKET, Key="raw/m.settings.json", Body=json.dumps({"gate": {"min_improvement": 0.05}}))
    monthly = "\n".join(["timestamp,value"] + [f"{1990 + i // 12}-{i % 12 + 1:02d}-01,{50 + i % 12}" for i in range(240)])
    start_run.handler(world.upload("raw/m.csv", monthly.encode()))
    (execution,) = world.executions()
    document = world.json(f"runs/{execution['name']}/input/settings.json")
    settings = Settings.from_dict(document)
    assert (settings.data.freq, settings.data.season_length, settings.data.horizon) == ("MS", 12.0, 12)
    assert settings.gate.min_improvement == 0.05 and settings.min_observations() <= 240
    described = world.sfn.describe_execution(executionArn=execution["executionArn"])
    started = json.loads(described["input"])
    assert started["parameterRanges"] == settings.parameter_ranges()
    # one series: a Grid over the document's families, one trial each, never more at once than the deployment's
    families = list(settings.search.families)
    assert started["parameterRanges"]["CategoricalParameterRanges"] == [{"Name": "family", "Values": families}]
    assert started["grid"] == {"maxJobs": len(families), "maxParallelJobs": len(families)}


def test_the_deployment_layer_applies_under_the_uploaded_file(world, monkeypatch):
    monkeypatch.setenv("RUN_DEFAULTS", json.dumps({"cv": {"window": 300}, "gate": {"eval_origins": 20}}))
    world.s3.put_object(Bucket=BUCKET, Key="raw/g.settings.json", Body=json.dumps({"gate": {"eval_origins": 10}}))
    start_run.handler(world.upload("raw/g.csv"))
    (execution,) = world.executions()
    settings = Settings.from_dict(world.json(f"runs/{execution['name']}/input/settings.json"))
    assert (settings.cv.window, settings.gate.eval_origins) == (300, 10)


@pytest.mark.parametrize("case", BAD_SETTINGS, ids=list(BAD_SETTINGS))
def test_a_bad_settings_file_starts_nothing_and_says_why(world, case):
    body, expected = BAD_SETTINGS[case]
    world.s3.put_object(Bucket=BUCKET, Key="raw/g.settings.json", Body=body)
    message = world.upload("raw/g.csv")
    assert start_run.handler(message) == {"batchItemFailures": []}  # refused for good: no retry
    assert world.executions() == []
    (note,) = world.notifications()
    assert expected in note and f"s3://{BUCKET}/raw/g.csv" in note
    run = start_run.run_id("raw/g.csv", json.loads(message["Records"][0]["body"])["detail"]["object"]["version-id"])
    record = world.json(f"runs/{run}/run.json")
    assert record["state"] == "refused" and any(expected in problem for problem in record["problems"])
    keys = [o["Key"] for o in world.s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(keys) == sorted(["raw/g.csv", "raw/g.settings.json", f"runs/{run}/run.json"])


def test_an_upload_cannot_change_the_serving_limits(world):
    world.s3.put_object(Bucket=BUCKET, Key="raw/g.settings.json", Body=json.dumps({"serve": {"max_periods": 500}}))
    start_run.handler(world.upload("raw/g.csv"))
    assert world.executions() == []
    (note,) = world.notifications()
    assert "serve: the serving limits are the deployment's" in note


def test_a_settings_upload_alone_starts_nothing(world):
    world.s3.put_object(Bucket=BUCKET, Key="raw/g.settings.json", Body=b"{}")
    assert start_run.handler(event("raw/g.settings.json")) == {"batchItemFailures": []}
    assert world.executions() == []


def test_too_short_a_series_is_refused_with_the_minimum(world):
    start_run.handler(world.upload("raw/short.csv", weekly_csv(rows=120)))
    assert world.executions() == []
    (note,) = world.notifications()
    assert "the series has 120 observations; it needs at least" in note


def test_duplicate_event_while_running_starts_nothing(world):
    message = world.upload("raw/g.csv")
    start_run.handler(message)
    message["Records"][0]["messageId"] = "m2"
    assert start_run.handler(message) == {"batchItemFailures": []}
    assert len(world.executions()) == 1


def test_an_upload_during_a_run_waits_in_the_queue(world):
    start_run.handler(world.upload("raw/first.csv"))  # stays RUNNING in moto
    second = world.upload("raw/second.csv", message_id="m2")
    assert start_run.handler(second) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert len(world.executions()) == 1
    # Once the run is over, the retried message starts the second run.
    (running,) = world.executions()
    world.sfn.stop_execution(executionArn=running["executionArn"])
    assert start_run.handler(second) == {"batchItemFailures": []}
    assert len(world.executions()) == 2


def test_uploads_queued_during_a_run_collapse_to_the_newest(world):
    start_run.handler(world.upload("raw/first.csv"))  # a run is going
    older = world.upload("raw/g.csv", message_id="m2")
    newer = world.upload("raw/g.csv", weekly_csv(rows=610), message_id="m3")
    (running,) = world.executions()
    world.sfn.stop_execution(executionArn=running["executionArn"])
    assert start_run.handler(older) == {"batchItemFailures": []}  # superseded: starts nothing
    assert len(world.executions()) == 1
    assert start_run.handler(newer) == {"batchItemFailures": []}
    names = {e["name"] for e in world.executions()}
    version = json.loads(newer["Records"][0]["body"])["detail"]["object"]["version-id"]
    assert start_run.run_id("raw/g.csv", version) in names and len(names) == 2


def test_events_outside_raw_are_ignored(world):
    assert start_run.handler(event("forecasts/latest/forecast.csv")) == {"batchItemFailures": []}
    assert start_run.handler(event("raw/folder/")) == {"batchItemFailures": []}
    assert world.executions() == []


def test_an_unexpected_error_leaves_the_message_for_a_retry(world, monkeypatch):
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    assert start_run.handler(world.upload("raw/g.csv")) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_a_fault_in_reading_one_upload_refuses_it_instead_of_holding_the_queue(world, monkeypatch):
    """Reading the same upload again would fail again: a retry would hold every later upload of the FIFO
    group until the message is dead-lettered. A fault of S3's is retried."""
    def overflow(*args, **kwargs):
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(start_run, "profile_csv", overflow)
    assert start_run.handler(world.upload("raw/g.csv")) == {"batchItemFailures": []}
    assert world.executions() == []
    (note,) = world.notifications()
    assert "could not be read (OverflowError: int too large to convert to float)" in note

    def throttled(*args, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")

    monkeypatch.setattr(start_run, "profile_csv", throttled)
    assert start_run.handler(world.upload("raw/h.csv")) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert world.notifications() == []


def panel_csv(items: int, months: int) -> bytes:
    lines = ["item_id,timestamp,value"] + [f"s{k},{2015 + i // 12}-{i % 12 + 1:02d}-01,{50 + k + i % 12}"
                                           for k in range(items) for i in range(months)]
    return ("\n".join(lines) + "\n").encode()


def started_input(world) -> dict:
    (execution,) = world.executions()
    return json.loads(world.sfn.describe_execution(executionArn=execution["executionArn"])["input"])


def test_one_series_has_no_sharded_fit(world):
    start_run.handler(world.upload("raw/g.csv"))
    assert started_input(world)["shards"] == 0


def test_a_panel_is_fitted_on_the_documents_instances_with_its_global_choices_tuned(world):
    """Series far shorter than one series' minimum start the run: they get the fallback model."""
    world.s3.put_object(Bucket=BUCKET, Key="raw/p.settings.json", Body=json.dumps({"series": {"instances": 3}}))
    start_run.handler(world.upload("raw/p.csv", panel_csv(items=5, months=30)))
    started = started_input(world)
    settings = Settings.from_dict(world.json(f"runs/{world.executions()[0]['name']}/input/settings.json"))
    assert settings.min_observations() > 30 and settings.data.freq == "MS"
    assert started["shards"] == 3
    assert started["parameterRanges"] == settings.panel_parameter_ranges()
    # a Grid over the history and the scale: each trial scores every family choice at its pair
    assert [r["Name"] for r in started["parameterRanges"]["CategoricalParameterRanges"]] == ["history", "scale"]
    assert started["grid"] == {"maxJobs": 4, "maxParallelJobs": 4}


def test_a_panel_never_gets_more_instances_than_series(world):
    world.s3.put_object(Bucket=BUCKET, Key="raw/p.settings.json", Body=json.dumps({"series": {"instances": 8}}))
    start_run.handler(world.upload("raw/p.csv", panel_csv(items=2, months=60)))
    assert started_input(world)["shards"] == 2


def test_a_panel_family_that_fits_no_series_is_refused_before_any_job(world):
    """A 52-week season offers no seasonal ARIMA: named with what it needs, and nothing starts."""
    world.s3.put_object(Bucket=BUCKET, Key="raw/w.settings.json", Body=json.dumps({
        "data": {"freq": "W-FRI"}, "series": {"families": ["seasonal_naive", "arima"]}}))
    weeks = ["item_id,timestamp,value"] + [f"s{k},{date(2015, 1, 2) + timedelta(weeks=i)},{50 + k + i % 52}"
                                           for k in range(2) for i in range(600)]
    start_run.handler(world.upload("raw/w.csv", ("\n".join(weeks) + "\n").encode()))
    assert world.executions() == []
    (note,) = world.notifications()
    assert "series.families: 'arima' offers no model for data.season_length 52.1786" in note
    assert "it needs a season of at most 24 periods" in note
