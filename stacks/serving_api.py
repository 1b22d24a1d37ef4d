"""Serving API: REST API `POST /forecast` (API key, JSON-schema validation, usage plan) -> invoke Lambda.

The Lambda's code is `lambdas/invoke/` (module app.py, function `handler`, env ENDPOINT_NAME), written
with Powertools for AWS Lambda (Python) v3. Powertools comes from the public Powertools layer (the ARN
is built with the stack's partition and region, so the stack stays environment-agnostic): nothing to
bundle at synth (no Docker, no pip), and the layer is the one AWS publishes and maintains. Its version
is a setting (`powertools_layer_version`).

Request body contract (the invoke Lambda's and the serving container's, pipeline_code/serving/request.py):
``periods`` an integer 1..max_periods or a decimal string such as "26" (strings are range-checked by
the Lambda), ``conf`` a number in (0, 1) or a decimal string such as "0.9", or ``quantiles``; optional
``history``; a panel model's ``item_id`` or ``item_ids``; or ``{"list_items": true, "offset", "limit"}``;
other properties are rejected. Gateway errors use the Lambda's error shape ``{"error": "..."}``; a body the
model refuses names the rule it broke (``VALIDATION_ERROR_TEMPLATE``).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from pipeline_code.engine.settings import MAX_ITEM_ID_LENGTH, MAX_PERIODS_ENV
from pipeline_code.serving.request import (
    CONF_PATTERN,
    INT_PATTERN,
    ITEM_ID_PATTERN,
    MAX_HISTORY,
    MAX_ITEMS,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    MAX_QUANTILES,
    QUANTILE_RANGE,
)
from stacks.compliance import acknowledge, cfn_lint_ignore, checkov_skip
from stacks.functions import PythonFunction, log_group
from stacks.roles import sagemaker_arn
from stacks.settings import InfraSettings

POWERTOOLS_ACCOUNT = "017000801446"
# API Gateway ends a REST integration after 29 s (a 504 the client cannot tell from a crash).
# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html
API_INTEGRATION_TIMEOUT_SECONDS = 29
# The invoke Lambda answers before that: its own timeout 1 s earlier, one InvokeEndpoint attempt whose
# connect + read timeouts leave a margin for the Lambda's own work. One attempt, not two: a retried read
# timeout would double the wait past the limit, and a serverless cold start (model setup) can take tens
# of seconds, so the single read gets as long as the budget allows; past it the client gets a 503 with
# Retry-After (the endpoint keeps warming up).
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html (cold starts)
INVOKE_LAMBDA_TIMEOUT_SECONDS = API_INTEGRATION_TIMEOUT_SECONDS - 1
INVOKE_CONNECT_TIMEOUT_SECONDS = 2
INVOKE_MARGIN_SECONDS = 2
INVOKE_READ_TIMEOUT_SECONDS = INVOKE_LAMBDA_TIMEOUT_SECONDS - INVOKE_CONNECT_TIMEOUT_SECONDS - INVOKE_MARGIN_SECONDS
INVOKE_MAX_ATTEMPTS = 1
STAGE_NAME = "v1"
# Gateway response templates are not VTL: only simple substitution of $context (and stage and method
# request) variables, so no $util function (escapeJavaScript, ...) can escape a value.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/customize-gateway-responses.html
# $context.error.messageString is "the quoted value of $context.error.message"; for a body the model
# refuses, that is only "Invalid request body", and the rules it broke are in
# $context.error.validationErrorString, "a string containing a detailed validation error message":
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html
# The docs say no more; as observed (not documented), it comes unquoted (unlike messageString), with its
# quotes and backslashes escaped as in a JSON string ([instance value (\"WOW\") not found in enum ...]),
# so it goes inside quotes (verify on a deployed stack after an API Gateway change), after
# $context.error.message (the constant "Invalid request body", no quotes to escape). BAD_REQUEST_PARAMETERS
# cannot occur: the method requires no parameters (DEFAULT_4XX would answer it).
ERROR_TEMPLATE = '{"error": $context.error.messageString}'
VALIDATION_ERROR_TEMPLATE = '{"error": "$context.error.message: $context.error.validationErrorString"}'
# Gateway responses in the {"error": "..."} shape; (type, status code or None for the type's default, template).
GATEWAY_RESPONSES = [
    (apigw.ResponseType.DEFAULT_4_XX, None, ERROR_TEMPLATE),
    (apigw.ResponseType.DEFAULT_5_XX, None, ERROR_TEMPLATE),
    (apigw.ResponseType.BAD_REQUEST_BODY, "400", VALIDATION_ERROR_TEMPLATE),
    (apigw.ResponseType.INVALID_API_KEY, "403", ERROR_TEMPLATE),
    (apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", ERROR_TEMPLATE),
    (apigw.ResponseType.THROTTLED, "429", ERROR_TEMPLATE),
    (apigw.ResponseType.QUOTA_EXCEEDED, "429", ERROR_TEMPLATE),
    (apigw.ResponseType.UNSUPPORTED_MEDIA_TYPE, "415", ERROR_TEMPLATE),
]


# The request rules of pipeline_code/serving/request.py (shared by the invoke Lambda and the serving
# app), enforced first at the gateway field by field: integers also as decimal strings ("26"), conf also
# as a decimal string ("0.9"), quantiles, item ids, the listing's fields, nothing else. The rules across
# fields (periods and conf or quantiles for a forecast, item_id or item_ids, list_items alone) are the
# Lambda's: API Gateway models are JSON Schema draft 4, and its documentation lists oneOf, anyOf and allOf
# among the keywords it does not support in models (imported definitions), so the model uses none.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/models-mappings-models.html
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-known-issues.html
INT_STRING = f"^({INT_PATTERN})$"
CONF_STRING = f"^{CONF_PATTERN}$"


def _integer_field(low: int, high: int, description: str) -> apigw.JsonSchema:
    return apigw.JsonSchema(
        type=[apigw.JsonSchemaType.NUMBER, apigw.JsonSchemaType.STRING],
        multiple_of=1,
        minimum=low,
        maximum=high,
        pattern=INT_STRING,
        max_length=64,
        description=description,
    )


def request_schema(settings: InfraSettings) -> apigw.JsonSchema:
    """Draft-4 schema; numeric strings pass here and are range-checked by the Lambda."""
    item_id = apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1, max_length=MAX_ITEM_ID_LENGTH,
                               pattern=ITEM_ID_PATTERN, description="a series of a panel model")
    return apigw.JsonSchema(
        schema=apigw.JsonSchemaVersion.DRAFT4,
        title="ForecastRequest",
        type=apigw.JsonSchemaType.OBJECT,
        additional_properties=False,
        properties={
            "periods": _integer_field(1, settings.max_periods, f"periods to forecast, 1..{settings.max_periods}"),
            "conf": apigw.JsonSchema(
                type=[apigw.JsonSchemaType.NUMBER, apigw.JsonSchemaType.STRING],
                minimum=0,
                exclusive_minimum=True,
                maximum=1,
                exclusive_maximum=True,
                pattern=CONF_STRING,
                max_length=64,
                description="confidence level of the interval, in (0, 1)",
            ),
            "quantiles": apigw.JsonSchema(
                type=apigw.JsonSchemaType.ARRAY, min_items=1, max_items=MAX_QUANTILES, unique_items=True,
                items=apigw.JsonSchema(type=apigw.JsonSchemaType.NUMBER, minimum=QUANTILE_RANGE[0],
                                       maximum=QUANTILE_RANGE[1]),
                description="quantiles to forecast instead of a conf interval (p10, p50, ...)",
            ),
            "history": _integer_field(0, MAX_HISTORY, "observed periods to return with the forecast"),
            "item_id": item_id,
            "item_ids": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1, max_items=MAX_ITEMS,
                                         unique_items=True, items=item_id,
                                         description="several series of a panel model"),
            "list_items": apigw.JsonSchema(type=apigw.JsonSchemaType.BOOLEAN, enum=[True],
                                           description="list a panel model's item ids"),
            "offset": _integer_field(0, MAX_OFFSET, "item ids to skip when listing"),
            "limit": _integer_field(1, MAX_LIST_LIMIT, "item ids per listing page"),
        },
    )


def powertools_layer_arn(settings: InfraSettings) -> str:
    runtime = "python313"
    return (
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{runtime}-x86_64:{settings.powertools_layer_version}"
    )


class ServingApi(Construct):
    """``api``, ``stage``, ``api_key``, ``usage_plan`` and the ``invoke`` function."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: InfraSettings) -> None:
        super().__init__(scope, construct_id)
        layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_layer_arn(settings))
        self.invoke = PythonFunction(
            self,
            "Invoke",
            settings=settings,
            name="invoke",
            description="forecast-mlops: POST /forecast -> InvokeEndpoint",
            timeout=Duration.seconds(INVOKE_LAMBDA_TIMEOUT_SECONDS),
            memory_size=256,
            layers=[layer],
            runtime=lambda_.Runtime.PYTHON_3_13,
            environment={
                "ENDPOINT_NAME": settings.endpoint_name,
                MAX_PERIODS_ENV: str(settings.max_periods),
                "INVOKE_CONNECT_TIMEOUT": str(INVOKE_CONNECT_TIMEOUT_SECONDS),
                "INVOKE_READ_TIMEOUT": str(INVOKE_READ_TIMEOUT_SECONDS),
                "INVOKE_MAX_ATTEMPTS": str(INVOKE_MAX_ATTEMPTS),
                "POWERTOOLS_SERVICE_NAME": "forecast-api",
                "POWERTOOLS_METRICS_NAMESPACE": "ForecastMlops",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            },
        )
        acknowledge(
            self.invoke.function,
            "Python 3.13: the newest runtime the pinned public Powertools v3 layer version is published for "
            "(the layer name carries the runtime); raise both together.",
            "AwsSolutions-L1",
        )
        self.invoke.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sagemaker:InvokeEndpoint"],
                resources=[sagemaker_arn(f"endpoint/{settings.endpoint_name}")],
            )
        )

        self.access_logs = log_group(self, "AccessLogs", settings)
        self.api = apigw.RestApi(
            self,
            "Api",
            description="forecast-mlops: forecasts from the deployed model",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Access logging needs the account's API Gateway CloudWatch Logs role ("CloudWatch Logs role
            # ARN must be set in account settings" otherwise). A fresh account has none: create it and
            # set it (AWS::ApiGateway::Account, kept on destroy), unless the account manages it centrally.
            # https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html
            cloud_watch_role=settings.api_gateway_cloudwatch_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if settings.api_gateway_cloudwatch_role else None,
            deploy=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=settings.api_rate_limit,
                throttling_burst_limit=settings.api_burst_limit,
            ),
        )
        self.stage = self.api.deployment_stage
        for response_type, status, template in GATEWAY_RESPONSES:
            self.api.add_gateway_response(
                f"Gw{response_type.response_type}",
                type=response_type,
                status_code=status,
                templates={"application/json": template},
            )

        model = self.api.add_model(
            "ForecastRequest",
            content_type="application/json",
            model_name="ForecastRequest",
            schema=request_schema(settings),
        )
        validator = self.api.add_request_validator(
            "BodyValidator", request_validator_name="forecast-body", validate_request_body=True,
            validate_request_parameters=True,
        )
        forecast = self.api.root.add_resource("forecast")
        self.method = forecast.add_method(
            "POST",
            apigw.LambdaIntegration(self.invoke.function, proxy=True),
            api_key_required=True,
            request_validator=validator,
            request_models={"application/json": model},
        )

        self.api_key = self.api.add_api_key("ApiKey", description="forecast-mlops client key")
        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            description="forecast-mlops clients",
            throttle=apigw.ThrottleSettings(rate_limit=settings.api_rate_limit, burst_limit=settings.api_burst_limit),
            quota=apigw.QuotaSettings(limit=settings.api_quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.stage)],
        )
        self.usage_plan.add_api_key(self.api_key)
        # A usage plan created before its stage fails with "Invalid API Stage". CDK 2.275 renders
        # ApiStages[].Stage as a Ref (an implicit dependency); older CDK versions rendered the stage name
        # as a plain string. Keep an explicit DependsOn so no CDK change can reorder them.
        self.usage_plan.node.default_child.node.add_dependency(self.stage.node.default_child)
        cfn_lint_ignore(self.usage_plan, "W3005", "Deliberate DependsOn on the stage (see above), also implied by the Ref.")

        acknowledge(
            self.api,
            "Clients authenticate with an API key bound to a usage plan (throttle + quota), by design: the "
            "API serves machine clients (the forecast-mlops CLI) without a user directory.",
            "AwsSolutions-APIG4", "AwsSolutions-COG4",
        )
        acknowledge(
            self.api,
            "A WAF web ACL costs more than this API's expected traffic; the usage plan throttles and caps "
            "each key, and the request body is validated at the gateway.",
            "AwsSolutions-APIG3",
        )
        acknowledge(
            self.api,
            "Execution logging would log request and response bodies; every request is in the access log "
            "(JSON) and the Lambda's own log.",
            "AwsSolutions-APIG6",
        )
        if settings.api_gateway_cloudwatch_role:
            acknowledge(
                self.api,
                "The API Gateway account role uses the AWS-managed AmazonAPIGatewayPushToCloudWatchLogs policy, "
                "the documented policy for this account-level role (API Gateway writes to log groups it names).",
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
            )
        checkov_skip(
            self.stage, "CKV_AWS_120",
            "Responses are forecasts of a model that changes on each deployment; caching would serve stale "
            "forecasts and costs per hour.",
        )
        checkov_skip(
            self.method, "CKV_AWS_59",
            "The method requires an API key (usage plan); checkov only counts authorizers.",
        )
