"""Start one training run per upload, one run at a time (SQS FIFO event source, batch size 1).

The message body is the EventBridge S3 "Object Created" event. The execution name (= the run id) is
derived from the object key and version id, so a duplicate event maps to the same name: Step Functions
rejects a second execution with a used name (or returns the running one), hence nothing new starts.
While another execution is RUNNING the message is reported as failed and SQS retries it after the
queue's visibility timeout: uploads during a run are queued, not dropped.

Before it starts anything, the starter builds the run document (``pipeline_code.engine.settings``,
docs/design.md "The run document"): the engine's defaults, the deployment's layer (``RUN_DEFAULTS``,
from cdk.json), the settings file uploaded beside the data (``raw/<name>.settings.json`` next to
``raw/<name>.csv``), and what the data implies (frequency, length). A valid document is written to
``runs/<run-id>/input/settings.json`` and the tuning job's parameter ranges, rendered from its
candidate space, go into the execution input with ``shards``: for a panel upload (many series) the
sharded fit's instance count, ``series.instances`` (at most one per series), for one series 0 (no
sharded fit). An invalid one starts nothing: the reason goes to the notification topic and to the
run's record ``runs/<run-id>/run.json``.

Run id: ``<slug of the file stem, <= 9 chars>-<first 10 hex of sha256(key NUL version)>``: at most 20
lower-case characters, so every SageMaker name built from it fits (see stacks/naming.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import quote

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipeline_code.engine.profile import profile_csv
from pipeline_code.pipeline import layout
from pipeline_code.engine.settings import (
    SETTINGS_MAX_BYTES, SETTINGS_SUFFIX, TUNING_PARALLEL_ENV, Settings, SettingsError, check_length, check_offered,
    parse_document, resolve, settings_file_for,
)

LOG = logging.getLogger()
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

RUN_ID_MAX = 20
_SLUG_MAX = 9
_HASH_LEN = 10
DEPLOYMENT_LAYER = "deployment settings (cdk.json forecast-mlops.run)"


def _sfn():
    return boto3.client("stepfunctions")


def _s3():
    return boto3.client("s3")


def run_id(key: str, version: str) -> str:
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:_SLUG_MAX].strip("-") or "run"
    digest = hashlib.sha256(f"{key}\0{version}".encode()).hexdigest()[:_HASH_LEN]
    return f"{slug}-{digest}"


def execution_input(bucket: str, key: str, version: str | None) -> dict[str, str]:
    source = f"{bucket}/{quote(key, safe='/')}"
    if version:
        source += f"?versionId={quote(version, safe='')}"
    file_name = re.sub(r"[^A-Za-z0-9._-]+", "_", key.rsplit("/", 1)[-1]) or "data.csv"
    return {"key": key, "versionId": version or "", "copySource": source, "fileName": file_name}


def _running(state_machine_arn: str) -> list[str]:
    names: list[str] = []
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "statusFilter": "RUNNING", "maxResults": 100}
    while True:
        page = _sfn().list_executions(**kwargs)
        names += [e["name"] for e in page.get("executions", [])]
        if not page.get("nextToken"):
            return names
        kwargs["nextToken"] = page["nextToken"]


def _read(bucket: str, key: str, limit: int, *, version: str | None = None, what: str) -> bytes | None:
    """An object's bytes (None when it does not exist); larger than ``limit`` is a settings error."""
    kwargs = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    try:
        response = _s3().get_object(**kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    size = int(response.get("ContentLength", 0))
    if size > limit:
        response["Body"].close()
        raise SettingsError([f"{what} is {size} bytes; the limit is {limit}"], f"s3://{bucket}/{key}")
    return response["Body"].read()


def superseded(bucket: str, key: str, version: str) -> bool:
    """Whether a newer upload of the same key replaced this one: uploads of one dataset that queue up
    during a run collapse to the newest (its own event comes later in the FIFO queue)."""
    try:
        current = _s3().head_object(Bucket=bucket, Key=key).get("VersionId")
    except ClientError as err:
        if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return True  # deleted since: nothing to run
        raise
    return current is not None and current != version


class RunPlan(NamedTuple):
    """The run document and what the execution needs from the upload's first look."""

    settings: Settings
    panel: bool  # many series (an item_id column, or Amazon Forecast's layout)
    items: int  # series in the upload (1 for one series)

    def execution_fields(self, max_parallel: int) -> dict[str, Any]:
        """The tuning job's ranges and Grid, and the sharded fit's instance count (0: one series, no
        sharded fit; never more instances than series: an instance without a shard would idle).

        The tuning job is a Grid over the ranges (one series: the family; a panel: the history and the
        scale), whose job count is the number of their combinations; at most ``max_parallel`` (the
        deployment's) at once. https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceLimits.html
        """
        trials = self.settings.tuning_grid(panel=self.panel)
        grid = {"maxJobs": trials, "maxParallelJobs": min(max_parallel, trials)}
        if self.panel:
            shards = max(1, min(self.settings.series.instances, self.items))
            return {"parameterRanges": self.settings.panel_parameter_ranges(), "grid": grid, "shards": shards}
        return {"parameterRanges": self.settings.parameter_ranges(), "grid": grid, "shards": 0}


def run_document(bucket: str, key: str, version: str | None) -> RunPlan:
    """The run's settings: every layer, then the data; raises SettingsError naming the key."""
    layers = [(DEPLOYMENT_LAYER, json.loads(os.environ.get("RUN_DEFAULTS") or "{}"))]
    folder, _, file_name = key.rpartition("/")
    settings_key = f"{folder}/{settings_file_for(file_name)}" if folder else settings_file_for(file_name)
    uploaded = _read(bucket, settings_key, SETTINGS_MAX_BYTES, what="the settings file")
    if uploaded is not None:
        source = f"s3://{bucket}/{settings_key}"
        document = parse_document(uploaded, source)
        if "serve" in document:  # the API's model and the endpoint's limit are the deployment's
            raise SettingsError(["serve: the serving limits are the deployment's (cdk.json forecast-mlops.run.serve); "
                                 "an upload cannot change them"], source)
        layers.append((source, document))
    limit = Settings()
    for source, document in layers:
        limit = limit.merged(document, source, validate=False)
    data = _read(bucket, key, limit.data.max_file_bytes, version=version, what="the upload")
    if data is None:
        raise SettingsError(["the upload is gone"], f"s3://{bucket}/{key}")
    profile = profile_csv(data, limit.series.columns)
    if profile.problem:  # refused as the input contract would, before settings are derived from part of it
        raise SettingsError([profile.problem], f"s3://{bucket}/{key}")
    settings = resolve(layers, timestamps=profile.timestamps, observations=profile.observations,
                       lines=profile.lines).settings
    # One series: refuse too short a one now, naming the minimum. A panel's too-short series get the
    # fallback model (docs/panel.md), so its length refuses nothing here.
    if profile.timestamps and not profile.panel:
        check_length(settings, profile.observations)
    check_offered(settings, panel=profile.panel)  # families that offer no model for the data's season
    return RunPlan(settings, profile.panel, profile.items)


def _record(bucket: str, name: str, record: dict[str, Any]) -> None:
    _s3().put_object(Bucket=bucket, Key=layout.run_key(name, layout.RUN_RECORD), Body=json.dumps(record, indent=1).encode(),
                     ContentType="application/json")


def refuse(bucket: str, key: str, name: str, err: SettingsError) -> None:
    """Nothing starts: the reason goes to the run's record and to the topic."""
    LOG.warning("run %s for s3://%s/%s refused: %s", name, bucket, key, err)
    _record(bucket, name, {
        "run_id": name, "state": "refused", "stage": "validation", "data": f"s3://{bucket}/{key}",
        "reason": str(err), "problems": err.problems, "at": datetime.now(timezone.utc).isoformat(),
    })
    topic = os.environ.get("TOPIC_ARN")
    if topic:
        boto3.client("sns").publish(
            TopicArn=topic, Subject="forecast-mlops: upload refused",
            Message=f"The upload s3://{bucket}/{key} started no run (run id {name}); its run document was "
                    f"refused before any job started:\n\n" + "\n".join(f"- {problem}" for problem in err.problems)
                    + f"\n\nSource: {err.source}. Fix it and upload the data again; nothing else changed.",
        )


def start(event_body: dict[str, Any], state_machine_arn: str) -> str:
    """'started', 'duplicate', 'ignored', 'superseded', 'refused' or 'busy' (retry later)."""
    detail = event_body.get("detail", {})
    bucket = detail.get("bucket", {}).get("name")
    obj = detail.get("object", {})
    key = obj.get("key")
    raw_prefix = os.environ.get("RAW_PREFIX", layout.RAW)
    if not bucket or not key or not key.startswith(raw_prefix) or key.endswith("/"):
        LOG.warning("ignoring event without a raw/ object: %s", json.dumps(detail)[:500])
        return "ignored"
    if key.endswith(SETTINGS_SUFFIX):
        LOG.info("settings file %s waits for its data (upload the CSV after it)", key)
        return "ignored"
    version = obj.get("version-id") or obj.get("etag") or ""
    if obj.get("version-id") and superseded(bucket, key, obj["version-id"]):
        LOG.info("%s version %s is superseded by a newer upload, which has its own turn", key, obj["version-id"])
        return "superseded"
    name = run_id(key, version)
    running = _running(state_machine_arn)
    if name in running:
        LOG.info("duplicate event for %s (run %s is running)", key, name)
        return "duplicate"
    if running:
        LOG.info("run(s) %s in progress: %s waits in the queue", running, key)
        return "busy"
    try:
        plan = run_document(bucket, key, obj.get("version-id"))
    except SettingsError as err:
        refuse(bucket, key, name, err)
        return "refused"
    except (ClientError, BotoCoreError):
        raise  # S3 may answer next time: the message is retried
    except Exception as err:  # noqa: BLE001 - reading the same upload again would fail again
        # Refused, not retried: a retry would hold every later upload of the FIFO group behind this one
        # until the message is dead-lettered (maxReceiveCount receives, one visibility timeout apart).
        LOG.exception("reading the run document of s3://%s/%s failed", bucket, key)
        refuse(bucket, key, name, SettingsError(
            [f"the upload or its settings could not be read ({type(err).__name__}: {str(err)[:300]})"],
            f"s3://{bucket}/{key}"))
        return "refused"
    _s3().put_object(Bucket=bucket, Key=layout.run_key(name, layout.RUN_DOCUMENT),
                     Body=plan.settings.to_json().encode(), ContentType="application/json")
    try:
        _sfn().start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=json.dumps({**execution_input(bucket, key, obj.get("version-id")),
                              **plan.execution_fields(int(os.environ[TUNING_PARALLEL_ENV]))}),
        )
    except ClientError as err:
        if err.response["Error"]["Code"] == "ExecutionAlreadyExists":
            LOG.info("duplicate event for %s (run %s exists)", key, name)
            return "duplicate"
        raise
    LOG.info("started run %s for s3://%s/%s", name, bucket, key)
    return "started"


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    state_machine_arn = os.environ["STATE_MACHINE_ARN"]
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        if failures:  # FIFO: once one message waits, the ones after it wait too
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        try:
            outcome = start(json.loads(record["body"]), state_machine_arn)
        except Exception:  # noqa: BLE001 - the message is retried, then dead-lettered
            LOG.exception("could not start a run for message %s", record.get("messageId"))
            outcome = "busy"
        if outcome == "busy":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
