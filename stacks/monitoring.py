"""Monitoring: the notification topic, alarms to it, and a CloudWatch dashboard."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.compliance import acknowledge, checkov_skip
from stacks.settings import InfraSettings

# Serverless endpoints report ModelSetupTime in microseconds; alarm when a cold start takes > 2 min.
MODEL_SETUP_ALARM_MICROSECONDS = 120 * 1_000_000


class Notifications(Construct):
    """``topic``: run results and alarms; an e-mail subscription when `alarm_email` is set."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: InfraSettings) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Topic", display_name="forecast-mlops", enforce_ssl=True)
        # The SSL-only topic policy replaces SNS's default policy, so CloudWatch alarms need their own
        # grant, limited to alarms of this account (confused-deputy conditions).
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html
        # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cross-service-confused-deputy-prevention.html
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"},
                },
            )
        )
        if settings.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(settings.alarm_email))
        reason = (
            "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed SNS key, and the "
            "messages (run ids, metric values, error names) are not sensitive; a customer key would cost "
            "more than the rest of the idle stack."
        )
        acknowledge(self.topic, reason, "AwsSolutions-SNS2")
        checkov_skip(self.topic, "CKV_AWS_26", reason)


class Monitoring(Construct):
    """Alarms (failed runs, Lambda errors, API 5xx, endpoint errors and setup time, dead letters) + dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        topic: sns.ITopic,
        state_machine: sfn.StateMachine,
        deploy_machine: sfn.StateMachine,
        functions: dict[str, lambda_.IFunction],
        api: apigw.RestApi,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        action = cw_actions.SnsAction(topic)
        period = Duration.minutes(5)
        self.alarms: list[cw.Alarm] = []

        def alarm(name: str, metric: cw.IMetric, threshold: float, description: str,
                  op: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD) -> cw.Alarm:
            a = cw.Alarm(
                self, name, metric=metric, threshold=threshold, evaluation_periods=1, comparison_operator=op,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING, alarm_description=description,
            )
            a.add_alarm_action(action)
            self.alarms.append(a)
            return a

        alarm("RunsFailed", state_machine.metric_failed(period=period, statistic="Sum"), 1,
              "A training run failed (see the run's SNS message and execution history).")
        alarm("RunsTimedOut", state_machine.metric_timed_out(period=period, statistic="Sum"), 1,
              "A training run timed out.")
        alarm("DeploysFailed", deploy_machine.metric_failed(period=period, statistic="Sum"), 1,
              "Deploying an approved model package failed (see the SNS message and execution history).")
        for name, fn in functions.items():
            alarm(f"{name}Errors", fn.metric_errors(period=period, statistic="Sum"), 1, f"The {name} Lambda failed.")
        alarm("Api5xx", api.metric_server_error(period=period, statistic="Sum"), 5,
              "The forecast API answered 5xx (endpoint missing, failing or throttled upstream).")
        endpoint_dims = {"EndpointName": settings.endpoint_name, "VariantName": "AllTraffic"}
        invocation_errors = cw.MathExpression(
            expression="e4 + e5",
            using_metrics={
                "e4": cw.Metric(namespace="AWS/SageMaker", metric_name="Invocation4XXErrors",
                                dimensions_map=endpoint_dims, statistic="Sum", period=period),
                "e5": cw.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors",
                                dimensions_map=endpoint_dims, statistic="Sum", period=period),
            },
            label="endpoint invocation errors",
            period=period,
        )
        alarm("EndpointInvocationErrors", invocation_errors, 5, "The serverless endpoint returned errors.")
        model_setup = cw.Metric(namespace="AWS/SageMaker", metric_name="ModelSetupTime",
                                dimensions_map=endpoint_dims, statistic="Maximum", period=period)
        alarm("EndpointModelSetupTime", model_setup, MODEL_SETUP_ALARM_MICROSECONDS,
              "A serverless cold start (ModelSetupTime) took more than 2 minutes.")
        alarm("UploadsDeadLettered",
              dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"), 1,
              "An upload could not start a run for too long and was dead-lettered.")

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Training runs", left=[
                state_machine.metric_started(period=Duration.hours(1)),
                state_machine.metric_succeeded(period=Duration.hours(1)),
                state_machine.metric_failed(period=Duration.hours(1)),
            ]),
            cw.GraphWidget(title="API requests and errors", left=[
                api.metric_count(period=period), api.metric_client_error(period=period),
                api.metric_server_error(period=period),
            ], right=[api.metric_latency(period=period, statistic="p90")]),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Endpoint", left=[
                cw.Metric(namespace="AWS/SageMaker", metric_name="Invocations", dimensions_map=endpoint_dims,
                          statistic="Sum", period=period),
                invocation_errors,
            ], right=[
                cw.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions_map=endpoint_dims,
                          statistic="p90", period=period),
                model_setup,
            ]),
            cw.GraphWidget(title="Lambdas: errors", left=[
                fn.metric_errors(period=period, statistic="Sum") for fn in functions.values()
            ]),
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms),
        )
