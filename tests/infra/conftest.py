"""Session fixtures of the infrastructure tests: one synthesis of the app, shared by every test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.infra import synth

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.fixture(scope="session")
def cdk_out():
    """The cloud assembly of one `cdk synth` by the pinned CLI (in pytest's base folder, which pytest prunes)."""
    return synth.synth_dir()


@pytest.fixture(scope="session")
def template(cdk_out: Path) -> dict[str, Any]:
    return synth.template()


@pytest.fixture(scope="session")
def cfn_template(template: dict[str, Any]):
    """The same template for `aws_cdk.assertions` (no second synthesis)."""
    from aws_cdk.assertions import Template

    return Template.from_json(template)


@pytest.fixture(scope="session")
def definition(cdk_out: Path) -> dict[str, Any]:
    """The pipeline's ASL with the CloudFormation references rendered to fake values."""
    return synth.pipeline_definition()


@pytest.fixture(scope="session")
def deploy_definition(cdk_out: Path) -> dict[str, Any]:
    """The deploy state machine's ASL, rendered the same way."""
    return synth.deploy_definition()


@pytest.fixture(scope="session")
def infra_settings():
    from stacks.settings import InfraSettings

    return InfraSettings()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return synth.REPO
