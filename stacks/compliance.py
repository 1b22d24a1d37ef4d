"""Acknowledgements of cdk-nag findings and checkov skips, each with its reason, in code.

cdk-nag 3 uses CDK's native `Validations.of(scope).acknowledge(...)`; a finding id is the rule id plus,
for rules that report several findings per resource, the finding (``AwsSolutions-IAM5[Resource::*]``).
checkov reads ``checkov: {skip: [{id, comment}]}`` from a resource's CloudFormation metadata.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, reason: str, *rule_ids: str) -> None:
    """Acknowledge cdk-nag findings on `scope` (and the resources below it)."""
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in rule_ids))


def checkov_skip(scope: IConstruct, check_id: str, reason: str) -> None:
    """Skip a checkov check on every CloudFormation resource at or below `scope`, with the reason."""
    resources = [c for c in scope.node.find_all() if isinstance(c, CfnResource)]
    for resource in resources:
        metadata = resource.get_metadata("checkov") or {"skip": []}
        skips = [s for s in metadata["skip"] if s["id"] != check_id]
        skips.append({"id": check_id, "comment": reason})
        resource.add_metadata("checkov", {"skip": skips})


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag prints it in finding ids."""
    from aws_cdk import Stack

    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    stack = Stack.of(construct)
    return stack.resolve(stack.get_logical_id(resource))


def arn_of(construct: IConstruct) -> str:
    """``<LogicalId.Arn>``: how cdk-nag renders `Fn::GetAtt [id, Arn]` in finding ids."""
    return f"<{logical_id(construct)}.Arn>"


def cfn_lint_ignore(scope: IConstruct, check_id: str, reason: str, *, types: tuple[str, ...] = ()) -> None:
    """Ignore a cfn-lint check on CloudFormation resources at or below `scope` (optionally by type)."""
    for resource in scope.node.find_all():
        if not isinstance(resource, CfnResource) or (types and resource.cfn_resource_type not in types):
            continue
        metadata = resource.get_metadata("cfn-lint") or {"config": {"ignore_checks": [], "reasons": {}}}
        config = metadata["config"]
        if check_id not in config["ignore_checks"]:
            config["ignore_checks"].append(check_id)
        config.setdefault("reasons", {})[check_id] = reason
        resource.add_metadata("cfn-lint", metadata)


REDUNDANT_DEPENDS_ON = (
    "CDK adds DependsOn on the execution role (and its policy) to every function and state machine, "
    "which cfn-lint reports as already implied by the role's GetAtt; harmless."
)


# checkov checks skipped for every resource of a type, each with its reason (resource-specific skips
# live next to the resource).
STACK_WIDE_CHECKOV_SKIPS: dict[str, list[tuple[str, str]]] = {
    "AWS::Lambda::Function": [
        ("CKV_AWS_116", "No asynchronous invocations: API Gateway, CloudFormation and the SQS event source "
                        "invoke synchronously (the upload queue has its own dead-letter queue)."),
        ("CKV_AWS_117", "The functions call only public AWS APIs; a VPC would add NAT/endpoint cost and "
                        "nothing to protect."),
        ("CKV_AWS_115", "Reserved concurrency can fail deployment in accounts with the default quota; load "
                        "is bounded by the API usage plan and the SQS batch size of 1."),
        ("CKV_AWS_173", "Environment variables hold names and ARNs only, no secrets."),
    ],
    "AWS::Logs::LogGroup": [
        ("CKV_AWS_158", "Logs hold no secrets and are encrypted at rest by CloudWatch; a customer key "
                        "would cost more than the idle stack."),
    ],
    "AWS::SQS::Queue": [
        ("CKV_AWS_27", "Encrypted with SQS-managed SSE (SqsManagedSseEnabled), which this checkov rule "
                       "does not recognise; EventBridge can deliver to it without a key policy."),
    ],
    "AWS::ECR::Repository": [
        ("CKV_AWS_136", "AES-256 encryption at rest; the images hold code and no secrets, and a KMS key "
                        "would need grants for CodeBuild and SageMaker."),
    ],
}


def apply_stack_wide_checkov_skips(scope: IConstruct) -> None:
    for resource in scope.node.find_all():
        if isinstance(resource, CfnResource):
            for check_id, reason in STACK_WIDE_CHECKOV_SKIPS.get(resource.cfn_resource_type, []):
                checkov_skip(resource, check_id, reason)
