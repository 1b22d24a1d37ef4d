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
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{RUNS_PREFIX}*"]}},
            )
        )
        # GetBucketLocation takes no prefix, so an s3:prefix condition never holds for it: its own statement.
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
        sm.add_to_policy(
            iam.PolicyStatement(sid="BucketLocation", actions=["s3:GetBucketLocation"], resources=[bucket.bucket_arn])
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

        # ---- state machine roles --------------------------------------------------------------------
        def scoped(kind: str) -> str:
            return sagemaker_arn(naming.sagemaker_arn_pattern(settings, kind))

        endpoint_arn = sagemaker_arn(f"endpoint/{settings.endpoint_name}")
        group_arn = scoped("model-package-group")
        package_arn = scoped("model-package")
        pass_role = iam.PolicyStatement(
            sid="PassSageMakerRole",
            actions=["iam:PassRole"],
            resources=[sm.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
        )
        notify = iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[topic.topic_arn])

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
                sid="Registry",
                actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup",
                         "sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage"],
                resources=[group_arn, package_arn],
            ),
            iam.PolicyStatement(sid="RegistryList", actions=["sagemaker:ListModelPackages"], resources=["*"]),
            # Step Functions' policy for every SageMaker integration includes sagemaker:ListTags (the docs'
            # template grants it on "*"; here, on what the machine creates):
            # https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
            iam.PolicyStatement(
                sid="TagWhatWeCreate",
                actions=["sagemaker:AddTags", "sagemaker:ListTags"],
                resources=[scoped("processing-job"), scoped("hyper-parameter-tuning-job"), scoped("training-job"),
                           group_arn],
            ),
            pass_role,
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
            notify,
        ]
        self.deploy_statements: list[iam.PolicyStatement] = [
            iam.PolicyStatement(sid="ReadPackage", actions=["sagemaker:DescribeModelPackage"], resources=[package_arn]),
            iam.PolicyStatement(
                sid="Deploy",
                actions=["sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig"],
                resources=[scoped("model"), scoped("endpoint-config")],
            ),
            iam.PolicyStatement(
                sid="Endpoint",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                         "sagemaker:DeleteEndpoint"],
                resources=[endpoint_arn, scoped("endpoint-config")],
            ),
            iam.PolicyStatement(sid="ListConfigs", actions=["sagemaker:ListEndpointConfigs"], resources=["*"]),
            iam.PolicyStatement(
                sid="TagWhatWeCreate",
                actions=["sagemaker:AddTags", "sagemaker:ListTags"],
                resources=[scoped("model"), scoped("endpoint-config"), endpoint_arn],
            ),
            pass_role,
            iam.PolicyStatement(
                sid="ReadRunForecastWriteLatest",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*"), bucket.arn_for_objects(f"{FORECASTS_PREFIX}*")],
            ),
            notify,
        ]
        self.state_machine_role = self._role(
            "StateMachine", "forecast-mlops training pipeline: name-prefixed SageMaker resources only",
            self.statements, settings, bucket,
        )
        self.deploy_role = self._role(
            "DeployMachine", "forecast-mlops deploy: our model packages to our endpoint", self.deploy_statements,
            settings, bucket,
        )
        self.stack = Stack.of(self)

    def _role(self, construct_id: str, description: str, statements: list[iam.PolicyStatement],
              settings: InfraSettings, bucket: s3.IBucket) -> iam.Role:
        role = iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                        description=description)
        for statement in statements:
            role.add_to_policy(statement)
        kinds = ("processing-job", "hyper-parameter-tuning-job", "training-job", "model-package-group",
                 "model-package", "model", "endpoint-config")
        acknowledge(
            role,
            "SageMaker resources are scoped to our name prefix (the run id is only known at run time); "
            "objects to the bucket's layout prefixes; the .sync rules to Step Functions' managed rule "
            "prefix; ListModelPackages/ListEndpointConfigs support no resource scoping. Logging and X-Ray "
            "delivery actions support no resource scoping.",
            *[
                f"AwsSolutions-IAM5[Resource::{r}]"
                for r in (
                    *(f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                      f"{naming.sagemaker_arn_pattern(settings, k)}" for k in kinds),
                    f"arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/{SYNC_RULE_PREFIX}*",
                    f"{arn_of(bucket)}/raw/*",
                    f"{arn_of(bucket)}/runs/*",
                    f"{arn_of(bucket)}/forecasts/*",
                    "*",
                )
            ],
        )
        return role
