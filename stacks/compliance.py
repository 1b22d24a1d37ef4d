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
