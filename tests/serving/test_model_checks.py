"""What the server tells clients about its model: a model that cannot forecast is refused at load (the
current one keeps serving, /ping stays truthful), and no response body holds a server path."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import http, post_json, start_server

BODY = {"periods": 3, "conf": 0.9}


def broken_copy(model_dir, target, parameter: str):
    """A valid JSON artifact whose forecasts are not finite: an intercept that overflows exp() at every
    step, or an explosive AR coefficient that overflows only after a few steps."""
    shutil.copytree(model_dir, target, dirs_exist_ok=True)
    document = json.loads((model_dir / "model.json").read_text())
    if parameter == "intercept":
        document["parameters"]["beta"][0] += 1000.0
    else:
        document["parameters"]["phi"][0] = 3.0
    (target / "model.json").write_text(json.dumps(document))
    return target


@pytest.mark.parametrize("parameter", ["intercept", "explosive-ar"])
def test_a_model_that_cannot_forecast_is_refused(model_dir, tmp_path, parameter):
    folder = broken_copy(model_dir, tmp_path / "model", parameter)
    srv = start_server(["serve", "--model", str(folder)], tmp_path)
    try:
        srv.wait_until(lambda: any(r.get("event") == "model_unavailable" for r in srv.log_records()),
                       "the load to fail")
        status, _, body = http("GET", f"{srv.url}/ping")
        assert status == 503 and "not finite" in json.loads(body)["error"]
        status, _, doc = post_json(f"{srv.url}/invocations", BODY)
        assert status == 503 and "not finite" in doc["error"]
    finally:
        srv.stop()


def test_a_broken_reload_keeps_the_current_model(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    srv = start_server(["serve", "--model", str(folder)], tmp_path)
    try:
        srv.wait_ready()
        before = post_json(f"{srv.url}/invocations", BODY)[2]["forecasts"]
        broken_copy(model_dir, folder, "explosive-ar")
        srv.wait_until(lambda: any(r.get("event") == "model_reload_failed" for r in srv.log_records()),
                       "the reload to be refused")
        failed = next(r for r in srv.log_records() if r.get("event") == "model_reload_failed")
        assert "not finite" in failed["reason"] and "step" in failed["reason"]
        assert srv.ping() == 200
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 104, "conf": 0.99})
        assert status == 200 and len(doc["forecasts"]) == 104
        assert post_json(f"{srv.url}/invocations", BODY)[2]["forecasts"] == before
    finally:
        srv.stop()


def test_no_server_path_in_response_bodies(model_dir, tmp_path):
    """/ping and /invocations say why there is no model without naming server paths (the log does)."""
    root = tmp_path / "served"
    srv = start_server(["serve", "--model", str(root)], tmp_path)
    steps = [
        (lambda: None, "does not exist"),
        (lambda: root.mkdir(), "neither a model folder"),
        (lambda: (root / "versions").mkdir(), "no approved model version"),
        (lambda: (root / "approved.json").write_text("{broken"), "unreadable"),
        (lambda: (root / "approved.json").write_text('{"version": "v1", "path": "/etc"}'), "names no version"),
        (lambda: (root / "approved.json").write_text('{"version": "v0001", "path": "/etc"}'),
         "with a path other than versions/v0001/model"),
        (lambda: (root / "approved.json").write_text('{"version": "v0001", "path": "versions/v0001/model"}'),
         "has no model.json"),
    ]
    try:
        srv.wait_listening()
        for change, reason in steps:
            change()
            srv.wait_until(lambda: reason in http("GET", f"{srv.url}/ping")[2].decode(), f"/ping to say {reason!r}")
            for status, body in (http("GET", f"{srv.url}/ping")[::2],
                                 http("POST", f"{srv.url}/invocations", json.dumps(BODY),
                                      {"content-type": "application/json"})[::2]):
                text = body.decode()
                assert status == 503 and reason in text
                assert str(tmp_path) not in text and "'/" not in text and '"/' not in text, text
        # The log keeps the paths for the operator.
        reasons = [r["reason"] for r in srv.log_records() if r.get("event") == "model_unavailable"]
        assert any(str(root) in reason for reason in reasons)
    finally:
        srv.stop()


def test_an_unreadable_arrays_file_is_named_without_its_path(model_dir, tmp_path):
    """arrays.npz that cannot be opened (a directory): the 503 bodies say so by file name only."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "arrays.npz").unlink()
    (folder / "arrays.npz").mkdir()
    srv = start_server(["serve", "--model", str(folder)], tmp_path)
    try:
        srv.wait_until(lambda: any(r.get("event") == "model_unavailable" for r in srv.log_records()),
                       "the load to fail")
        for status, body in (http("GET", f"{srv.url}/ping")[::2],
                             http("POST", f"{srv.url}/invocations", json.dumps(BODY),
                                  {"content-type": "application/json"})[::2]):
            text = json.loads(body)["error"]
            assert status == 503 and "arrays.npz: is not a readable .npz archive (Is a directory)" in text
            assert "/" not in text, text
    finally:
        srv.stop()


def test_a_path_in_an_artifact_error_is_cut_to_its_file_name():
    """Defence in depth: should an artifact error ever hold a path, clients get the file name only."""
    from pipeline_code.engine.core.artifact import ArtifactError
    from pipeline_code.serving.app import ModelCheckError, _public_reason

    reason = _public_reason(ArtifactError("arrays.npz: unreadable (Is a directory: '/srv/m/arrays.npz')"))
    assert reason == "arrays.npz: unreadable (Is a directory: 'arrays.npz')"
    assert _public_reason(ModelCheckError("/abs/model.json at step 3 of 5, ratio 1/2")) == \
        "model.json at step 3 of 5, ratio 1/2"
