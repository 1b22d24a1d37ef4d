"""Start one training run per upload, one run at a time (SQS FIFO event source, batch size 1).

The message body is the EventBridge S3 "Object Created" event. The execution name (= the run id) is
derived from the object key and version id, so a duplicate event maps to the same name: Step Functions
rejects a second execution with a used name (or returns the running one), hence nothing new starts.
While another execution is RUNNING the message is reported as failed and SQS retries it after the
queue's visibility timeout: uploads during a run are queued, not dropped.

Run id: ``<slug of the file stem, <= 9 chars>-<first 10 hex of sha256(key NUL version)>``: at most 20
lower-case characters, so every SageMaker name built from it fits (see stacks/naming.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError

LOG = logging.getLogger()
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

RUN_ID_MAX = 20
_SLUG_MAX = 9
_HASH_LEN = 10


def _sfn():
    return boto3.client("stepfunctions")


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


def start(event_body: dict[str, Any], state_machine_arn: str) -> str:
    """'started', 'duplicate', 'ignored' or 'busy' (retry later)."""
    detail = event_body.get("detail", {})
    bucket = detail.get("bucket", {}).get("name")
    obj = detail.get("object", {})
    key = obj.get("key")
    raw_prefix = os.environ.get("RAW_PREFIX", "raw/")
    if not bucket or not key or not key.startswith(raw_prefix) or key.endswith("/"):
        LOG.warning("ignoring event without a raw/ object: %s", json.dumps(detail)[:500])
        return "ignored"
    version = obj.get("version-id") or obj.get("etag") or ""
    name = run_id(key, version)
    running = _running(state_machine_arn)
    if name in running:
        LOG.info("duplicate event for %s (run %s is running)", key, name)
        return "duplicate"
    if running:
        LOG.info("run(s) %s in progress: %s waits in the queue", running, key)
        return "busy"
    try:
        _sfn().start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=json.dumps(execution_input(bucket, key, obj.get("version-id"))),
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
