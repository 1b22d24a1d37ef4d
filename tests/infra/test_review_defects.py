"""The cloud path's review defects (issue 7, section 2), each checked on the synthesized app.

The behaviour of the state machines (approval deploys, Failed endpoint replaced, bounded wait, retries)
is executed in moto by tests/integration/test_state_machine.py; here: what the template must say.
"""

from __future__ import annotations

import json

from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from stacks import serving_api
from stacks.asl import FAIL_AT_ONCE, GENERIC_ERRORS, TRANSIENT_CAUSES
from stacks.deploy_definition import APPROVED_EVENT_DETAIL_TYPE
from stacks.functions import STATE_MACHINE_LOG_PREFIX
from stacks.images import IMAGE_SOURCES
from stacks.settings import InfraSettings
from tests.infra import iam, synth


def _statements(policy_type: str) -> list[dict]:
    return [st for r in synth.resources(policy_type).values() for st in r["Properties"]["PolicyDocument"]["Statement"]]


def test_registration_sends_no_tags(definition):
    """CreateModelPackage with ModelPackageGroupName (a versioned package) refuses Tags."""
    for name in ("RegisterApproved", "RegisterPending"):
        params = definition["States"][name]["Parameters"]
        assert "ModelPackageGroupName" in params and "Tags" not in params
    assert "Tags" in definition["States"]["CreateRegistry"]["Parameters"]  # the group carries them


def test_a_fresh_account_gets_the_api_gateway_cloudwatch_role_before_the_stage():
    (account_id, account), = synth.resources("AWS::ApiGateway::Account").items()
    role = synth.resources()[account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(role["Properties"]["ManagedPolicyArns"])
    assert account["DeletionPolicy"] == "Retain"  # the account setting outlives the stack
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    assert account_id in stage["DependsOn"] and "AccessLogSetting" in stage["Properties"]


def test_an_account_that_manages_the_role_centrally_can_skip_it():
    app = App()
    stack = Stack(app, "Api")
    serving_api.ServingApi(stack, "ServingApi", settings=InfraSettings(api_gateway_cloudwatch_role=False))
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::ApiGateway::Account", 0)
    template.has_resource_properties("AWS::ApiGateway::Stage", {"AccessLogSetting": {"Format": serving_api.apigw.AccessLogFormat.json_with_standard_fields(
        caller=False, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True,
        response_length=True, status=True, user=False).to_string()}})


def test_cloudwatch_alarms_may_publish_to_the_topic_from_this_account_only():
    statements = _statements("AWS::SNS::TopicPolicy")
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allow) == 1
    (grant,) = allow
    assert grant["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and grant["Action"] == "sns:Publish"
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(grant["Condition"]["ArnLike"]["aws:SourceArn"])
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)


def test_approval_events_of_our_group_start_the_deploy_machine():
    rules = [r["Properties"] for r in synth.resources("AWS::Events::Rule").values()
             if r["Properties"]["EventPattern"].get("source") == ["aws.sagemaker"]]
    (rule,) = rules
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == [APPROVED_EVENT_DETAIL_TYPE]
    assert pattern["detail"]["ModelApprovalStatus"] == ["Approved"]
    assert "fcst-models-" in json.dumps(pattern["detail"]["ModelPackageGroupName"])
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": synth.pipeline_logical_id(synth.DEPLOY_PREFIX)}


def test_the_training_machine_no_longer_deploys(definition, deploy_definition):
    deploy_calls = {"createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint"}
    training = {s["Resource"].rsplit(":", 1)[-1] for s in definition["States"].values() if s["Type"] == "Task"}
    deploy = {s["Resource"].rsplit(":", 1)[-1] for s in deploy_definition["States"].values() if s["Type"] == "Task"}
    assert training & deploy_calls == set() and deploy_calls <= deploy


def test_the_deploy_role_allows_every_call_of_the_deploy_machine(deploy_definition):
    allowed = iam.allowed_actions(iam.role_statements("RolesDeployMachine"))
    needed = iam.asl_actions(deploy_definition)
    assert {state: sorted(a - allowed) for state, a in needed.items() if a - allowed} == {}
    assert "sagemaker:DeleteEndpoint" in allowed  # a Failed endpoint is deleted and created again


