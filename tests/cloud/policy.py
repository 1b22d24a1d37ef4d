"""A small IAM policy evaluator and the IAM requests each AWS API call makes.

`authorizations(service, operation, params)` turns one API call into the IAM requests AWS authorizes
for it: (action, resource ARN, condition context). `Policy.allows` evaluates a request against identity
policy statements the way IAM does for one account: an explicit Deny wins, then any Allow whose Action,
Resource and Condition all match; nothing matching is an implicit deny.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html

Resource ARNs and condition keys per action follow the Service Authorization Reference:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html
(SageMaker lower-cases resource names in ARNs; its List* actions support no resource-level scoping.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import unquote

ACCOUNT = "123456789012"
REGION = "us-east-1"
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"


@dataclass(frozen=True)
class Request:
    action: str  # e.g. "s3:GetObject"
    resource: str  # an ARN or "*"
    context: dict[str, Any] = field(default_factory=dict)  # condition keys (case-insensitive names)

    def __str__(self) -> str:
        ctx = f" {self.context}" if self.context else ""
        return f"{self.action} on {self.resource}{ctx}"


# ---- evaluation ------------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcards: `*` any run of characters (also `/` and `:`), `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _compare(op: str, expected: str, actual: Any) -> bool:
    actual = str(actual).lower() if isinstance(actual, bool) else str(actual)
    if op in ("StringEquals", "ArnEquals"):
        return actual == expected
    if op == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if op in ("StringLike", "ArnLike"):
        return _like(expected, actual)
    if op == "Bool":
        return actual.lower() == str(expected).lower()
    if op.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {"NumericEquals": a == e, "NumericLessThan": a < e, "NumericLessThanEquals": a <= e,
                "NumericGreaterThan": a > e, "NumericGreaterThanEquals": a >= e}[op]
    raise NotImplementedError(f"condition operator {op} is not supported by this evaluator")


_NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotEquals": "ArnEquals",
            "ArnNotLike": "ArnLike", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
            "NumericNotEquals": "NumericEquals"}


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    present = key.lower() in lowered
    actual = lowered.get(key.lower())
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    expected = [str(v) for v in _as_list(expected)]
    if op == "Null":  # "true": the key must be absent
        return (not present) == (expected[0].lower() == "true")
    if not present:
        return if_exists or op in _NEGATED or qualifier == "ForAllValues"
    negated = op in _NEGATED
    base = _NEGATED.get(op, op)
    values = _as_list(actual)
    if qualifier == "ForAllValues":
        result = all(any(_compare(base, e, v) for e in expected) for v in values)
    else:  # ForAnyValue, or a single-valued key
        result = any(_compare(base, e, v) for v in values for e in expected)
    return not result if negated else result


def _matches(statement: dict[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(_like(a, request.action, case=False) for a in _as_list(statement["Action"])):
            return False
    elif any(_like(a, request.action, case=False) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_like(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(_like(r, request.resource) for r in _as_list(statement["NotResource"])):
        return False
    for operator, block in statement.get("Condition", {}).items():
        for key, expected in block.items():
            if not _condition_holds(operator, key, expected, request.context):
                return False
    return True


@dataclass
class Policy:
    """The identity-policy statements of one role (CloudFormation intrinsics already resolved)."""

    name: str
    statements: list[dict[str, Any]]

    def allows(self, request: Request) -> bool:
        matching = [s for s in self.statements if _matches(s, request)]
        if any(s.get("Effect") == "Deny" for s in matching):
            return False
        return any(s.get("Effect") == "Allow" for s in matching)


# ---- API call -> IAM requests ----------------------------------------------------------------------
def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    if isinstance(source, dict):
        return source["Bucket"], source["Key"], source.get("VersionId")
    path, _, query = str(source).lstrip("/").partition("?")
    bucket, _, key = path.partition("/")
    version = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("versionId")
    return bucket, unquote(key), unquote(version) if version else None


def _s3(operation: str, p: dict[str, Any]) -> list[Request]:
    bucket = p.get("Bucket", "")
    if operation in ("GetObject", "HeadObject"):
        action = "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject"
        return [Request(action, _s3_object(bucket, p["Key"]))]
    if operation == "PutObject":
        return [Request("s3:PutObject", _s3_object(bucket, p["Key"]))]
    if operation == "CopyObject":
        src_bucket, src_key, version = _copy_source(p["CopySource"])
        read = "s3:GetObjectVersion" if version else "s3:GetObject"
        return [Request(read, _s3_object(src_bucket, src_key)), Request("s3:PutObject", _s3_object(bucket, p["Key"]))]
    if operation in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        context = {"s3:prefix": p["Prefix"]} if "Prefix" in p else {}
        action = "s3:ListBucketVersions" if operation == "ListObjectVersions" else "s3:ListBucket"
        return [Request(action, f"arn:aws:s3:::{bucket}", context)]
    if operation == "DeleteObject":
        return [Request("s3:DeleteObject", _s3_object(bucket, p["Key"]))]
    if operation == "GetBucketLocation":
        return [Request("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")]
    raise NotImplementedError(f"s3:{operation} has no IAM mapping in tests/cloud/policy.py")


# SageMaker operation noun -> (ARN resource type, the parameter that names it)
_SAGEMAKER_RESOURCES = {
    "ProcessingJob": ("processing-job", "ProcessingJobName"),
    "TrainingJob": ("training-job", "TrainingJobName"),
    "HyperParameterTuningJob": ("hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
    "ModelPackageGroup": ("model-package-group", "ModelPackageGroupName"),
    "ModelPackage": ("model-package", "ModelPackageName"),
    "Model": ("model", "ModelName"),
    "EndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "Endpoint": ("endpoint", "EndpointName"),
}
_VERBS = ("Create", "Describe", "Delete", "Update", "Stop")


def sagemaker_arn(kind: str, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _role_arns(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("RoleArn", "ExecutionRoleArn") and isinstance(v, str):
                yield v
            else:
                yield from _role_arns(v)
    elif isinstance(value, list):
        for v in value:
            yield from _role_arns(v)


def _sagemaker(operation: str, p: dict[str, Any], package_arn: str | None) -> list[Request]:
    action = f"sagemaker:{operation}"
    if operation.startswith("List") and operation != "ListTags":
        return [Request(action, "*")]
    if operation in ("ListTags", "AddTags", "DeleteTags"):
        return [Request(action, p["ResourceArn"])]
    if operation == "InvokeEndpoint":
        return [Request(action, sagemaker_arn("endpoint", p["EndpointName"]))]
    verb = next((v for v in _VERBS if operation.startswith(v)), None)
    noun = operation[len(verb):] if verb else ""
    if noun not in _SAGEMAKER_RESOURCES:
        raise NotImplementedError(f"sagemaker:{operation} has no IAM mapping in tests/cloud/policy.py")
    kind, name_key = _SAGEMAKER_RESOURCES[noun]
    if noun == "ModelPackage" and verb == "Create":
        resource = package_arn or sagemaker_arn(kind, p.get("ModelPackageName", ""))
    else:
        resource = sagemaker_arn(kind, p[name_key])
    tags = p.get("Tags") or []
    context: dict[str, Any] = {}
    if tags:
        context = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in tags} | {"aws:TagKeys": [t["Key"] for t in tags]}
    requests = [Request(action, resource, context)]
    if tags:  # tagging on create needs sagemaker:AddTags as well
        # https://docs.aws.amazon.com/sagemaker/latest/dg/security_iam_id-based-policy-examples.html
        requests.append(Request("sagemaker:AddTags", resource, context))
    for role in _role_arns(p):
        requests.append(Request("iam:PassRole", role, {"iam:PassedToService": SAGEMAKER_PRINCIPAL}))
    return requests


def authorizations(service: str, operation: str, params: dict[str, Any], *,
                   package_arn: str | None = None) -> list[Request]:
    """The IAM requests of one API call (`service` is botocore's name: s3, sagemaker, sns, ...)."""
    if service == "s3":
        return _s3(operation, params)
    if service in ("sagemaker", "sagemaker-runtime"):
        return _sagemaker(operation, params, package_arn)
    if service == "sns" and operation == "Publish":
        return [Request("sns:Publish", params.get("TopicArn") or params.get("TargetArn", ""))]
    if service == "stepfunctions":
        arn = params.get("stateMachineArn") or params.get("executionArn") or "*"
        if operation in ("ListExecutions", "StartExecution", "DescribeStateMachine"):
            return [Request(f"states:{operation}", params.get("stateMachineArn", arn))]
        return [Request(f"states:{operation}", arn)]
    if service == "events":
        return [Request(f"events:{operation}", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{params.get('Name', '*')}")]
    raise NotImplementedError(f"{service}:{operation} has no IAM mapping in tests/cloud/policy.py")
