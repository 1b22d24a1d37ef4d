"""serve --model DIR: an artifact folder, or a registry folder serving its approved version."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline_code.serving.model_source import ModelSourceError, resolve_model


def make_registry(root, model_dir, versions=("v0001", "v0002", "v0003"), approved="v0003"):
    for name in versions:
        shutil.copytree(model_dir, root / "versions" / name / "model")
    if approved:
        (root / "approved.json").write_text(json.dumps({"version": approved, "path": f"versions/{approved}/model"}))
    return root


def test_artifact_folder(model_dir):
    resolved = resolve_model(model_dir)
    assert resolved.path == model_dir and resolved.version is None and resolved.source == "folder"


def test_registry_folder_serves_the_approved_version(model_dir, tmp_path):
    registry = make_registry(tmp_path / "registry", model_dir)
    resolved = resolve_model(registry)
    assert resolved.version == "v0003" and resolved.path == registry / "versions" / "v0003" / "model"
    # A pipeline workdir (holding registry/) works too.
    assert resolve_model(tmp_path).version == "v0003"


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing", "does not exist"),
        ("empty", "neither a model folder"),
        ("unapproved", "no approved model version"),
        ("bad-pointer", "unreadable"),
        ("escape", "not a version"),
        ("escape-as-version", "not a version"),
        ("disagree", "names version 'v0002' but path 'versions/v0003/model'"),  # the log's message
        ("dangling", "has no model"),
    ],
)
def test_clear_errors(model_dir, tmp_path, setup, fragment):
    registry = tmp_path / "registry"
    if setup == "missing":
        target = tmp_path / "nope"
    elif setup == "empty":
        target = tmp_path
    else:
        make_registry(registry, model_dir, approved=None)
        target = registry
        pointer = registry / "approved.json"
        if setup == "bad-pointer":
            pointer.write_text("{")
        elif setup == "escape":
            pointer.write_text(json.dumps({"version": "v9", "path": "../../etc"}))
        elif setup == "escape-as-version":
            pointer.write_text(json.dumps({"version": "../../etc", "path": "versions/../../etc/model"}))
        elif setup == "disagree":  # the registry refuses such a pointer: so does serving (no wrong label)
            pointer.write_text(json.dumps({"version": "v0002", "path": "versions/v0003/model"}))
        elif setup == "dangling":
            pointer.write_text(json.dumps({"version": "v0009", "path": "versions/v0009/model"}))
    with pytest.raises(ModelSourceError, match=fragment):
        resolve_model(target)


def test_server_on_a_registry_follows_the_approved_pointer(model_dir, tmp_path):
    from .conftest import http, post_json, start_server

    registry = make_registry(tmp_path / "registry", model_dir, approved=None)
    srv = start_server(["serve", "--model", str(registry)], tmp_path)
    try:
        srv.wait_listening()
        status, _, body = http("GET", f"{srv.url}/ping")
        assert status == 503 and "no approved model version" in json.loads(body)["error"]
        (registry / "approved.json").write_text(json.dumps({"version": "v0003", "path": "versions/v0003/model"}))
        srv.wait_ready()
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": 2, "conf": 0.9})
        assert status == 200 and doc["model"]["version"] == "v0003" and doc["model"]["source"] == "registry"
        # Approving another version swaps the model in without a restart.
        (registry / "approved.json").write_text(json.dumps({"version": "v0002", "path": "versions/v0002/model"}))
        srv.wait_until(
            lambda: post_json(f"{srv.url}/invocations", {"periods": 2, "conf": 0.9})[2]["model"]["version"] == "v0002",
            "the newly approved version to be served")
        # A broken pointer keeps the current model serving.
        (registry / "approved.json").write_text("{")
        srv.wait_until(lambda: any(r.get("event") == "model_reload_failed" for r in srv.log_records()),
                       "the failed reload to be logged")
        assert srv.ping() == 200
    finally:
        srv.stop()
