"""The synthesized stack as the emulated cloud needs it: state machines, roles, Lambdas, event rules.

Everything is read from the CloudFormation template (CDK intrinsics rendered with tests/infra/synth.py's
fake account, region and names), so the harness follows whatever the stack declares.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cloud.policy import Policy
from tests.infra import synth


class Refs(dict):
    """Ref / GetAtt values; a resource the fakes do not name renders as a visible placeholder."""

    def __missing__(self, key: str) -> str:
        return f"unresolved:{key}"


@dataclass
class LambdaFunction:
    logical_id: str
    role: str  # the role's logical id
    environment: dict[str, str]
    code: Path  # the asset folder of the cloud assembly (what is deployed)
    handler: str


@dataclass
class SynthesizedStack:
    template: dict[str, Any]
    assembly: Path

    def __post_init__(self) -> None:
        self.refs = Refs(self._fake_refs())

    def _fake_refs(self) -> dict[str, str]:
        saved = synth.template
        synth.template = lambda: self.template  # fake_refs reads the resources of this template
        try:
            return synth.fake_refs()
        finally:
            synth.template = saved

    # ---- reading ----------------------------------------------------------------------------------
    def resources(self, type_: str | None = None) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if type_ is None or v["Type"] == type_}

    def resolve(self, value: Any) -> Any:
        return synth.resolve(value, self.refs)

    def definition(self, machine: str) -> dict[str, Any]:
        return json.loads(self.resolve(self.resources()[machine]["Properties"]["DefinitionString"]))

    def machine_role(self, machine: str) -> str:
        return self.resolve(self.resources()[machine]["Properties"]["RoleArn"]).rsplit("/", 1)[-1]

    def role_policy(self, role: str) -> Policy:
        """The identity policy of a role: its inline policies and every AWS::IAM::Policy attached to it."""
        statements: list[dict[str, Any]] = []
        for policy in self.resources("AWS::IAM::Policy").values():
            if any(r == {"Ref": role} for r in policy["Properties"].get("Roles", [])):
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
        for inline in self.resources()[role]["Properties"].get("Policies", []):
            statements += inline["PolicyDocument"]["Statement"]
        return Policy(role, self.resolve(statements))

    def lambda_function(self, env_var: str) -> LambdaFunction:
        """The (one) function whose environment has `env_var` and that the stack itself deploys."""
        for lid, res in self.resources("AWS::Lambda::Function").items():
            props = res["Properties"]
            variables = self.resolve(props.get("Environment", {}).get("Variables", {}))
            if env_var in variables and not lid.startswith("Cleanup"):
                return LambdaFunction(lid, self.resolve(props["Role"]).rsplit("/", 1)[-1], variables,
                                      self.assembly / res["Metadata"]["aws:asset:path"], props["Handler"])
        raise KeyError(f"no Lambda function with {env_var} in its environment")

    def event_rules(self) -> list[dict[str, Any]]:
        """EventBridge rules with their pattern and targets (ARN and role)."""
        return [self.resolve({"pattern": r["Properties"]["EventPattern"], "targets": r["Properties"].get("Targets", [])})
                for r in self.resources("AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]

    def bucket(self) -> str:
        return self.refs[next(k for k in self.resources("AWS::S3::Bucket") if k.startswith("StorageData"))]

    def topic_arn(self) -> str:
        return self.refs[next(iter(self.resources("AWS::SNS::Topic")))]

    def serving_images(self) -> set[str]:
        """The image URIs the stack registers (the serving image as the definitions name it)."""
        images: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    if k == "Image" and isinstance(v, str):
                        images.add(v)
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        for machine in self.resources("AWS::StepFunctions::StateMachine"):
            if machine.startswith(synth.PIPELINE_PREFIX.removesuffix("StateMachine")):
                walk(self.definition(machine))
        return images

    def with_definition(self, machine: str, definition: dict[str, Any]) -> "SynthesizedStack":
        """A copy whose state machine `machine` has this (already resolved) definition."""
        template = copy.deepcopy(self.template)
        template["Resources"][machine]["Properties"]["DefinitionString"] = json.dumps(definition)
        return SynthesizedStack(template, self.assembly)


def synthesize(context: dict[str, Any] | None = None) -> SynthesizedStack:
    """`cdk synth` with `-c forecast-mlops:<field>=<json>` per context entry (the default app: cached)."""
    if not context:
        return SynthesizedStack(synth.template(), synth.synth_dir())
    args: list[str] = []
    for key, value in context.items():
        args += ["-c", f"forecast-mlops:{key}={value if isinstance(value, str) else json.dumps(value)}"]
    outdir = synth.synthesized(*args)
    return SynthesizedStack(json.loads((outdir / f"{synth.STACK}.template.json").read_text()), outdir)
