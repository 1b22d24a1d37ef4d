"""Training pipeline: the Step Functions state machine of DESIGN.md (definition in pipeline_definition.py)."""

from __future__ import annotations

import json

from aws_cdk import Aws, Fn
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.compliance import REDUNDANT_DEPENDS_ON, cfn_lint_ignore
from stacks.functions import log_group
from stacks.pipeline_definition import Refs, build_definition
from stacks.settings import InfraSettings


class TrainingPipeline(Construct):
    """``state_machine``; ``definition`` (the ASL as data, with tokens) and ``model_package_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        bucket: s3.IBucket,
        role: iam.IRole,
        sagemaker_role: iam.IRole,
        training_image: str,
        serving_image: str,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        # One registry per deployment: the stack id's UUID keeps a redeployed stack (whose retained old
        # bucket its new roles cannot read) from inheriting the previous deployment's champion.
        stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
        self.model_package_group = f"{settings.model_package_group_prefix}-{stack_uuid}"
        self.definition = build_definition(
            settings,
            Refs(
                bucket=bucket.bucket_name,
                sagemaker_role_arn=sagemaker_role.role_arn,
                training_image=training_image,
                serving_image=serving_image,
                topic_arn=topic.topic_arn,
                stack_name=Aws.STACK_NAME,
                model_package_group=self.model_package_group,
            ),
        )
        self.log_group = log_group(self, "Logs", settings)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # json.dumps, not Stack.to_json_string: the latter drops `"ResultPath": null` (which must stay:
            # it keeps a task's input), while CDK still resolves the tokens embedded in the string.
            definition_body=sfn.DefinitionBody.from_string(json.dumps(self.definition)),
            role=role,
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        cfn_lint_ignore(self.state_machine, "W3005", REDUNDANT_DEPENDS_ON)
