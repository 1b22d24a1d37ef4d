"""Fixtures of the emulated cloud tests: the app synthesized once with a small tuning job."""

from __future__ import annotations

import pytest

from tests.cloud.series import TUNING
from tests.cloud.stack import SynthesizedStack, synthesize
from tests.cloud.world import CloudWorld


@pytest.fixture(scope="session")
def stack() -> SynthesizedStack:
    """The app as `cdk synth -c forecast-mlops:tuning=<TUNING>` renders it."""
    return synthesize({"tuning": TUNING})


@pytest.fixture
def world(stack: SynthesizedStack, monkeypatch: pytest.MonkeyPatch):
    with CloudWorld(stack, monkeypatch) as emulated:
        yield emulated
