"""Regression tests for failures this kind of stack is known for."""

from __future__ import annotations

import re

from stacks.asl import GENERIC_ERRORS
from stacks.settings import HPO_NAME_MAX, MAX_TRANSIENT_RETRIES, RUN_ID_MAX, SAGEMAKER_NAME_MAX
from tests.infra import synth

NAME_FIELDS = {
    "ProcessingJobName.$": SAGEMAKER_NAME_MAX,
    "HyperParameterTuningJobName.$": HPO_NAME_MAX,
}
FORMAT = re.compile(r"^States\.Format\('([^']*)', \$\$\.Execution\.Name, \$\.retries\.count\)$")


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
            if field not in params:
                continue
            match = FORMAT.match(params[field])
            assert match, f"{name}.{field} must be States.Format(..., $$.Execution.Name, $.retries.count)"
            template = match.group(1)
            longest = template.replace("{}", "r" * RUN_ID_MAX, 1).replace("{}", str(MAX_TRANSIENT_RETRIES), 1)
            assert len(longest) <= limit, (name, longest)
            renders = {template.replace("{}", "run", 1).replace("{}", str(n), 1) for n in range(10)}
            assert len(renders) == 10  # every retry has its own name
            checked += 1
    assert checked == 5  # Preprocess, Tune, FitShards, Select, Evaluate
    # SageMaker names the tuning job's training jobs `<tuning job>-NNN-xxxxxxxx`: still <= 63.
    assert HPO_NAME_MAX + len("-001-abcdef12") <= SAGEMAKER_NAME_MAX


def test_deploy_names_are_the_packages_so_a_repeated_deploy_finds_them(deploy_definition, infra_settings):
    names = deploy_definition["States"]["Names"]["Parameters"]
    prefix = infra_settings.resource_prefix
    assert names["model.$"] == f"States.Format('{prefix}-{{}}-v{{}}-m', $.package.runId, $.package.version)"
    assert names["config.$"] == f"States.Format('{prefix}-{{}}-v{{}}-c', $.package.runId, $.package.version)"
    for create in ("CreateModel", "CreateEndpointConfig"):
        exists = deploy_definition["States"][create]["Catch"][-1]["Next"]
        assert deploy_definition["States"][exists]["Choices"][0]["StringMatches"] == "*already exist*"


def test_first_run_with_an_empty_registry_creates_the_group(definition):
    ensure = definition["States"]["EnsureRegistry"]
    assert ensure["Resource"].endswith("sagemaker:describeModelPackageGroup")
    assert ensure["Catch"][-1]["Next"] == "CreateRegistry"
    assert definition["States"]["CreateRegistry"]["Next"] == "FindChampion"
    has_champion = definition["States"]["HasChampion?"]
    assert has_champion["Default"] == "InputsWithoutChampion"


def test_first_deploy_creates_the_endpoint_when_describe_says_it_is_missing(deploy_definition):
    states = deploy_definition["States"]
    assert states["FindEndpoint"]["Catch"][-1]["Next"] == "EndpointExists?"
    choice = states["EndpointExists?"]
    assert choice["Choices"][0] == {"Variable": "$.error.Cause", "StringMatches": "*Could not find endpoint*",
                                    "Next": "CreateEndpoint"}
    assert choice["Default"] == "NotifyFailure"


def _top_level_tasks(definition):
    return {n: s for n, s in definition["States"].items() if s["Type"] == "Task"}


def test_every_task_loops_on_transient_errors_and_catches_the_rest(definition, deploy_definition):
    for machine in (definition, deploy_definition):
        for name, state in _top_level_tasks(machine).items():
            if name == "NotifyFailure":
                assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": None,
                                           "Next": state["Next"]}]
                continue
            assert "Retry" not in state, name
            transient, rest = state["Catch"]
            assert set(GENERIC_ERRORS) <= set(transient["ErrorEquals"]), name
            assert transient["Next"] == f"{name}.Transient?"
            assert rest["ErrorEquals"] == ["States.ALL"]
            check = machine["States"][f"{name}.Transient?"]
            assert check["Default"] == rest["Next"], name
            assert machine["States"][check["Choices"][0]["Next"]]["SecondsPath"] == "$.retries.wait"
        assert machine["States"]["NotifyFailure"]["Next"] in ("RunFailed", "DeployFailed")


def test_result_path_null_survives_synthesis(definition):
    """Stack.to_json_string drops None: `ResultPath: null` must reach the template (it keeps the input)."""
    assert "ResultPath" in definition["States"]["SnapshotInput"]
    assert definition["States"]["SnapshotInput"]["ResultPath"] is None


def test_superseded_configs_are_deleted_only_after_in_service(deploy_definition):
    ready = deploy_definition["States"]["EndpointReady?"]
    to_cleanup = [c for c in ready["Choices"] if c["Next"] == "ListEndpointConfigs"]
    assert to_cleanup and to_cleanup[0]["And"][0] == {"Variable": "$.endpoint.status", "StringEquals": "InService"}
    assert deploy_definition["States"]["ListEndpointConfigs"]["Next"] == "DeleteSupersededConfigs"
