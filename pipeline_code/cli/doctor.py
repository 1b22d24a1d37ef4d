"""``forecast-mlops doctor [--stack NAME]``: will this account run this deployment? A preflight.

It reads the account's SageMaker quotas (Service Quotas) and API Gateway's account settings and says,
for each quota the deployment's settings need, whether it is enough, and if not which quota to raise and
to what. The settings come from the deployed stack (``--stack``: its ``PreflightSettings`` output) or,
before the first deploy, from the CDK app's settings in ``cdk.json`` (``--cdk-json``, run from the
repository).

What the deployment needs:
  * tuning: ``max_parallel_jobs`` training jobs at once, each one ``training_instance_type`` instance,
    against "<type> for training job usage" (or "... for spot training job usage" with spot), since
    every training job of a tuning job counts against the account's training instances
    (https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-limits.html);
  * processing and evaluation: one ``processing_instance_type`` instance at a time, and a panel's
    sharded fit ``series.instances`` at once (the deployment's default; an upload's settings file may ask
    for more), "<type> for processing job usage";
  * the serverless endpoint: ``serverless_max_concurrency`` against "Maximum total concurrency that
    can be allocated across all serverless endpoints"
    (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html);
  * API Gateway access logging: the account's CloudWatch Logs role, unless the stack sets it
    (``api_gateway_cloudwatch_role``) (https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html).

Quotas come from ListServiceQuotas (applied values); a quota never changed in the account is missing
there and is read from ListAWSDefaultServiceQuotas instead
(https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_ListServiceQuotas.html).
"""

from __future__ import annotations

import json
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

SERVICE_CODE = "sagemaker"
PREFLIGHT_OUTPUT = "PreflightSettings"
SERVERLESS_CONCURRENCY_QUOTA = "Maximum total concurrency that can be allocated across all serverless endpoints"
QUOTA_CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas/{}"


class DoctorError(Exception):
    """The preflight could not read what it needs (no stack, no output, no cdk.json)."""


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """The settings the preflight checks (the stack's `PreflightSettings` output, same keys)."""

    training_instance_type: str
    processing_instance_type: str
    max_parallel_jobs: int
    use_spot: bool
    serverless_max_concurrency: int
    api_gateway_cloudwatch_role: bool
    # a panel's sharded fit: one processing job on this many instances (absent from stacks deployed
    # before it was published: 1)
    series_instances: int = 1

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str) -> "Deployment":
        names = {f.name for f in fields(cls)}
        missing = sorted({f.name for f in fields(cls) if f.default is MISSING} - set(raw))
        if missing:
            raise DoctorError(f"{source}: missing {', '.join(missing)}")
        return cls(**{name: raw[name] for name in names & set(raw)})


@dataclass(frozen=True)
class Need:
    quota: str
    required: int
    why: str


@dataclass(frozen=True)
class Finding:
    """One check: `ok`, and what to do when it is not."""

    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'RAISE' if 'quota' in self.check else 'FIX'}] {self.check}: {self.detail}"


def needs(deployment: Deployment) -> list[Need]:
    training = "spot training" if deployment.use_spot else "training"
    return [
        Need(f"{deployment.training_instance_type} for {training} job usage", deployment.max_parallel_jobs,
             f"tuning runs {deployment.max_parallel_jobs} training job(s) at once on "
             f"{deployment.training_instance_type}{' (managed spot)' if deployment.use_spot else ''}"),
        Need(f"{deployment.processing_instance_type} for processing job usage", deployment.series_instances,
             f"preprocessing and evaluation run one {deployment.processing_instance_type} job at a time"
             + (f"; a panel's sharded fit runs on series.instances = {deployment.series_instances} at once"
                if deployment.series_instances > 1 else "")),
        Need(SERVERLESS_CONCURRENCY_QUOTA, deployment.serverless_max_concurrency,
             f"the endpoint's MaxConcurrency is {deployment.serverless_max_concurrency}"),
    ]


