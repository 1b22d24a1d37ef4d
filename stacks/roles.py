"""Roles: the SageMaker execution role and the state machine's role, least privilege, no wildcard actions.

SageMaker lower-cases resource names in its ARNs, so every name the pipeline creates starts with the
lower-case ``<resource_prefix>-`` and the statements below are scoped to ``<type>/<prefix>-*``.
"""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks import naming
from stacks.compliance import acknowledge, arn_of
from stacks.settings import InfraSettings
from stacks.storage import FORECASTS_PREFIX, RAW_PREFIX, RUNS_PREFIX

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
# The managed EventBridge rules Step Functions creates for `.sync` SageMaker jobs.
SYNC_RULE_PREFIX = "StepFunctionsGetEventsForSageMaker"


def sagemaker_arn(resource: str) -> str:
    return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


class PipelineRoles(Construct):
    """``sagemaker_role`` (jobs, models, the endpoint) and ``state_machine_role``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        bucket: s3.IBucket,
        repositories: list[ecr.IRepository],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)

        # ---- SageMaker execution role -------------------------------------------------------------
        self.sagemaker_role = iam.Role(
            self,
            "SageMakerExecution",
            assumed_by=iam.ServicePrincipal(SAGEMAKER_PRINCIPAL),
            description="forecast-mlops SageMaker jobs and endpoint: runs/ of the data bucket, our ECR repos",
        )
        sm = self.sagemaker_role
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="RunsReadWrite",
                actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
            )
        )
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="RunsList",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{RUNS_PREFIX}*"]}},
            )
        )
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="PullOurImages",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[r.repository_arn for r in repositories],
            )
        )
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            )
        )
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="SageMakerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*",
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*:log-stream:*",
                ],
            )
        )
        sm.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
            )
        )
        acknowledge(
            sm,
            "Scoped by prefix: objects under runs/ of our bucket, SageMaker's own log groups; "
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level scoping "
            "(the latter is limited to SageMaker namespaces by condition).",
            f"AwsSolutions-IAM5[Resource::{arn_of(bucket)}/runs/*]",
            "AwsSolutions-IAM5[Resource::*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*:log-stream:*]",
        )

        # ---- state machine role -------------------------------------------------------------------
        self.state_machine_role = iam.Role(
            self,
            "StateMachine",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="forecast-mlops training pipeline: name-prefixed SageMaker resources only",
        )
        sfn = self.state_machine_role

        def scoped(kind: str) -> str:
            return sagemaker_arn(naming.sagemaker_arn_pattern(settings, kind))

        endpoint_arn = sagemaker_arn(f"endpoint/{settings.endpoint_name}")
        group_arn = scoped("model-package-group")
        package_arn = scoped("model-package")
        self.statements: list[iam.PolicyStatement] = [
            iam.PolicyStatement(
                sid="ProcessingJobs",
                actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                         "sagemaker:StopProcessingJob"],
                resources=[scoped("processing-job")],
            ),
            iam.PolicyStatement(
                sid="TuningJobs",
                actions=["sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
                         "sagemaker:StopHyperParameterTuningJob"],
                resources=[scoped("hyper-parameter-tuning-job")],
            ),
            iam.PolicyStatement(
                sid="TrainingJobsOfTuning",
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[scoped("training-job")],
            ),
            iam.PolicyStatement(
                sid="Registry",
                actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup",
                         "sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage"],
                resources=[group_arn, package_arn],
            ),
            iam.PolicyStatement(
                sid="RegistryList",
                actions=["sagemaker:ListModelPackages", "sagemaker:ListEndpointConfigs"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="Deploy",
                actions=["sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
                         "sagemaker:DeleteEndpointConfig"],
                resources=[scoped("model"), scoped("endpoint-config")],
            ),
            iam.PolicyStatement(
                sid="Endpoint",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
                resources=[endpoint_arn, scoped("endpoint-config")],
            ),
            iam.PolicyStatement(
                sid="TagWhatWeCreate",
                actions=["sagemaker:AddTags", "sagemaker:ListTags"],
                resources=[
                    scoped("processing-job"), scoped("hyper-parameter-tuning-job"), scoped("training-job"),
                    scoped("model"), scoped("endpoint-config"), endpoint_arn, group_arn, package_arn,
                ],
            ),
            iam.PolicyStatement(
                sid="PassSageMakerRole",
                actions=["iam:PassRole"],
                resources=[sm.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
            ),
            iam.PolicyStatement(
                sid="SyncRules",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{SYNC_RULE_PREFIX}*"
                ],
            ),
            iam.PolicyStatement(
                sid="ReadUpload",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[bucket.arn_for_objects(f"{RAW_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="RunsAndForecasts",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*"), bucket.arn_for_objects(f"{FORECASTS_PREFIX}*")],
            ),
            iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn]),
        ]
        for statement in self.statements:
            sfn.add_to_policy(statement)
        acknowledge(
            sfn,
            "SageMaker resources are scoped to our name prefix (the run id is only known at run time); "
            "objects to the bucket's layout prefixes; the .sync rules to Step Functions' managed rule "
            "prefix; ListModelPackages/ListEndpointConfigs support no resource scoping. Logging and X-Ray "
            "delivery actions support no resource scoping.",
            *[
                f"AwsSolutions-IAM5[Resource::{r}]"
                for r in (
                    *(f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:{naming.sagemaker_arn_pattern(settings, k)}"
                      for k in ("processing-job", "hyper-parameter-tuning-job", "training-job", "model-package-group",
                                "model-package", "model", "endpoint-config")),
                    f"arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/{SYNC_RULE_PREFIX}*",
                    f"{arn_of(bucket)}/raw/*",
                    f"{arn_of(bucket)}/runs/*",
                    f"{arn_of(bucket)}/forecasts/*",
                    "*",
                )
            ],
        )
        self.stack = Stack.of(self)
