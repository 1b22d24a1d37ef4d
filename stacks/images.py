"""Images: our two ECR repositories and the deploy-time build that fills them.

Mechanism (and why):
  * `DockerImageAsset` would need a Docker engine on the deploying machine and pushes to the CDK
    bootstrap repository, not to repositories this stack owns; copying from there needs
    cdk-ecr-deployment (a Go binary fetched from the internet at synth/deploy), which we avoid.
  * Instead the repository root, filtered to what the images read (IMAGE_SOURCES), is an ordinary S3
    file asset, and a CodeBuild project (privileged, Docker inside CodeBuild) builds
    `containers/training/Dockerfile` and `containers/serving/Dockerfile` with the repository root as
    build context and pushes both to our repositories, tagged with the source asset's hash.
  * A custom resource (Provider framework: `on_event` starts the build, `is_complete` polls it, up to an
    hour) makes `cdk deploy` wait for the images, and every consumer (state machine, trigger) depends on
    it, so no run starts before its images exist. A changed source -> a new hash -> a new build and new
    image URIs in the state machine; an unchanged source rebuilds nothing.
  * Synth needs no Docker: it only hashes and stages the filtered folder.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.compliance import REDUNDANT_DEPENDS_ON, acknowledge, arn_of, cfn_lint_ignore, logical_id
from stacks.functions import REPO_ROOT, PythonFunction
from stacks.settings import InfraSettings

# Only what the image builds read (an allow-list): the asset hash, hence the image tag, changes only when
# an image would change; editing the README, docs, tests or the CDK app rebuilds nothing.
IMAGE_SOURCES = ["containers", "pipeline_code", "pyproject.toml", ".dockerignore"]
# The image build's time in CodeBuild, and in its queue; with the Provider's 30 s polls, under an hour.
BUILD_MINUTES = 45
QUEUED_MINUTES = 10
WAIT_HOURS = 1
SOURCE_EXCLUDE = [
    "*", ".*", *(f"!{source}" for source in IMAGE_SOURCES), *(f"!{source}/**" for source in IMAGE_SOURCES),
    "**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/.pytest_cache", "**/*.log",
]

# Builds (and pushes) each image unless its tag is already there: tags are immutable, and a retried
# deployment must not fail on an image an earlier attempt already pushed.
_BUILD_ONE = (
    'build_one() {{ if aws ecr describe-images --repository-name "${0}_REPOSITORY_NAME" '
    '--image-ids imageTag="$IMAGE_TAG" >/dev/null 2>&1; then echo "{1}:$IMAGE_TAG exists"; else '
    'docker build -f containers/{1}/Dockerfile -t "${0}_REPOSITORY_URI:$IMAGE_TAG" . && '
    'docker push "${0}_REPOSITORY_URI:$IMAGE_TAG"; fi; }}; build_one'
)
BUILDSPEC = {
    "version": "0.2",
    "phases": {
        "pre_build": {
            "commands": [
                'aws ecr get-login-password --region "$AWS_REGION" | '
                'docker login --username AWS --password-stdin "${TRAINING_REPOSITORY_URI%%/*}"',
            ]
        },
        "build": {
            "commands": [_BUILD_ONE.format("TRAINING", "training"), _BUILD_ONE.format("SERVING", "serving")]
        },
    },
}


class Images(Construct):
    """``training_image_uri`` / ``serving_image_uri`` (tagged with the source hash), ready at deploy time."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: InfraSettings) -> None:
        super().__init__(scope, construct_id)

        def repository(name: str) -> ecr.Repository:
            return ecr.Repository(
                self,
                name,
                image_scan_on_push=True,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                encryption=ecr.RepositoryEncryption.AES_256,
                removal_policy=RemovalPolicy.DESTROY,
                empty_on_delete=True,
                # Tags are content hashes and immutable; a registered model package (any version, so any
                # rollback target) points at one. Only untagged images (layers of an interrupted push)
                # expire; tagged ones are never expired by count or age.
                # https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html
                lifecycle_rules=[
                    ecr.LifecycleRule(
                        description="expire untagged images (interrupted pushes) after a day; never tagged ones",
                        tag_status=ecr.TagStatus.UNTAGGED,
                        max_image_age=Duration.days(1),
                        rule_priority=1,
                    )
                ],
            )

        self.training_repository = repository("TrainingRepository")
        self.serving_repository = repository("ServingRepository")

        self.source = s3_assets.Asset(self, "Source", path=str(REPO_ROOT), exclude=SOURCE_EXCLUDE)
        self.image_tag = self.source.asset_hash[:32]

        self.project = codebuild.Project(
            self,
            "Build",
            description="Builds the forecast-mlops training and serving images into this stack's ECR repositories",
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(BUILDSPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
                privileged=True,  # docker build
            ),
            environment_variables={
                "TRAINING_REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                    value=self.training_repository.repository_uri
                ),
                "SERVING_REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                    value=self.serving_repository.repository_uri
                ),
                "TRAINING_REPOSITORY_NAME": codebuild.BuildEnvironmentVariable(
                    value=self.training_repository.repository_name
                ),
                "SERVING_REPOSITORY_NAME": codebuild.BuildEnvironmentVariable(
                    value=self.serving_repository.repository_name
                ),
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=self.image_tag),
            },
            # CloudFormation waits at most an hour for the custom resource (the Provider's total_timeout
            # and a custom resource's ServiceTimeout are at most 3600 s), and CodeBuild counts queueing
            # apart from the build: both fit in the hour, with the poller's interval to spare.
            # https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-customresource.html
            timeout=Duration.minutes(BUILD_MINUTES),
            queued_timeout=Duration.minutes(QUEUED_MINUTES),
        )
        self.training_repository.grant_pull_push(self.project)
        self.serving_repository.grant_pull_push(self.project)
        self.project.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecr:DescribeImages"],
                resources=[self.training_repository.repository_arn, self.serving_repository.repository_arn],
            )
        )

        builder = PythonFunction(
            self,
            "Builder",
            settings=settings,
            name="image_build",
            handler="on_event",
            description="forecast-mlops: start the image build (custom resource on_event)",
        )
        poller = PythonFunction(
            self,
            "Poller",
            settings=settings,
            name="image_build",
            handler="is_complete",
            description="forecast-mlops: poll the image build (custom resource is_complete)",
        )
        builder.role.add_to_policy(
            iam.PolicyStatement(actions=["codebuild:StartBuild"], resources=[self.project.project_arn])
        )
        poller.role.add_to_policy(
            iam.PolicyStatement(actions=["codebuild:BatchGetBuilds"], resources=[self.project.project_arn])
        )
        self.functions = [builder, poller]

        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=builder.function,
            is_complete_handler=poller.function,
            query_interval=Duration.seconds(30),
            total_timeout=Duration.hours(WAIT_HOURS),
        )
        waiter_functions = [c for c in provider.node.find_all() if c.node.id in ("framework-isComplete", "framework-onTimeout")]
        acknowledge(
            provider,
            "CDK Provider framework: its waiter state machine invokes the framework functions (any version).",
            *(f"AwsSolutions-IAM5[Resource::{arn_of(f)}:*]" for f in waiter_functions),
        )
        self.build = CustomResource(
            self,
            "ImageBuild",
            service_token=provider.service_token,
            resource_type="Custom::ForecastImages",
            properties={"ProjectName": self.project.project_name, "ImageTag": self.image_tag},
        )
        # The build runs as the project's role: its policy (which CloudFormation can only create after the
        # project, and updates with every new source asset) must be in place before the build starts.
        self.build.node.add_dependency(self.training_repository, self.serving_repository, self.project.role)

        self.training_image_uri = self.training_repository.repository_uri_for_tag(self.image_tag)
        self.serving_image_uri = self.serving_repository.repository_uri_for_tag(self.image_tag)

        acknowledge(self.project, "Privileged mode is required to run docker build.", "AwsSolutions-CB3")
        acknowledge(
            self.project,
            "The build's only outputs are images in ECR (AES-256); it stores no artifacts of its own, so the "
            "AWS-managed key is sufficient.",
            "AwsSolutions-CB4",
        )
        acknowledge(
            self.project,
            "CDK-generated CodeBuild role: read of the source asset object (CDK's grantRead action groups), "
            "the project's own log group and report groups (named by CodeBuild at run time); "
            "ecr:GetAuthorizationToken supports no resource.",
            "AwsSolutions-IAM5[Action::s3:GetBucket*]",
            "AwsSolutions-IAM5[Action::s3:GetObject*]",
            "AwsSolutions-IAM5[Action::s3:List*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            f"/aws/codebuild/<{logical_id(self.project)}>:*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:"
            f"report-group/<{logical_id(self.project)}>-*]",
            "AwsSolutions-IAM5[Resource::*]",
        )
        framework = "CDK custom-resource Provider framework (its own functions, roles and waiter state machine)"
        acknowledge(
            provider,
            f"{framework}: basic execution policy, invoking our two handlers (any version), not configurable.",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            f"AwsSolutions-IAM5[Resource::{arn_of(builder.function)}:*]",
            f"AwsSolutions-IAM5[Resource::{arn_of(poller.function)}:*]",
            "AwsSolutions-SF1",
            "AwsSolutions-SF2",
            "AwsSolutions-L1",
        )
        cfn_lint_ignore(provider, "W3005", REDUNDANT_DEPENDS_ON,
                        types=("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"))
        self.provider = provider
        self.stack_name = Stack.of(self).stack_name
