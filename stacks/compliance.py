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
