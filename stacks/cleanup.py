"""Clean-up on `cdk destroy`: a custom resource whose Delete removes the pipeline's SageMaker resources.

It depends on the state machine, so CloudFormation deletes it (running the clean-up) before the state
machine and the roles. See lambdas/cleanup/app.py for what is deleted and how it is recognised (tag).
"""

from __future__ import annotations

from aws_cdk import Aws, CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks import naming
from stacks.compliance import acknowledge, logical_id
from stacks.functions import PythonFunction
from stacks.roles import sagemaker_arn
from stacks.settings import InfraSettings


class Cleanup(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: InfraSettings, state_machine: sfn.StateMachine,
        deploy_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = PythonFunction(
            self,
            "Handler",
            settings=settings,
            name="cleanup",
            description="forecast-mlops: on stack deletion, delete the endpoint, configs and models the pipeline made",
            timeout=Duration.minutes(10),
            environment={
                "STACK_NAME": Aws.STACK_NAME,
                "TAG_KEY": settings.tag_key,
                "RESOURCE_PREFIX": settings.resource_prefix,
                "ENDPOINT_NAME": settings.endpoint_name,
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                "DEPLOY_STATE_MACHINE_ARN": deploy_machine.state_machine_arn,
            },
        )
        endpoint = sagemaker_arn(f"endpoint/{settings.endpoint_name}")
        configs = sagemaker_arn(naming.sagemaker_arn_pattern(settings, "endpoint-config"))
        models = sagemaker_arn(naming.sagemaker_arn_pattern(settings, "model"))
        role = self.handler.role
        role.add_to_policy(iam.PolicyStatement(
            sid="List",
            actions=["sagemaker:ListEndpoints", "sagemaker:ListEndpointConfigs", "sagemaker:ListModels"],
            resources=["*"],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="ReadTags", actions=["sagemaker:ListTags"], resources=[endpoint, configs, models]
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="DeleteOurs",
            actions=["sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"],
            resources=[endpoint, configs, models],
        ))
        machines = (state_machine, deploy_machine)
        role.add_to_policy(iam.PolicyStatement(
            sid="Executions", actions=["states:ListExecutions"], resources=[m.state_machine_arn for m in machines]
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="StopExecutions",
            actions=["states:StopExecution"],
            resources=[
                f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{m.state_machine_name}:*"
                for m in machines
            ],
        ))
        acknowledge(
            role,
            "Deletes only our names (endpoint-config/model prefix) and stops only executions of our state "
            "machine; the List actions support no resource-level scoping.",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
            f"{naming.sagemaker_arn_pattern(settings, 'endpoint-config')}]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
            f"{naming.sagemaker_arn_pattern(settings, 'model')}]",
            *(f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
              f"<{logical_id(m)}.Name>:*]" for m in machines),
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.handler.function.function_arn,
            resource_type="Custom::ForecastCleanup",
            properties={"StackName": Aws.STACK_NAME, "EndpointName": settings.endpoint_name},
        )
        self.resource.node.add_dependency(state_machine, deploy_machine, self.handler.role)
