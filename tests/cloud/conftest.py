"""Fixtures of the emulated cloud tests: the default app, synthesized once per pytest run."""

from __future__ import annotations

import pytest

from tests.cloud.stack import SynthesizedStack, synthesize
from tests.cloud.world import CloudWorld


@pytest.fixture(scope="session")
def stack() -> SynthesizedStack:
    """The app as a plain `cdk synth` renders it: its tuning job runs 2 trials at once, on demand."""
    return synthesize()


@pytest.fixture
def world(stack: SynthesizedStack, monkeypatch: pytest.MonkeyPatch):
    with CloudWorld(stack, monkeypatch) as emulated:
        yield emulated
