"""Realistic mistakes in the synthesized stack, each applied to a copy of the template or definition.

`test_mutations.py` runs the emulated cloud on each mutated stack and asserts the harness notices
(a refused call, a failed execution, no served forecast or a forecast that differs), so each mistake
stays caught as the harness and the stack evolve.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pipeline_code.engine.settings import Settings
from tests.cloud.stack import SynthesizedStack

TOO_LONG = "x" * 257  # CustomerMetadataProperties values: at most 256 characters


def pipeline_machine(stack: SynthesizedStack) -> str:
    arn = stack.lambda_function("STATE_MACHINE_ARN").environment["STATE_MACHINE_ARN"]
    return next(lid for lid in stack.resources("AWS::StepFunctions::StateMachine") if stack.refs[lid] == arn)


def tasks(definition: dict[str, Any], resource_suffix: str) -> Iterator[dict[str, Any]]:
    """Every Task state (also inside Map/Parallel) whose Resource ends with `resource_suffix`."""
    def walk(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for state in states.values():
            if state.get("Type") == "Task" and state.get("Resource", "").endswith(resource_suffix):
                yield state
            if state.get("Type") == "Map":
                yield from walk((state.get("ItemProcessor") or state["Iterator"])["States"])
            for branch in state.get("Branches", []):
                yield from walk(branch["States"])

    yield from walk(definition["States"])


def _edit_definition(stack: SynthesizedStack, edit: Callable[[dict[str, Any]], int]) -> SynthesizedStack:
    machine = pipeline_machine(stack)
    definition = stack.definition(machine)
    assert edit(definition) > 0, "the mutation found nothing to change"
    return stack.with_definition(machine, definition)


def upload_read_to_runs(stack: SynthesizedStack, document: dict[str, Any]) -> SynthesizedStack:
    """The roles' read of the uploads (`raw/*`) scoped to `runs/*` instead."""
    template = copy.deepcopy(stack.template)
    changed = 0
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            text = json.dumps(resource["Properties"]["PolicyDocument"])
            if "/raw/*" in text:
                resource["Properties"]["PolicyDocument"] = json.loads(text.replace("/raw/*", "/runs/*"))
                changed += 1
    assert changed, "no policy reads raw/*"
    return SynthesizedStack(template, stack.assembly)


def tuned_range_renamed(stack: SynthesizedStack, document: dict[str, Any]) -> SynthesizedStack:
    """The tuning job's `family` range named `model_family` (literal ranges, or the ones the run
    document renders when the definition takes them from the execution input)."""
    def edit(definition: dict[str, Any]) -> int:
        count = 0
        for state in tasks(definition, "createHyperParameterTuningJob.sync"):
            config = state["Parameters"]["HyperParameterTuningJobConfig"]
            if "ParameterRanges.$" in config:
                config.pop("ParameterRanges.$")
                config["ParameterRanges"] = Settings().merged(document, "run document").parameter_ranges()
            for ranges in config["ParameterRanges"].values():
                for r in ranges:
                    if r["Name"] == "family":
                        r["Name"] = "model_family"
                        count += 1
        return count

    return _edit_definition(stack, edit)


def static_hyperparameter_renamed(stack: SynthesizedStack, document: dict[str, Any]) -> SynthesizedStack:
    """A static hyperparameter sent as `cv-window` (renamed from `cv_window`, or a stray one)."""
    def edit(definition: dict[str, Any]) -> int:
        count = 0
        for state in tasks(definition, "createHyperParameterTuningJob.sync"):
            static = state["Parameters"]["TrainingJobDefinition"].setdefault("StaticHyperParameters", {})
            value = static.pop("cv_window", str(Settings().merged(document, "run document").cv.window))
            static["cv-window"] = value
            count += 1
        return count

    return _edit_definition(stack, edit)


def package_without_image(stack: SynthesizedStack, document: dict[str, Any]) -> SynthesizedStack:
    """CreateModelPackage's inference container without its Image."""
    def edit(definition: dict[str, Any]) -> int:
        count = 0
        for state in tasks(definition, "sagemaker:createModelPackage"):
            for container in state["Parameters"]["InferenceSpecification"]["Containers"]:
                count += container.pop("Image", None) is not None
        return count

    return _edit_definition(stack, edit)


def metadata_value_too_long(stack: SynthesizedStack, document: dict[str, Any]) -> SynthesizedStack:
    """A CustomerMetadataProperties value of 257 characters (in the package metadata the registration
    passes on)."""
    def edit(definition: dict[str, Any]) -> int:
        count = 0
        for state in definition["States"].values():
            if state.get("ResultPath") == "$.packageMetadata":
                state["Parameters"]["note"] = TOO_LONG
                count += 1
        return count

    return _edit_definition(stack, edit)


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[SynthesizedStack, dict[str, Any]], SynthesizedStack]


MUTATIONS = [
    Mutation("upload read raw/* -> runs/*", upload_read_to_runs),
    Mutation("tuned range family -> model_family", tuned_range_renamed),
    Mutation("static hyperparameter cv_window -> cv-window", static_hyperparameter_renamed),
    Mutation("CreateModelPackage without an image", package_without_image),
    Mutation("CustomerMetadataProperties value over 256 characters", metadata_value_too_long),
]
