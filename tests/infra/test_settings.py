"""Typed settings: engine defaults reused, context overrides, validation."""

from __future__ import annotations

import json

import pytest

from pipeline_code.engine.settings import SearchSpace
from stacks.settings import InfraSettings


class Node:
    def __init__(self, context: dict):
        self.context = context

    def try_get_context(self, key):
        return self.context.get(key)


def test_defaults_come_from_the_engine_settings():
    s = InfraSettings()
    assert (s.freq, s.horizon, s.cv_window, s.cv_step, s.max_periods) == ("W-FRI", 26, 417, 1, 104)
    assert s.search_space == SearchSpace()
    assert s.processing_arguments() == ["--freq", "W-FRI", "--season-length", "52.17857", "--horizon", "26",
                                        "--cv-window", "417", "--cv-step", "1", "--eval-origins", "26"]
    assert s.tuning.max_jobs == 20 and s.tuning.max_parallel_jobs == 10 and s.tuning.strategy == "Bayesian"
    ranges = s.parameter_ranges()
    assert ranges["IntegerParameterRanges"] == [{"Name": "fourier_k", "MinValue": "1", "MaxValue": "10", "ScalingType": "Auto"}]
    assert [r["Values"] for r in ranges["CategoricalParameterRanges"]] == [["0", "1"]] * 3


def test_cdk_json_context_matches_the_defaults(repo_root):
    context = json.loads((repo_root / "cdk.json").read_text())["context"]
    assert InfraSettings.from_context(Node(context)) == InfraSettings()


def test_command_line_overrides_are_typed():
    s = InfraSettings.from_context(Node({
        "forecast-mlops": {"tuning": {"max_jobs": 8, "max_parallel_jobs": 4}},
        "forecast-mlops:approval_mode": "manual",
        "forecast-mlops:alarm_email": "ops@example.com",
        "forecast-mlops:serverless_memory_mb": "3072",
        "forecast-mlops:retain_data": "false",
    }))
    assert (s.approval_mode, s.alarm_email, s.serverless_memory_mb, s.retain_data) == ("manual", "ops@example.com", 3072, False)
    assert s.tuning.max_jobs == 8


@pytest.mark.parametrize("bad", [
    {"approval_mode": "sometimes"},
    {"serverless_memory_mb": 1500},
    {"tuning": {"max_jobs": 5, "max_parallel_jobs": 10}},
    {"tuning": {"max_runtime_seconds": 7200, "max_wait_seconds": 3600}},
    {"resource_prefix": "Way-Too-Long"},
    {"endpoint_name": "Upper"},
    {"alarm_email": "nobody"},
    {"search_space": {"fourier_k": [1, 3]}},
    {"task_max_attempts": 10},
    {"unknown": 1},
])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        InfraSettings.from_mapping(bad)
