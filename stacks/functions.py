"""A Lambda function with its own role and its own log group (no managed policies, no shared roles)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, SymlinkFollowMode
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.compliance import REDUNDANT_DEPENDS_ON, acknowledge, cfn_lint_ignore
from stacks.settings import InfraSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = REPO_ROOT / "lambdas"
# The latest Python runtime; a function that needs a layer built for an older one says so (runtime=).
RUNTIME = lambda_.Runtime.PYTHON_3_14
# A Lambda that needs the project's rules links ``pipeline_code`` into its folder (lambdas/start_run/,
# lambdas/invoke/): its asset keeps only these standard-library modules, the run document's
# (`pipeline_code.engine.settings`) and the serving app's request rules.
LAMBDA_MODULES = ("__init__.py", "engine/__init__.py", "engine/settings.py", "engine/profile.py",
                        "engine/core/__init__.py", "engine/core/calendar.py", "engine/core/spec.py",
                        "pipeline/__init__.py", "pipeline/layout.py", "serving/__init__.py", "serving/request.py")
EXCLUDE = [
    "__pycache__", "*.pyc", "tests", ".pytest_cache",
    "pipeline_code/**/*", *(f"!pipeline_code/{module}" for module in LAMBDA_MODULES),
    "!pipeline_code/engine", "!pipeline_code/engine/core", "!pipeline_code/pipeline", "!pipeline_code/serving",
]


class PythonFunction(Construct):
    """`lambdas/<name>/app.py`, handler ``app.<handler>``; ``role``, ``function`` and ``log_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        name: str,
        description: str,
        handler: str = "handler",
        timeout: Duration = Duration.seconds(30),
        memory_size: int = 256,
        environment: dict[str, str] | None = None,
        layers: list[lambda_.ILayerVersion] | None = None,
        runtime: lambda_.Runtime = RUNTIME,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = log_group(self, "Logs", settings)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"forecast-mlops {name} Lambda",
        )
        # Logs: only this function's log group (instead of AWSLambdaBasicExecutionRole's logs:* on *).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=runtime,
            architecture=lambda_.Architecture.X86_64,
            # Links are followed: the invoke Lambda shares the serving app's request rules this way.
            code=lambda_.Code.from_asset(
                str(LAMBDAS_DIR / name), exclude=EXCLUDE, follow_symlinks=SymlinkFollowMode.ALWAYS
            ),
            handler=f"app.{handler}",
            description=description,
            role=self.role,
            timeout=timeout,
            memory_size=memory_size,
            environment=environment or {},
            layers=layers,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        cfn_lint_ignore(self.function, "W3005", REDUNDANT_DEPENDS_ON)
        acknowledge(
            self.role,
            "X-Ray tracing: xray:PutTraceSegments/PutTelemetryRecords support no resource-level scoping.",
            "AwsSolutions-IAM5[Resource::*]",
        )


_RETENTION = [
    (1, logs.RetentionDays.ONE_DAY), (3, logs.RetentionDays.THREE_DAYS), (5, logs.RetentionDays.FIVE_DAYS),
    (7, logs.RetentionDays.ONE_WEEK), (14, logs.RetentionDays.TWO_WEEKS), (30, logs.RetentionDays.ONE_MONTH),
    (60, logs.RetentionDays.TWO_MONTHS), (90, logs.RetentionDays.THREE_MONTHS),
    (180, logs.RetentionDays.SIX_MONTHS), (365, logs.RetentionDays.ONE_YEAR),
    (731, logs.RetentionDays.TWO_YEARS), (1827, logs.RetentionDays.FIVE_YEARS),
    (3653, logs.RetentionDays.TEN_YEARS),
]


def log_group(scope: Construct, construct_id: str, settings: InfraSettings, name: str | None = None) -> logs.LogGroup:
    """A log group with the configured retention, removed with the stack (`name`: a fixed name)."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=retention(settings.log_retention_days),
        removal_policy=RemovalPolicy.DESTROY,
    )


# Step Functions delivers logs as a vended log source; a group under this prefix keeps the CloudWatch
# Logs resource policy small (one policy for all of them) instead of growing it per group.
# https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html
STATE_MACHINE_LOG_PREFIX = "/aws/vendedlogs/states/"


def state_machine_log_group(scope: Construct, construct_id: str, settings: InfraSettings, machine: str) -> logs.LogGroup:
    """`/aws/vendedlogs/states/<stack name>-<machine>`."""
    from aws_cdk import Aws

    return log_group(scope, construct_id, settings, f"{STATE_MACHINE_LOG_PREFIX}{Aws.STACK_NAME}-{machine}")


def retention(days: int) -> logs.RetentionDays:
    """The shortest allowed CloudWatch Logs retention of at least `days`."""
    return next((r for d, r in _RETENTION if d >= days), _RETENTION[-1][1])
