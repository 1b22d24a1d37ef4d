"""The forecast-mlops stack: composes one construct per concern."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from stacks.cleanup import Cleanup
from stacks.compliance import apply_stack_wide_checkov_skips
from stacks.images import Images
from stacks.monitoring import Monitoring, Notifications
from stacks.roles import PipelineRoles
from stacks.serving_api import ServingApi
from stacks.settings import InfraSettings
from stacks.storage import Storage
from stacks.training_pipeline import TrainingPipeline, model_package_group_name
from stacks.trigger import Trigger


class ForecastStack(Stack):
    """Environment-agnostic: synth needs no credentials and looks nothing up."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: InfraSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, stack_name=settings.stack_name,
                         description="forecast-mlops: retrain on upload, gate, register, serve", **kwargs)
        Tags.of(self).add("project", "forecast-mlops")
        self.settings = settings

        self.storage = Storage(self, "Storage", settings=settings)
        self.notifications = Notifications(self, "Notifications", settings=settings)
        self.images = Images(self, "Images", settings=settings)
        self.roles = PipelineRoles(
            self, "Roles", settings=settings, bucket=self.storage.bucket,
            repositories=[self.images.training_repository, self.images.serving_repository],
            topic=self.notifications.topic,
        )
        self.pipeline = TrainingPipeline(
            self, "Pipeline", settings=settings, bucket=self.storage.bucket,
            role=self.roles.state_machine_role, deploy_role=self.roles.deploy_role,
            sagemaker_role=self.roles.sagemaker_role,
            training_image=self.images.training_image_uri, serving_image=self.images.serving_image_uri,
            topic=self.notifications.topic, model_package_group=model_package_group_name(settings),
        )
        # No run may start before its images exist.
        self.pipeline.state_machine.node.add_dependency(self.images.build)
        self.pipeline.deploy_machine.node.add_dependency(self.images.build)
        self.trigger = Trigger(self, "Trigger", settings=settings, bucket=self.storage.bucket,
                               state_machine=self.pipeline.state_machine, topic=self.notifications.topic)
        self.api = ServingApi(self, "ServingApi", settings=settings)
        self.cleanup = Cleanup(self, "Cleanup", settings=settings, state_machine=self.pipeline.state_machine,
                               deploy_machine=self.pipeline.deploy_machine)
        self.monitoring = Monitoring(
            self, "Monitoring", settings=settings, topic=self.notifications.topic,
            state_machine=self.pipeline.state_machine,
            deploy_machine=self.pipeline.deploy_machine,
            functions={
                "Invoke": self.api.invoke.function,
                "StartRun": self.trigger.starter.function,
                "Cleanup": self.cleanup.handler.function,
            },
            api=self.api.api,
            dead_letter_queue=self.trigger.dead_letter_queue,
        )

        apply_stack_wide_checkov_skips(self)

        CfnOutput(self, "ApiUrl", value=f"{self.api.stage.url_for_path('/forecast')}",
                  description="POST forecasts here with the x-api-key header")
        CfnOutput(self, "ApiKeyId", value=self.api.api_key.key_id,
                  description="aws apigateway get-api-key --api-key <id> --include-value")
        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name,
                  description="upload CSVs to s3://<bucket>/raw/")
        CfnOutput(self, "StateMachineArn", value=self.pipeline.state_machine.state_machine_arn)
        CfnOutput(self, "DeployStateMachineArn", value=self.pipeline.deploy_machine.state_machine_arn,
                  description="deploys each model package approved in the registry")
        CfnOutput(self, "EndpointName", value=settings.endpoint_name)
        CfnOutput(self, "ModelPackageGroupName", value=self.pipeline.model_package_group,
                  description="the model registry group (created by the first run)")
        CfnOutput(self, "TopicArn", value=self.notifications.topic.topic_arn)
        CfnOutput(self, "PreflightSettings", value=json.dumps(settings.preflight(), sort_keys=True),
                  description="what `forecast-mlops doctor --stack` checks against the account's quotas")