def _pages(call, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = call(**kwargs)
        yield from page.get(key, [])
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


def quotas(client) -> dict[str, dict[str, Any]]:
    """QuotaName -> quota (applied values first, AWS defaults for quotas never changed)."""
    found: dict[str, dict[str, Any]] = {}
    for quota in _pages(client.list_aws_default_service_quotas, "Quotas", ServiceCode=SERVICE_CODE):
        found[quota["QuotaName"]] = quota
    for quota in _pages(client.list_service_quotas, "Quotas", ServiceCode=SERVICE_CODE):
        found[quota["QuotaName"]] = quota
    return found


def check_quotas(deployment: Deployment, client) -> list[Finding]:
    available = quotas(client)
    findings = []
    for need in needs(deployment):
        quota = available.get(need.quota)
        if quota is None:
            findings.append(Finding(
                f"quota '{need.quota}'", False,
                f"not found in this region's SageMaker quotas ({need.why}); is the instance type offered here?"))
            continue
        value = int(quota.get("Value", 0))
        if value >= need.required:
            findings.append(Finding(f"quota '{need.quota}'", True, f"{value} >= {need.required} ({need.why})"))
        else:
            link = QUOTA_CONSOLE.format(quota["QuotaCode"]) if quota.get("QuotaCode") else "the Service Quotas console"
            findings.append(Finding(
                f"quota '{need.quota}'", False,
                f"is {value}, needs {need.required}: raise it by {need.required - value} ({need.why}); "
                f"request at {link}, or lower the setting"))
    return findings


def check_api_gateway(deployment: Deployment, client) -> Finding:
    role = client.get_account().get("cloudwatchRoleArn")
    check = "API Gateway CloudWatch Logs role (account setting)"
    if deployment.api_gateway_cloudwatch_role:
        detail = (f"the stack sets it (now {role}); it replaces the account's role in this region" if role
                  else "not set yet; the stack creates and sets it")
        return Finding(check, True, detail)
    if role:
        return Finding(check, True, f"set centrally: {role}")
    return Finding(check, False, "not set, and api_gateway_cloudwatch_role is false: access logging will fail the "
                                 "deploy; set the role in API Gateway's account settings or deploy with "
                                 "-c forecast-mlops:api_gateway_cloudwatch_role=true")


def diagnose(deployment: Deployment, session) -> list[Finding]:
    return [*check_quotas(deployment, session.client("service-quotas")),
            check_api_gateway(deployment, session.client("apigateway"))]


def deployment_from_stack(stack: str, session) -> Deployment:
    client = session.client("cloudformation")
    try:
        (described,) = client.describe_stacks(StackName=stack)["Stacks"]
    except client.exceptions.ClientError as err:
        raise DoctorError(f"stack {stack}: {err.response['Error'].get('Message', err)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if PREFLIGHT_OUTPUT not in outputs:
        raise DoctorError(f"stack {stack} has no {PREFLIGHT_OUTPUT} output (deployed before the preflight existed?)")
    return Deployment.from_mapping(json.loads(outputs[PREFLIGHT_OUTPUT]), f"stack {stack} {PREFLIGHT_OUTPUT}")


def deployment_from_cdk_json(path: Path) -> Deployment:
    """The CDK app's settings (cdk.json context over the app's defaults); needs the repository's `stacks`."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise DoctorError(f"{path}: {what} (run from the repository, or give --stack NAME)")
    root = str(path.resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from stacks.settings import CONTEXT_KEY, InfraSettings
    except ImportError as err:
        raise DoctorError(f"{path}: the CDK app's settings module is not importable ({err})") from None
    context = json.loads(path.read_text()).get("context", {})
    return Deployment.from_mapping(InfraSettings.from_mapping(context.get(CONTEXT_KEY) or {}).preflight(),
                                   f"{path} {CONTEXT_KEY}")


def add_doctor_command(sub) -> None:
    """`doctor [--stack NAME] [--region R] [--cdk-json PATH]` on the CLI's subparsers."""
    doctor = sub.add_parser("doctor", help="preflight: the account's quotas and settings against the deployment's")
    doctor.add_argument("--stack", help="read the settings of this deployed stack (default: ./cdk.json)")
    doctor.add_argument("--region", help="AWS region (default: the profile's)")
    doctor.add_argument("--cdk-json", type=Path, default=Path("cdk.json"), help="the CDK app's cdk.json")
    doctor.set_defaults(func=cmd_doctor)


CREDENTIALS_GUIDE = "https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html"


def _what_to_do(err: Exception) -> str:
    """botocore's message, and for a missing region or missing credentials what to do about it."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    if isinstance(err, NoRegionError):
        return f"{err} Give --region REGION, or set AWS_REGION (or a region in your AWS profile)."
    if isinstance(err, NoCredentialsError):
        return (f"{err}. Configure them: `aws configure` (or `aws sso login --profile NAME` and AWS_PROFILE=NAME), "
                f"or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; see {CREDENTIALS_GUIDE}")
    return str(err)


def cmd_doctor(args, session=None) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.session.Session(region_name=args.region)
    try:
        deployment = (deployment_from_stack(args.stack, session) if args.stack
                      else deployment_from_cdk_json(args.cdk_json))
        findings = diagnose(deployment, session)
    except (DoctorError, BotoCoreError, ClientError) as err:  # no region or credentials; access denied
        print(f"doctor: {_what_to_do(err)}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding.line())
    bad = [f for f in findings if not f.ok]
    print(f"{len(bad)} to fix before a run can succeed" if bad else "this account can run this deployment")
    return 1 if bad else 0
