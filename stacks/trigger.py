"""Trigger: S3 "Object Created" under raw/ -> EventBridge -> SQS FIFO queue -> starter Lambda -> StartExecution.

Why a FIFO queue and a starter instead of a rule targeting Step Functions directly:
  * the execution name must derive from the object key and version id (a duplicate event then starts
    nothing: StartExecution with a used name is rejected or, while running, returns the same execution),
    and an EventBridge target cannot compute a bounded, SageMaker-safe name;
  * an upload arriving while a run is in progress must be queued, not dropped and not run in parallel
    (two runs would race for the one endpoint). All messages share one message group, so the queue
    hands them to the starter one at a time, in order; while a run is RUNNING the starter reports the
    message as failed and SQS makes it visible again after the visibility timeout (a later retry).
  * after `max_receive_count` retries (about `queue_retry_seconds * max_receive_count` of waiting) a
    message goes to the dead-letter queue, which has an alarm.
"""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from pipeline_code.engine.settings import TUNING_PARALLEL_ENV
from pipeline_code.pipeline import layout
from stacks.compliance import acknowledge, arn_of
from stacks.functions import PythonFunction
from stacks.settings import InfraSettings
from stacks.storage import RAW_PREFIX

MESSAGE_GROUP = "uploads"
MAX_RECEIVE_COUNT = 200


class Trigger(Construct):
    """``rule``, ``queue``, ``dead_letter_queue`` and the ``starter`` function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        bucket: s3.IBucket,
        state_machine: sfn.IStateMachine,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            fifo=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Uploads",
            fifo=True,
            content_based_deduplication=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            visibility_timeout=Duration.seconds(max(settings.queue_retry_seconds, 180)),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT),
        )

        self.rule = events.Rule(
            self,
            "UploadCreated",
            description="forecast-mlops: a CSV uploaded under raw/ starts a training run",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket.bucket_name]}, "object": {"key": [{"prefix": RAW_PREFIX}]}},
            ),
            targets=[targets.SqsQueue(self.queue, message_group_id=MESSAGE_GROUP)],
        )

        self.starter = PythonFunction(
            self,
            "Starter",
            settings=settings,
            name="start_run",
            description="forecast-mlops: validate the run document, then start one run per upload, one at a time",
            # It reads the upload (up to data.max_file_bytes) to infer the frequency and the length.
            timeout=Duration.seconds(60),
            memory_size=1024,
            environment={
                "STATE_MACHINE_ARN": state_machine.state_machine_arn, "RAW_PREFIX": RAW_PREFIX,
                "TOPIC_ARN": topic.topic_arn,
                # The deployment's layer of the run document (validated at synth by InfraSettings).
                "RUN_DEFAULTS": json.dumps(settings.run, separators=(",", ":"), sort_keys=True),
                TUNING_PARALLEL_ENV: str(settings.tuning.max_parallel_jobs),
            },
        )
        # Reads uploads and their settings files; writes only each run's document and record.
        self.starter.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[bucket.arn_for_objects(f"{RAW_PREFIX}*")]))
        # Most uploads come without a settings file. Without s3:ListBucket, S3 answers a missing key with
        # 403 AccessDenied instead of 404 NoSuchKey, and the starter could not tell "no settings file" from
        # a denied read (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, Permissions;
        # the same for HeadObject). S3 evaluates that check with the key as s3:prefix.
        self.starter.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{RAW_PREFIX}*"]}}))
        self.starter.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(layout.run_key("*", part)) for part in (layout.RUN_DOCUMENT, layout.RUN_RECORD)],
        ))
        topic.grant_publish(self.starter.role)
        acknowledge(
            self.starter.role,
            "Scoped to the layout: uploads under raw/, and per run (its id is only known at run time) "
            "the run document and the run record.",
            f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/{RAW_PREFIX}*]",
            *(f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/{layout.run_key('*', part)}]"
              for part in (layout.RUN_DOCUMENT, layout.RUN_RECORD)),
        )
        self.starter.role.add_to_policy(
            iam.PolicyStatement(actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn])
        )
        self.starter.role.add_to_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine.state_machine_arn])
        )
        self.starter.function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=1, report_batch_item_failures=True)
        )
