"""The two state machines: the training pipeline (pipeline_definition.py) and the deploy machine
(deploy_definition.py) with the EventBridge rule that starts it when a model package is Approved."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Aws, Fn
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.compliance import REDUNDANT_DEPENDS_ON, cfn_lint_ignore
from stacks.deploy_definition import approval_event_pattern, build_deploy_definition
from stacks.functions import state_machine_log_group
from stacks.pipeline_definition import Refs, build_definition
from stacks.settings import InfraSettings


def state_machine(scope: Construct, construct_id: str, settings: InfraSettings, definition: dict[str, Any],
                  role: iam.IRole, log_name: str) -> sfn.StateMachine:
    """A standard, traced state machine logging ALL to its own group under /aws/vendedlogs/states/."""
    log_group = state_machine_log_group(scope, f"{construct_id}Logs", settings, log_name)
    machine = sfn.StateMachine(
        scope,
        construct_id,
        # json.dumps, not Stack.to_json_string: the latter drops `"ResultPath": null` (which must stay:
        # it keeps a task's input), while CDK still resolves the tokens embedded in the string.
        definition_body=sfn.DefinitionBody.from_string(json.dumps(definition)),
        role=role,
        state_machine_type=sfn.StateMachineType.STANDARD,
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
    )
    cfn_lint_ignore(machine, "W3005", REDUNDANT_DEPENDS_ON)
    return machine


class TrainingPipeline(Construct):
    """``state_machine`` (training), ``deploy_machine``, ``approval_rule``; ``definition`` and
    ``deploy_definition`` (the ASL as data, with tokens) and ``model_package_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        bucket: s3.IBucket,
        role: iam.IRole,
        deploy_role: iam.IRole,
        sagemaker_role: iam.IRole,
        training_image: str,
        serving_image: str,
        topic: sns.ITopic,
        model_package_group: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.model_package_group = model_package_group
        refs = Refs(
            bucket=bucket.bucket_name,
            sagemaker_role_arn=sagemaker_role.role_arn,
            training_image=training_image,
            serving_image=serving_image,
            topic_arn=topic.topic_arn,
            stack_name=Aws.STACK_NAME,
            model_package_group=model_package_group,
        )
        self.definition = build_definition(settings, refs)
        self.deploy_definition = build_deploy_definition(settings, refs)
        self.state_machine = state_machine(self, "StateMachine", settings, self.definition, role, "pipeline")
        self.deploy_machine = state_machine(self, "DeployMachine", settings, self.deploy_definition, deploy_role,
                                            "deploy")
        pattern = approval_event_pattern(model_package_group)
        self.approval_rule = events.Rule(
            self,
            "PackageApproved",
            description="forecast-mlops: a model package of our group became Approved -> deploy it",
            event_pattern=events.EventPattern(
                source=pattern["source"], detail_type=pattern["detail-type"], detail=pattern["detail"]
            ),
            targets=[targets.SfnStateMachine(self.deploy_machine, retry_attempts=10)],
        )


def model_package_group_name(settings: InfraSettings) -> str:
    """One registry per deployment: the stack id's UUID keeps a redeployed stack (whose retained old
    bucket its new roles cannot read) from inheriting the previous deployment's champion."""
    stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
    return f"{settings.model_package_group_prefix}-{stack_uuid}"
