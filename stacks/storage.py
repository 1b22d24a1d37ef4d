"""Storage: the data bucket (S3 layout of DESIGN.md) and its server-access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from pipeline_code.pipeline import layout

from stacks.compliance import checkov_skip
from stacks.settings import InfraSettings

# The S3 layout (DESIGN.md): prefixes the pipeline, the roles and the trigger agree on.
RAW_PREFIX, RUNS_PREFIX, FORECASTS_PREFIX = layout.RAW, layout.RUNS, layout.FORECASTS


# Every bucket of the stack: encrypted, private, SSL-only, versioned, owner-enforced.
PRIVATE_BUCKET = {
    "encryption": s3.BucketEncryption.S3_MANAGED,
    "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
    "enforce_ssl": True,
    "versioned": True,
    "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
}


class Storage(Construct):
    """A versioned, encrypted, SSL-only, private bucket with access logs, lifecycle and EventBridge events.

    Layout: ``raw/`` (uploads: the trigger), ``runs/<run-id>/{input,processed,reports,models,checkpoints,
    forecast}/`` (everything one run writes), ``forecasts/<run-id>/forecast.csv`` and
    ``forecasts/latest/forecast.csv`` (the batch export of the deployed model).
    Encryption is S3-managed (SSE-S3): SageMaker jobs, the serverless endpoint and Step Functions read
    and write without a customer key policy to maintain, and server access logs require SSE-S3 anyway.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: InfraSettings) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY

        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            **PRIVATE_BUCKET,
            removal_policy=removal,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(settings.log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
        )

        checkov_skip(self.log_bucket, "CKV_AWS_18",
                     "This is the access-log bucket; logging its own access would recurse.")

        self.bucket = s3.Bucket(
            self,
            "Data",
            **PRIVATE_BUCKET,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="data-bucket/",
            removal_policy=removal,
            lifecycle_rules=[
                # Old runs move to Infrequent Access; they expire only when run_retention_days is set,
                # since the approved model's artifact (runs/<run-id>/models/) must outlive its run.
                s3.LifecycleRule(
                    id="old-runs",
                    prefix=RUNS_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(settings.runs_infrequent_access_days),
                        )
                    ],
                    expiration=(
                        Duration.days(settings.run_retention_days) if settings.run_retention_days else None
                    ),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(settings.noncurrent_version_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )

        # EventBridge notifications through the bucket's own CloudFormation property (CDK's
        # `event_bridge_enabled` would add a custom-resource Lambda to do the same).
        self.bucket.node.default_child.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )

    def arn_for(self, prefix: str) -> str:
        """Object ARN pattern under a layout prefix, e.g. ``arn:...:bucket/runs/*``."""
        return self.bucket.arn_for_objects(f"{prefix}*")
