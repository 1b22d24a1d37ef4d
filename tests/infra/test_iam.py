"""IAM coverage: every call the pipeline and each Lambda makes is allowed by its role, and nothing is a wildcard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra import iam, synth

LAMBDAS = [
    # (module, handler function or None for the whole module, role logical-id prefix)
    ("start_run", None, "TriggerStarterRole"),
    ("cleanup", None, "CleanupHandlerRole"),
    ("image_build", "on_event", "ImagesBuilderRole"),
    ("image_build", "is_complete", "ImagesPollerRole"),
    ("invoke", None, "ServingApiInvokeRole"),
]


def test_state_machine_role_allows_every_action_of_the_definition(definition):
    allowed = iam.allowed_actions(iam.role_statements("RolesStateMachine"))
    needed = iam.asl_actions(definition)
    missing = {state: sorted(actions - allowed) for state, actions in needed.items() if actions - allowed}
    assert missing == {}


def test_regression_sagemaker_add_tags_and_sync_events_are_allowed(definition):
    allowed = iam.allowed_actions(iam.role_statements("RolesStateMachine"))
    # Creating tagged SageMaker resources needs sagemaker:AddTags; `.sync` needs the managed rules.
    assert "sagemaker:AddTags" in allowed
    assert iam.SYNC_EVENTS <= allowed
    events = [s for s in iam.role_statements("RolesStateMachine") if set(json.dumps(s["Action"]).split('"')) & iam.SYNC_EVENTS]
    assert len(events) == 1
    resource = json.dumps(events[0]["Resource"])
    assert ":rule/StepFunctionsGetEventsForSageMaker*" in resource


@pytest.mark.parametrize("module,function,role", LAMBDAS)
def test_each_lambda_role_allows_its_boto3_calls(module, function, role, repo_root):
    needed = iam.boto3_actions(repo_root / "lambdas" / module / "app.py", function)
    assert needed, f"found no boto3 calls in {module}"
    allowed = iam.allowed_actions(iam.role_statements(role))
    assert needed - allowed == set()


def test_no_wildcard_actions_anywhere():
    for lid, policy in {**synth.resources("AWS::IAM::Policy"), **synth.resources("AWS::IAM::Role")}.items():
        doc = json.dumps(policy["Properties"])
        for statement_actions in _actions(policy["Properties"]):
            for action in statement_actions:
                if lid.startswith("ImagesBuildRole"):  # CDK's asset grantRead (s3:GetObject*, List*): acknowledged
                    continue
                assert "*" not in action, (lid, action)
        assert '"Action": "*"' not in doc


def _actions(props):
    docs = [props.get("PolicyDocument")] + [p["PolicyDocument"] for p in props.get("Policies", [])]
    for doc in filter(None, docs):
        for st in doc["Statement"]:
            acts = st["Action"]
            yield [acts] if isinstance(acts, str) else acts


def test_pass_role_is_conditioned_on_sagemaker_everywhere():
    for lid in synth.resources("AWS::IAM::Policy"):
        for st in synth.resources()[lid]["Properties"]["PolicyDocument"]["Statement"]:
            acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if "iam:PassRole" in acts:
                assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
                assert st["Resource"]["Fn::GetAtt"][0].startswith("RolesSageMakerExecution")


def test_sagemaker_role_is_limited_to_runs_prefix_and_our_repositories():
    statements = iam.role_statements("RolesSageMakerExecution")
    s3 = [s for s in statements if any(a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    text = json.dumps(s3)
    assert "/runs/*" in text and "raw/" not in text and "forecasts/" not in text
    ecr = next(s for s in statements if "ecr:BatchGetImage" in s["Action"])
    assert all("Repository" in json.dumps(r) for r in ecr["Resource"])


def test_state_machine_sagemaker_resources_are_name_prefixed(infra_settings):
    for st in iam.role_statements("RolesStateMachine"):
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if not any(a.startswith("sagemaker:") for a in acts) or st["Resource"] == "*":
            if st["Resource"] == "*":
                assert all(a.startswith(("sagemaker:List", "xray:", "logs:")) for a in acts), acts
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in resources:
            text = json.dumps(r)
            assert f"/{infra_settings.resource_prefix}-*" in text or f"endpoint/{infra_settings.endpoint_name}" in text, text



def _expects_missing_keys(module: str) -> bool:
    return "NoSuchKey" in (Path(__file__).parents[2] / "lambdas" / module / "app.py").read_text()


@pytest.mark.parametrize("module,role", sorted({(m, r) for m, _, r in LAMBDAS if _expects_missing_keys(m)}))
def test_a_lambda_that_expects_a_missing_key_may_list_its_prefix(module, role):
    """Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied, not 404 NoSuchKey
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, Permissions): a Lambda that
    treats NoSuchKey as "absent" (the starter, for the optional settings file) must be allowed to list
    the prefixes it reads."""
    statements = iam.role_statements(role)
    reads = [s for s in statements if "s3:GetObject" in json.dumps(s["Action"])]
    lists = [s for s in statements if "s3:ListBucket" in json.dumps(s["Action"])]
    assert reads and lists, f"{module} reads objects and expects NoSuchKey, but may not list the bucket"
    # Object ARNs are Fn::Join [bucket ARN, "/<prefix>*"]; ListBucket is on the bucket ARN itself.
    read_prefixes = {s["Resource"]["Fn::Join"][1][1].lstrip("/").rstrip("*") for s in reads}
    bucket = reads[0]["Resource"]["Fn::Join"][1][0]
    assert all(s["Resource"] == bucket for s in lists), lists
    listed = [p.rstrip("*") for s in lists for p in s.get("Condition", {}).get("StringLike", {}).get("s3:prefix", ["*"])]
    for prefix in read_prefixes:
        assert any(prefix.startswith(p) for p in listed), (prefix, listed)


def test_the_starter_is_among_the_lambdas_that_expect_missing_keys():
    assert _expects_missing_keys("start_run")
