"""`forecast-mlops doctor`: the account's quotas and API Gateway setting against the deployment's settings
(botocore Stubber: the exact calls, and answers shaped like the services')."""

from __future__ import annotations

import argparse
import json

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_code.cli import doctor
from stacks.settings import InfraSettings

REGION = "us-east-1"
DEFAULTS = InfraSettings()


def quota(name: str, value: float, code: str = "L-00000000") -> dict:
    return {"ServiceCode": "sagemaker", "ServiceName": "Amazon SageMaker", "QuotaCode": code,
            "QuotaName": name, "Value": value, "Unit": "None", "Adjustable": True, "GlobalQuota": False}


class FakeSession:
    """A boto3 session whose clients are stubbed; `stubs` by service name."""

    def __init__(self) -> None:
        real = boto3.session.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
        self.clients = {name: real.client(name) for name in ("service-quotas", "apigateway", "cloudformation")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}

    def client(self, name: str):
        return self.clients[name]

    def __enter__(self):
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc):
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()
            stub.deactivate()


def stub_quotas(session: FakeSession, defaults: list[dict], applied: list[dict]) -> None:
    sq = session.stubs["service-quotas"]
    sq.add_response("list_aws_default_service_quotas", {"Quotas": defaults[:1], "NextToken": "t"},
                    {"ServiceCode": "sagemaker"})
    sq.add_response("list_aws_default_service_quotas", {"Quotas": defaults[1:]},
                    {"ServiceCode": "sagemaker", "NextToken": "t"})
    sq.add_response("list_service_quotas", {"Quotas": applied}, {"ServiceCode": "sagemaker"})


def deployment(**changes) -> doctor.Deployment:
    return doctor.Deployment.from_mapping({**DEFAULTS.preflight(), **changes}, "test")


NEW_ACCOUNT = [
    quota("ml.m5.large for training job usage", 2, "L-TRAIN"),
    quota("ml.m5.large for spot training job usage", 0, "L-SPOT"),
    quota("ml.m5.large for processing job usage", 1, "L-PROC"),
    quota(doctor.SERVERLESS_CONCURRENCY_QUOTA, 10, "L-96300102"),
]


def test_the_default_settings_fit_a_new_accounts_quotas():
    with FakeSession() as session:
        stub_quotas(session, NEW_ACCOUNT, [])
        session.stubs["apigateway"].add_response("get_account", {})
        findings = doctor.diagnose(deployment(), session)
    assert all(f.ok for f in findings), [f.line() for f in findings]
    assert "the stack creates and sets it" in findings[-1].detail


def test_the_old_defaults_name_the_quota_to_raise_and_by_how_much():
    """Ten parallel spot jobs (the defaults before the review) against a new account."""
    with FakeSession() as session:
        stub_quotas(session, NEW_ACCOUNT, [quota("ml.m5.large for processing job usage", 0, "L-PROC")])
        session.stubs["apigateway"].add_response("get_account", {})
        findings = doctor.diagnose(deployment(max_parallel_jobs=10, use_spot=True), session)
    bad = {f.check: f.detail for f in findings if not f.ok}
    assert set(bad) == {"quota 'ml.m5.large for spot training job usage'", "quota 'ml.m5.large for processing job usage'"}
    spot = bad["quota 'ml.m5.large for spot training job usage'"]
    assert "is 0, needs 10: raise it by 10" in spot and spot.endswith("L-SPOT, or lower the setting")
    assert "is 0, needs 1" in bad["quota 'ml.m5.large for processing job usage'"]  # applied value wins


def test_a_panels_sharded_fit_needs_series_instances_processing_instances():
    with FakeSession() as session:
        stub_quotas(session, NEW_ACCOUNT, [])
        session.stubs["apigateway"].add_response("get_account", {})
        findings = doctor.diagnose(deployment(series_instances=4), session)
    (bad,) = [f for f in findings if not f.ok]
    assert bad.check == "quota 'ml.m5.large for processing job usage'"
    assert "is 1, needs 4: raise it by 3" in bad.detail and "series.instances = 4" in bad.detail
    # a stack deployed before the key was published: one instance, as its runs' default
    older = {k: v for k, v in DEFAULTS.preflight().items() if k != "series_instances"}
    assert doctor.Deployment.from_mapping(older, "older stack").series_instances == 1


def test_an_instance_type_without_a_quota_here_is_named():
    with FakeSession() as session:
        stub_quotas(session, NEW_ACCOUNT, [])
        session.stubs["apigateway"].add_response("get_account", {})
        findings = doctor.diagnose(deployment(training_instance_type="ml.m99.huge"), session)
    (bad,) = [f for f in findings if not f.ok]
    assert "ml.m99.huge for training job usage" in bad.check and "not found" in bad.detail


def test_a_centrally_managed_api_gateway_role_must_exist():
    with FakeSession() as session:
        session.stubs["apigateway"].add_response("get_account", {})
        missing = doctor.check_api_gateway(deployment(api_gateway_cloudwatch_role=False), session.client("apigateway"))
        session.stubs["apigateway"].add_response(
            "get_account", {"cloudwatchRoleArn": "arn:aws:iam::123456789012:role/central"})
        present = doctor.check_api_gateway(deployment(api_gateway_cloudwatch_role=False), session.client("apigateway"))
    assert not missing.ok and "api_gateway_cloudwatch_role" in missing.detail
    assert present.ok and "central" in present.detail


def test_doctor_reads_a_deployed_stacks_preflight_output_and_exits_1_on_a_shortfall(capsys):
    with FakeSession() as session:
        session.stubs["cloudformation"].add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": "ForecastMlops", "CreationTime": "2026-01-01T00:00:00Z",
                         "StackStatus": "CREATE_COMPLETE",
                         "Outputs": [{"OutputKey": doctor.PREFLIGHT_OUTPUT,
                                      "OutputValue": json.dumps({**DEFAULTS.preflight(), "max_parallel_jobs": 4})}]}]},
            {"StackName": "ForecastMlops"})
        stub_quotas(session, NEW_ACCOUNT, [])
        session.stubs["apigateway"].add_response("get_account", {})
        code = doctor.cmd_doctor(argparse.Namespace(stack="ForecastMlops", region=REGION, cdk_json=None), session)
    out = capsys.readouterr().out
    assert code == 1
    assert "[RAISE] quota 'ml.m5.large for training job usage': is 2, needs 4: raise it by 2" in out
    assert "1 to fix" in out


def test_doctor_reads_the_cdk_apps_settings_before_the_first_deploy(repo_root):
    assert doctor.deployment_from_cdk_json(repo_root / "cdk.json") == deployment()


def test_the_stack_publishes_the_preflight_settings(template):
    assert json.loads(template["Outputs"][doctor.PREFLIGHT_OUTPUT]["Value"]) == DEFAULTS.preflight()


def test_errors_are_named(tmp_path, capsys):
    code = doctor.cmd_doctor(argparse.Namespace(stack=None, region=REGION, cdk_json=tmp_path / "cdk.json"),
                             FakeSession())
    assert code == 2 and "no such file" in capsys.readouterr().err
    with pytest.raises(doctor.DoctorError, match="missing use_spot"):
        doctor.Deployment.from_mapping({k: v for k, v in DEFAULTS.preflight().items() if k != "use_spot"}, "x")
