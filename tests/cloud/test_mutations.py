"""Each realistic mistake in the stack (tests/cloud/mutations.py) is noticed by the emulated cloud run."""

from __future__ import annotations

import pytest

from tests.cloud.mutations import MUTATIONS
from tests.cloud.scenario import upload_and_serve
from tests.cloud.series import MONTHLY
from tests.cloud.world import CloudWorld

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_emulated_cloud_catches(mutation, stack, monkeypatch):
    mutated = mutation.apply(stack, MONTHLY["settings"])
    with CloudWorld(mutated, monkeypatch) as world:
        run = upload_and_serve(world, MONTHLY)
    assert run.problems(), f"{mutation.name}: a forecast was served and nothing was refused"
