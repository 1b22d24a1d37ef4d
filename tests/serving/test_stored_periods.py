"""A model that stores its forecast path (statsforecast's families, or a combination holding one) serves
at most the periods it stores: a server allowed more still loads it, and a longer request is a 400 that
names the limit, not a refused model (503) or a 500."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline_code.engine.core.artifact import ModelArtifact
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.serving.answers import answer
from pipeline_code.serving.app import ModelHolder
from pipeline_code.serving.request import validate

from .conftest import post_json, start_server

STORED = 30


def path_copy(model_dir, target, *, combined: bool = False):
    """The harmonic artifact's own forecast stored as a ``path`` section of ``STORED`` steps (or as one
    member of an equal-weights combination with the harmonic section itself)."""
    artifact = ModelArtifact.load(model_dir)
    z, v = Forecaster(artifact).log_forecast(STORED)
    path = {"centre": z.tolist(), "variance": v.tolist()}
    if combined:
        members = [{"core": "path", "spec": {}, "parameters": path, "weight": 0.5},
                   {"core": artifact.core, "spec": artifact.spec, "parameters": artifact.parameters, "weight": 0.5}]
        section = {"core": "combination", "spec": {}, "family": "combination",
                   "parameters": {"members": members, "error_scale": artifact.parameters["error_scale"]}}
    else:
        section = {"core": "path", "spec": {}, "family": "theta",
                   "parameters": {**path, "error_scale": artifact.parameters["error_scale"]}}
    dataclasses.replace(artifact, **section).save(target)
    return target


@pytest.mark.parametrize("combined", [False, True])
def test_the_limit_is_the_stored_path(model_dir, tmp_path, combined):
    holder = ModelHolder(path_copy(model_dir, tmp_path / "model", combined=combined), max_periods=104)
    assert holder.refresh(), holder.error
    loaded = holder.current
    assert loaded.forecaster.stored_periods == STORED and loaded.info["max_periods"] == STORED
    status, body = answer(loaded, validate({"periods": STORED, "conf": 0.9}, max_periods=104))
    assert status == 200 and body.count(b'"timestamp"') == STORED
    status, body = answer(loaded, validate({"periods": STORED + 1, "conf": 0.9}, max_periods=104))
    assert status == 400 and f"at most {STORED}".encode() in body


def test_a_computed_model_has_no_limit_of_its_own(model_dir):
    forecaster = Forecaster(ModelArtifact.load(model_dir))
    assert forecaster.stored_periods is None and forecaster.periods_limit(500) == 500
    assert np.isfinite(forecaster.paths(500, 0.9)[2]).all()


def test_a_server_allowed_more_periods_serves_it(model_dir, tmp_path):
    folder = path_copy(model_dir, tmp_path / "model")
    srv = start_server(["serve", "--model", str(folder), "--max-periods", "200"], tmp_path)
    try:
        srv.wait_ready()
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 26, "conf": 0.9})
        assert status == 200 and len(doc["forecasts"]) == 26
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 100, "conf": 0.9})
        assert status == 400 and f"ask for at most {STORED}" in doc["error"]
        assert any(r.get("event") == "model_periods_limit" for r in srv.log_records())
    finally:
        srv.stop()
