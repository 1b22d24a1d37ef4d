"""CDK assertions per construct, on the one synthesized template."""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk.assertions import Match

from tests.infra import synth


def _props(type_: str) -> list[dict]:
    return [r.get("Properties", {}) for r in synth.resources(type_).values()]


def test_storage_bucket_is_versioned_private_ssl_only_logged_with_lifecycle_and_eventbridge(cfn_template):
    cfn_template.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "data-bucket/"},
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({
            "Id": "old-runs", "Prefix": "runs/", "Status": "Enabled"})])},
    })
    policies = json.dumps(_props("AWS::S3::BucketPolicy"))
    assert policies.count('"aws:SecureTransport": "false"') == 2  # data and log bucket


def test_images_repositories_scan_on_push_with_lifecycle_and_a_codebuild_build(cfn_template, template):
    cfn_template.resource_count_is("AWS::ECR::Repository", 2)
    cfn_template.all_resources_properties("AWS::ECR::Repository", {
        "ImageScanningConfiguration": {"ScanOnPush": True},
        "LifecyclePolicy": Match.object_like({"LifecyclePolicyText": Match.string_like_regexp("countNumber")}),
        "EmptyOnDelete": True,
    })
    project = _props("AWS::CodeBuild::Project")[0]
    assert project["Environment"]["PrivilegedMode"] is True
    spec = project["Source"]["BuildSpec"]
    assert "containers/training/Dockerfile" in spec and "containers/serving/Dockerfile" in spec
    cfn_template.resource_count_is("Custom::ForecastImages", 1)
    # The pipeline never runs before its images exist.
    pipeline = template["Resources"][synth.pipeline_logical_id()]
    image_build = next(iter(synth.resources("Custom::ForecastImages")))
    assert image_build in pipeline["DependsOn"]


def test_synth_stages_the_image_source_without_docker(cdk_out):
    assets = json.loads((cdk_out / f"{synth.STACK}.assets.json").read_text())
    assert assets.get("dockerImages", {}) == {}
    staged = [p for p in cdk_out.iterdir() if p.is_dir() and (p / "containers").is_dir()]
    assert len(staged) == 1
    source = staged[0]
    assert (source / "pipeline_code").is_dir()
    for excluded in (".venv", "node_modules", "cdk.out", ".git", "tests"):
        assert not (source / excluded).exists(), excluded


def test_pipeline_state_machine_is_logged_traced_and_uses_its_own_role(cfn_template, template):
    sm = template["Resources"][synth.pipeline_logical_id()]["Properties"]
    assert sm["TracingConfiguration"] == {"Enabled": True}
    assert sm["LoggingConfiguration"]["Level"] == "ALL"
    assert sm["RoleArn"]["Fn::GetAtt"][0].startswith("RolesStateMachine")


def test_trigger_rule_queues_raw_uploads_for_the_starter(cfn_template, template):
    cfn_template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.s3"], "detail-type": ["Object Created"],
                         "detail": {"bucket": {"name": [Match.any_value()]}, "object": {"key": [{"prefix": "raw/"}]}}},
        "Targets": [Match.object_like({"SqsParameters": {"MessageGroupId": "uploads"}})],
    })
    cfn_template.has_resource_properties("AWS::SQS::Queue", {
        "FifoQueue": True, "ContentBasedDeduplication": True,
        "RedrivePolicy": Match.object_like({"maxReceiveCount": Match.any_value()}),
    })
    cfn_template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "BatchSize": 1, "FunctionResponseTypes": ["ReportBatchItemFailures"]})