def test_a_failed_endpoint_is_deleted_and_every_other_status_is_handled(deploy_definition):
    states = deploy_definition["States"]
    found = {c.get("Next"): json.dumps(c) for c in states["EndpointFound"]["Choices"]}
    assert '"Failed"' in found["DeleteFailedEndpoint"]
    for busy in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
        assert busy in found["EndpointBusy"]
    assert states["EndpointFound"]["Default"] == "EndpointUnusable"
    ready = states["EndpointReady?"]
    assert ready["Default"] == "EndpointNotReady"  # Failed, OutOfService, UpdateRollbackFailed, Deleting, ...
    polls = [c for c in ready["Choices"] if c["Next"] == "EndpointPoll"]
    assert polls and "Deleting" not in json.dumps(polls) and "Failed" not in json.dumps(polls)
    assert states["EndpointPoll"]["Choices"][0]["NumericLessThan"] == InfraSettings().endpoint_max_polls
    assert states["EndpointPoll"]["Default"] == "EndpointTimedOut"


def test_only_throttling_and_transient_errors_are_retried(definition, deploy_definition):
    assert "SageMaker.SageMakerException" in GENERIC_ERRORS and "SageMaker.AmazonSageMakerException" in GENERIC_ERRORS
    assert not set(FAIL_AT_ONCE) & set(GENERIC_ERRORS)
    for machine in (definition, deploy_definition):
        for name, state in machine["States"].items():
            if name.endswith(".Transient?"):
                causes = [c["StringMatches"] for c in state["Choices"][0]["And"][0]["Or"] if "StringMatches" in c]
                assert causes == TRANSIENT_CAUSES
                assert not any("Validation" in c or "LimitExceeded" in c for c in causes)
            for retry in state.get("Retry", []):
                assert not set(retry["ErrorEquals"]) & {"States.ALL", "States.TaskFailed"}, name


def test_config_clean_up_deletes_only_configs_tagged_as_this_stack(deploy_definition, infra_settings):
    processor = deploy_definition["States"]["DeleteSupersededConfigs"]["ItemProcessor"]["States"]
    assert processor["Superseded?"]["Default"] == "ReadTags"
    assert f"@.Key == '{infra_settings.tag_key}'" in processor["ReadTags"]["ResultSelector"]["stack.$"]
    assert processor["Tagged?"]["Default"] == "NotOurs"
    ours = processor["Ours?"]["Choices"][0]
    assert ours["StringEquals"] == synth.STACK and ours["Next"] == "DeleteEndpointConfig"


def test_the_invoke_lambda_answers_before_api_gateways_29_seconds():
    fn = next(r["Properties"] for k, r in synth.resources("AWS::Lambda::Function").items()
              if k.startswith("ServingApiInvoke"))
    env = {k: float(v) for k, v in fn["Environment"]["Variables"].items() if k.startswith("INVOKE_")}
    assert fn["Timeout"] < serving_api.API_INTEGRATION_TIMEOUT_SECONDS == 29
    assert env["INVOKE_MAX_ATTEMPTS"] == 1
    assert env["INVOKE_CONNECT_TIMEOUT"] + env["INVOKE_READ_TIMEOUT"] < fn["Timeout"]
    assert env["INVOKE_READ_TIMEOUT"] >= 20  # room for a serverless cold start


def test_the_image_source_holds_only_what_the_images_read(cdk_out):
    (source,) = [p for p in cdk_out.iterdir() if p.is_dir() and (p / "containers").is_dir()]
    assert sorted(p.name for p in source.iterdir()) == sorted(IMAGE_SOURCES)
    assert not list(source.rglob("__pycache__"))


def test_ecr_never_expires_a_tagged_image():
    for repo in synth.resources("AWS::ECR::Repository").values():
        rules = json.loads(repo["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert rules and all(r["selection"]["tagStatus"] == "untagged" for r in rules)
        assert repo["Properties"]["ImageTagMutability"] == "IMMUTABLE"


def test_get_bucket_location_has_no_prefix_condition():
    statements = iam.role_statements("RolesSageMakerExecution")
    (location,) = [s for s in statements if "s3:GetBucketLocation" in json.dumps(s["Action"])]
    assert "Condition" not in location
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert "s3:prefix" in json.dumps(listing["Condition"])


def test_state_machine_logs_are_vended_log_groups():
    groups = synth.resources("AWS::Logs::LogGroup")
    for machine in synth.resources("AWS::StepFunctions::StateMachine").values():
        destination = machine["Properties"].get("LoggingConfiguration", {}).get("Destinations")
        if not destination:
            continue
        group_id = destination[0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        name = json.dumps(groups[group_id]["Properties"]["LogGroupName"])
        assert STATE_MACHINE_LOG_PREFIX in name
