"""Typed settings: the deployment's layer of the run document, context overrides, validation."""

from __future__ import annotations

import json

import pytest

from pipeline_code.engine.settings import Settings
from stacks.settings import InfraSettings


class Node:
    def __init__(self, context: dict):
        self.context = context

    def try_get_context(self, key):
        return self.context.get(key)


def test_the_deployment_layer_is_a_run_document_over_the_engine_defaults():
    s = InfraSettings()
    assert s.run == {} and s.run_defaults == Settings() and s.max_periods == Settings().serve.max_periods
    monthly = InfraSettings.from_mapping({"run": {"data": {"freq": "MS", "season_length": 12, "horizon": 12},
                                                  "serve": {"max_periods": 36}}})
    assert (monthly.run_defaults.data.freq, monthly.run_defaults.data.horizon, monthly.max_periods) == ("MS", 12, 36)
    # A new account can run it: few parallel jobs, no spot (spot quotas start at 0).
    assert s.tuning.max_parallel_jobs == 2 and s.tuning.use_spot is False


def test_a_bad_deployment_layer_names_the_key():
    with pytest.raises(ValueError, match=r"run\.cv\.window: expected an integer"):
        InfraSettings.from_mapping({"run": {"cv": {"window": "long"}}})
    with pytest.raises(ValueError, match=r"run\.data\.horizon: 200 exceeds serve\.max_periods"):
        InfraSettings.from_mapping({"run": {"data": {"horizon": 200}}})


def test_cdk_json_context_matches_the_defaults(repo_root):
    context = json.loads((repo_root / "cdk.json").read_text())["context"]
    assert InfraSettings.from_context(Node(context)) == InfraSettings()


def test_command_line_overrides_are_typed():
    s = InfraSettings.from_context(Node({
        "forecast-mlops": {"tuning": {"max_parallel_jobs": 4}},
        "forecast-mlops:approval_mode": "manual",
        "forecast-mlops:alarm_email": "ops@example.com",
        "forecast-mlops:serverless_memory_mb": "3072",
        "forecast-mlops:retain_data": "false",
    }))
    assert (s.approval_mode, s.alarm_email, s.serverless_memory_mb, s.retain_data) == ("manual", "ops@example.com", 3072, False)
    assert s.tuning.max_parallel_jobs == 4


@pytest.mark.parametrize("bad", [
    {"approval_mode": "sometimes"},
    {"serverless_memory_mb": 1500},
    {"tuning": {"max_parallel_jobs": 0}},
    {"tuning": {"max_jobs": 20}},  # the Grid's size is the run document's, not a setting
    {"tuning": {"use_spot": True, "max_runtime_seconds": 7200, "max_wait_seconds": 3600}},
    {"resource_prefix": "Way-Too-Long"},
    {"endpoint_name": "Upper"},
    {"alarm_email": "nobody"},
    {"run": {"search": {"fourier_k": [0]}}},
    {"run": {"data": {"frequency": "MS"}}},
    {"run": []},
    {"max_transient_retries": 10},
    {"unknown": 1},
])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        InfraSettings.from_mapping(bad)