def test_serving_api_requires_a_key_validates_the_body_and_has_a_usage_plan(cfn_template, template):
    cfn_template.has_resource_properties("AWS::ApiGateway::Method", {
        "HttpMethod": "POST", "ApiKeyRequired": True, "RequestValidatorId": Match.any_value(),
        "RequestModels": {"application/json": Match.any_value()},
        "Integration": Match.object_like({"Type": "AWS_PROXY"}),
    })
    cfn_template.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestBody": True})
    model = _props("AWS::ApiGateway::Model")[0]["Schema"]
    # Forecasts and item listings share the body: periods and conf (or quantiles) are the Lambda's checks.
    assert "required" not in model and model["additionalProperties"] is False
    assert {"quantiles", "item_id", "item_ids", "list_items", "offset", "limit"} <= set(model["properties"])
    assert model["properties"]["item_ids"]["maxItems"] == 100 and "oneOf" not in json.dumps(model)
    assert model["properties"]["periods"]["maximum"] == 104
    assert model["properties"]["conf"]["exclusiveMinimum"] is True
    cfn_template.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "Throttle": {"RateLimit": 10, "BurstLimit": 20}, "Quota": {"Limit": 10000, "Period": "DAY"}})
    cfn_template.has_resource_properties("AWS::ApiGateway::Stage", {
        "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()})})
    responses = {r["ResponseType"]: r["ResponseTemplates"]["application/json"]
                 for r in _props("AWS::ApiGateway::GatewayResponse")}
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY", "THROTTLED", "QUOTA_EXCEEDED", "INVALID_API_KEY"} <= set(
        responses)
    body_template = responses.pop("BAD_REQUEST_BODY")
    assert set(responses.values()) == {'{"error": $context.error.messageString}'}
    # A body the model refuses names the rules it broke, not only "Invalid request body".
    assert body_template == '{"error": "$context.error.message: $context.error.validationErrorString"}'
    rendered = _gateway_render(body_template, "Invalid request body", VALIDATION_DETAIL)
    assert json.loads(rendered) == {"error": f"Invalid request body: {VALIDATION_DETAIL}"}


# Rules a body broke, as API Gateway's model validation reports them (quotes, and a backslash in the input).
VALIDATION_DETAIL = ('[instance value (false) not found in enum (possible values: [true]), '
                     'ECMA 262 regex "^[^\\u0000]+$" does not match input string "a\\"b"]')


def _gateway_render(template: str, message: str, detail: str) -> str:
    """A gateway response as API Gateway substitutes its variables (no VTL): messageString quoted and
    escaped, message as is, validationErrorString escaped but not quoted (as API Gateway sends it)."""
    return (template.replace("$context.error.messageString", json.dumps(message))
            .replace("$context.error.validationErrorString", json.dumps(detail)[1:-1])
            .replace("$context.error.message", message))


def test_the_invoke_lambda_runs_lambdas_invoke_with_the_powertools_layer(template):
    fn = next(r["Properties"] for k, r in synth.resources("AWS::Lambda::Function").items()
              if k.startswith("ServingApiInvoke"))
    assert fn["Handler"] == "app.handler"
    assert fn["Environment"]["Variables"]["ENDPOINT_NAME"] == "forecast-mlops"
    layer = json.dumps(fn["Layers"])
    assert "017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-x86_64" in layer
    assert "AWS::Region" in layer  # built with the stack's region (environment-agnostic)


def test_the_invoke_asset_carries_the_shared_request_rules_as_a_file(template, cdk_out):
    fn = next(r for k, r in synth.resources("AWS::Lambda::Function").items() if k.startswith("ServingApiInvoke"))
    asset = Path(cdk_out) / fn["Metadata"]["aws:asset:path"]
    shared = asset / "pipeline_code" / "serving" / "request.py"
    assert shared.is_file() and not shared.is_symlink()
    assert "def parse_request" in shared.read_text()


def test_every_lambda_has_its_own_role_and_log_group():
    functions = synth.resources("AWS::Lambda::Function")
    roles = [json.dumps(f["Properties"]["Role"]) for f in functions.values()]
    assert len(set(roles)) == len(roles)
    ours = [f for k, f in functions.items() if not k.startswith("ImagesProviderframework")]
    assert all("LoggingConfig" in f["Properties"] for f in ours)


def test_monitoring_alarms_go_to_the_topic_and_a_dashboard_exists(cfn_template):
    alarms = _props("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 8
    assert all(a["AlarmActions"] for a in alarms)
    names = json.dumps(alarms)
    for metric in ("ExecutionsFailed", "Errors", "5XXError", "Invocation5XXErrors", "ModelSetupTime"):
        assert metric in names, metric
    cfn_template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_cleanup_custom_resource_runs_before_the_state_machine_is_deleted(template):
    (lid, cleanup), = synth.resources("Custom::ForecastCleanup").items()
    assert synth.pipeline_logical_id() in cleanup["DependsOn"]


def test_outputs(template):
    assert {"ApiUrl", "ApiKeyId", "BucketName", "StateMachineArn", "EndpointName", "DeployStateMachineArn",
            "ModelPackageGroupName", "PreflightSettings"} <= set(template["Outputs"])


def test_the_stack_is_environment_agnostic(template):
    import re

    body = json.dumps({k: v for k, v in template.items() if k != "Conditions"})  # CDK's region table
    # 12 digits on their own (as in an ARN), not a run of digits inside an asset's hex hash
    accounts = set(re.findall(r"(?<![0-9a-fA-F])[0-9]{12}(?![0-9a-fA-F])", body)) - {"017000801446"}  # Powertools' layer account
    assert accounts == set()
    assert not re.search(r'"(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]"', body)


def test_the_image_build_waits_for_its_role_policy_and_fits_cloudformations_wait(template):
    """CloudFormation creates the build role's policy after the project (it names the project's log
    group): the build must depend on it, or StartBuild can run before the role may read the source.
    The build and its queueing fit in the hour CloudFormation waits for a custom resource."""
    from stacks.images import BUILD_MINUTES, QUEUED_MINUTES, WAIT_HOURS

    (build_id,) = synth.resources("Custom::ForecastImages")
    depends = template["Resources"][build_id]["DependsOn"]
    (project,) = _props("AWS::CodeBuild::Project")
    role = project["ServiceRole"]["Fn::GetAtt"][0]
    policies = [k for k, v in synth.resources("AWS::IAM::Policy").items() if {"Ref": role} in v["Properties"]["Roles"]]
    assert policies and set(policies) <= set(depends) and role in depends
    assert (project["TimeoutInMinutes"], project["QueuedTimeoutInMinutes"]) == (BUILD_MINUTES, QUEUED_MINUTES)
    assert BUILD_MINUTES + QUEUED_MINUTES + 1 <= 60 * WAIT_HOURS <= 60
