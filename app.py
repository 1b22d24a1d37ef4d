#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth` / `npx cdk deploy` (settings from the `forecast-mlops` context).

Environment-agnostic: no account or region is resolved at synth, no lookups, no AWS calls.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.forecast_stack import ForecastStack
from stacks.settings import InfraSettings


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, ForecastStack]:
    app = app or cdk.App()
    settings = InfraSettings.from_context(app.node)
    stack = ForecastStack(app, "ForecastMlops", settings=settings)
    # cdk-nag on every synth: an unacknowledged AwsSolutions finding fails `cdk synth`.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    app, _ = build_app()
    app.synth()
