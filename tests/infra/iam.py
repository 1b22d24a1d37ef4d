"""What the pipeline and each Lambda call, as IAM actions, and what their roles allow (from the template)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from tests.infra import synth

IAM_PREFIX = {"stepfunctions": "states", "sagemaker": "sagemaker", "sagemaker-runtime": "sagemaker",
              "codebuild": "codebuild", "s3": "s3", "sns": "sns"}
SYNC_EVENTS = {"events:PutTargets", "events:PutRule", "events:DescribeRule"}


def _camel(snake_or_lower: str) -> str:
    if "_" in snake_or_lower:
        return "".join(p.capitalize() for p in snake_or_lower.split("_"))
    return snake_or_lower[0].upper() + snake_or_lower[1:]


def _walk_states(states: dict[str, Any]):
    for name, state in states.items():
        yield name, state
        if state["Type"] == "Map":
            yield from _walk_states(state["ItemProcessor"]["States"])
        for branch in state.get("Branches", []):
            yield from _walk_states(branch["States"])


def asl_actions(definition: dict[str, Any]) -> dict[str, set[str]]:
    """state name -> IAM actions its Resource needs (optimised and aws-sdk integrations)."""
    out: dict[str, set[str]] = {}
    for name, state in _walk_states(definition["States"]):
        if state["Type"] != "Task":
            continue
        resource: str = state["Resource"]
        params = state.get("Parameters", {})
        text = json.dumps(params)
        actions: set[str] = set()
        m = re.fullmatch(r"arn:aws:states:::aws-sdk:([a-z0-9]+):([A-Za-z]+)", resource)
        if m:
            service, api = m.groups()
            if service == "s3" and api == "copyObject":
                actions |= {"s3:GetObject", "s3:PutObject"}
                if "versionId" in text or "copySource" in text:
                    actions.add("s3:GetObjectVersion")
            else:
                actions.add(f"{IAM_PREFIX.get(service, service)}:{_camel(api)}")
        m = re.fullmatch(r"arn:aws:states:::sagemaker:([A-Za-z]+)(\.sync)?", resource)
        if m:
            api, sync = m.groups()
            noun = _camel(api)[len("Create"):]
            # Step Functions' policy for every SageMaker integration includes sagemaker:ListTags:
            # https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
            actions |= {f"sagemaker:{_camel(api)}", f"sagemaker:Describe{noun}", "sagemaker:ListTags"}
            if sync:
                actions |= {f"sagemaker:Stop{noun}"} | SYNC_EVENTS
        if resource == "arn:aws:states:::sns:publish":
            actions.add("sns:Publish")
        if '"Tags' in text:
            actions.add("sagemaker:AddTags")
        if re.search(r'"(ExecutionRoleArn|RoleArn)"', text):
            actions.add("iam:PassRole")
        out[name] = actions
    return out


# API operations authorized by another action. HeadObject needs s3:GetObject:
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
AUTHORIZED_AS = {"s3:HeadObject": "s3:GetObject"}


def boto3_actions(source: Path, function: str | None = None) -> set[str]:
    """IAM actions of the boto3 calls in a Lambda module (or in one of its functions)."""
    tree = ast.parse(source.read_text())
    factories: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "client"
                        and isinstance(sub.func.value, ast.Name) and sub.func.value.id == "boto3"):
                    factories[node.name] = sub.args[0].value
    scope = tree
    if function:
        scope = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
        # follow calls to module-level helpers of the same file
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    seen: set[str] = set()
    actions: set[str] = set()

    def visit(node: ast.AST) -> None:
        variables: dict[str, str] = {}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call) and isinstance(sub.value.func, ast.Name):
                if sub.value.func.id in factories:
                    for target in sub.targets:
                        if isinstance(target, ast.Name):
                            variables[target.id] = factories[sub.value.func.id]
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute):
                service = None
                value = sub.value
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in factories:
                    service = factories[value.func.id]
                elif isinstance(value, ast.Name) and value.id in variables:
                    service = variables[value.id]
                if service and not sub.attr.startswith(("exceptions", "meta", "get_paginator")):
                    action = f"{IAM_PREFIX[service]}:{_camel(sub.attr)}"
                    actions.add(AUTHORIZED_AS.get(action, action))
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in helpers:
                if sub.func.id not in seen and sub.func.id not in factories:
                    seen.add(sub.func.id)
                    visit(helpers[sub.func.id])

    visit(scope)
    return actions


def role_statements(role_prefix: str) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the role whose logical id starts with `role_prefix`."""
    role_id = next(k for k in synth.resources("AWS::IAM::Role") if k.startswith(role_prefix))
    statements = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if f'"{role_id}"' in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    role = synth.resources()[role_id]["Properties"]
    for inline in role.get("Policies", []):
        statements += inline["PolicyDocument"]["Statement"]
    return statements


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for st in statements:
        if st.get("Effect") == "Allow":
            acts = st["Action"]
            out |= set([acts] if isinstance(acts, str) else acts)
    return out
