"""Regression tests for failures this kind of stack is known for."""

from __future__ import annotations

import re

from stacks.settings import HPO_NAME_MAX, RUN_ID_MAX, SAGEMAKER_NAME_MAX
from tests.infra import synth

NAME_FIELDS = {
    "ProcessingJobName.$": SAGEMAKER_NAME_MAX,
    "HyperParameterTuningJobName.$": HPO_NAME_MAX,
    "ModelName.$": SAGEMAKER_NAME_MAX,
    "EndpointConfigName.$": SAGEMAKER_NAME_MAX,
}
FORMAT = re.compile(r"^States\.Format\('([^']*)', \$\$\.Execution\.Name, \$\$\.State\.RetryCount\)$")


def test_usage_plan_is_never_created_before_its_stage(template):
    """'Invalid API Stage': the plan must depend on the stage resource."""
    (stage_id,) = synth.resources("AWS::ApiGateway::Stage")
    (plan_id, plan), = synth.resources("AWS::ApiGateway::UsagePlan").items()
    assert stage_id in plan.get("DependsOn", [])
    assert plan["Properties"]["ApiStages"][0]["Stage"] == {"Ref": stage_id}


def test_job_names_include_the_retry_count_and_fit_sagemaker_limits(definition):
    """Names are rendered from the synthesized ASL with the longest run id and the highest retry count."""
    checked = 0
    for name, state in definition["States"].items():
        params = state.get("Parameters", {})
        if ":create" not in state.get("Resource", ""):
            continue
        for field, limit in NAME_FIELDS.items():
            if field not in params or not params[field].startswith("States.Format"):
                continue  # a reference to a name created earlier (e.g. CreateEndpoint's config)
            match = FORMAT.match(params[field])
            assert match, f"{name}.{field} must be States.Format(..., $$.Execution.Name, $$.State.RetryCount)"
            template = match.group(1)
            retries = max(r["MaxAttempts"] for r in state["Retry"])
            assert retries <= 9
            longest = template.replace("{}", "r" * RUN_ID_MAX, 1).replace("{}", str(retries), 1)
            assert len(longest) <= limit, (name, longest)
            renders = {template.replace("{}", "run", 1).replace("{}", str(n), 1) for n in range(retries + 1)}
            assert len(renders) == retries + 1  # every attempt has its own name
            checked += 1
    assert checked == 5
    # SageMaker names the tuning job's training jobs `<tuning job>-NNN-xxxxxxxx`: still <= 63.
    assert HPO_NAME_MAX + len("-001-abcdef12") <= SAGEMAKER_NAME_MAX


def test_first_run_with_an_empty_registry_creates_the_group(definition):
    ensure = definition["States"]["EnsureRegistry"]
    assert ensure["Resource"].endswith("sagemaker:describeModelPackageGroup")
    assert ensure["Catch"][0]["Next"] == "CreateRegistry"
    assert definition["States"]["CreateRegistry"]["Next"] == "FindChampion"
    has_champion = definition["States"]["HasChampion?"]
    assert has_champion["Default"] == "InputsWithoutChampion"


def test_first_run_creates_the_endpoint_when_describe_says_it_is_missing(definition):
    find = definition["States"]["FindEndpoint"]
    assert find["Catch"][0]["Next"] == "EndpointExists?"
    choice = definition["States"]["EndpointExists?"]
    assert choice["Choices"][0]["Next"] == "CreateEndpoint"
    assert choice["Default"] == "NotifyFailure"
    assert definition["States"]["FindEndpoint"]["Next"] == "UpdateEndpoint"


def test_every_task_retries_with_backoff_and_catches_to_notify(definition):
    for name, state in definition["States"].items():
        if state["Type"] != "Task":
            continue
        assert state["Retry"] and all(r["BackoffRate"] > 1 for r in state["Retry"]), name
        if name == "NotifyFailure":
            assert state["Catch"][0]["Next"] == "RunFailed"
        else:
            assert state["Catch"][0]["Next"] in ("NotifyFailure", "CreateRegistry", "EndpointExists?"), name
    assert definition["States"]["NotifyFailure"]["Next"] == "RunFailed"
    assert definition["States"]["RunFailed"]["Type"] == "Fail"


def test_result_path_null_survives_synthesis(definition):
    """Stack.to_json_string drops None: `ResultPath: null` must reach the template (it keeps the input)."""
    assert "ResultPath" in definition["States"]["SnapshotInput"]
    assert definition["States"]["SnapshotInput"]["ResultPath"] is None


def test_superseded_configs_are_deleted_only_after_in_service(definition):
    ready = definition["States"]["EndpointReady?"]
    to_cleanup = [c for c in ready["Choices"] if c["Next"] == "ListEndpointConfigs"]
    assert to_cleanup and to_cleanup[0]["And"][0] == {"Variable": "$.endpoint.status", "StringEquals": "InService"}
    assert definition["States"]["ListEndpointConfigs"]["Next"] == "DeleteSupersededConfigs"
