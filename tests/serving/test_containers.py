"""Both Dockerfiles, checked without a Docker engine: the base image (ECR Public mirror), the build
context, COPY sources (and .dockerignore), ENTRYPOINT/CMD modules, the user SageMaker runs them as
(root, no USER), EXPOSE 8080; then the serve entrypoint run as a process against a temporary /opt/ml root."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, http, post_json, start_server

CONTEXT = ROOT  # both images build with the repository root as context


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, args = line.partition(" ")
            result.append((name.upper(), args.strip()))
    return result


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (CONTEXT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
                if pattern.startswith("/", i):
                    regex = regex[:-2] + "(?:.*/)?"
                    i += 1
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def excluded(relative: str, rules) -> bool:
    """Docker's rule: the last matching pattern (on the path or one of its parents) decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            result = not negate
    return result


def stage_context(dockerfile: Path, dest: Path) -> list[str]:
    """Copy what the Dockerfile's COPY instructions would copy (honouring .dockerignore) into dest."""
    rules = dockerignore_rules()
    copied = []
    for name, args in instructions(dockerfile):
        if name != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        *sources, target = parts
        for source in sources:
            path = CONTEXT / source
            assert path.exists(), f"{dockerfile.name}: COPY source {source!r} is not in the build context"
            assert not excluded(source.rstrip("/"), rules), f"COPY source {source!r} is excluded by .dockerignore"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(CONTEXT).as_posix()
                if excluded(relative, rules):
                    continue
                inside = Path(relative).relative_to(Path(source).parent) if path.is_dir() else Path(file.name)
                out = dest / inside
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
                copied.append(inside.as_posix())
    return copied


IMAGES = {
    "serving": {"extra": "serve", "cmd": ["serve"], "modules": ["pipeline_code.entrypoints.container",
                                                               "pipeline_code.entrypoints.serve",
                                                               "pipeline_code.serving.app"]},
    "training": {"extra": "train", "cmd": ["train"], "modules": ["pipeline_code.entrypoints.container",
                                                                "pipeline_code.entrypoints.training",
                                                                "pipeline_code.entrypoints.processing",
                                                                "pipeline_code.entrypoints.evaluation"]},
}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_resolves(image, tmp_path):
    dockerfile = ROOT / "containers" / image / "Dockerfile"
    steps = instructions(dockerfile)
    names = [n for n, _ in steps]
    # The official image through its ECR Public mirror: Docker Hub rate-limits anonymous pulls (CodeBuild).
    # https://docs.aws.amazon.com/AmazonECR/latest/public/docker-pull-ecr-image.html
    assert names[0] == "FROM"
    assert re.fullmatch(r"public\.ecr\.aws/docker/library/python:3\.1[1-3]-slim(-\w+)?", steps[0][1]), steps[0][1]
    # Installs exactly its extra from the copied sources.
    installs = [a for n, a in steps if n == "RUN" and "pip install" in a]
    assert len(installs) == 1 and f'".[{IMAGES[image]["extra"]}]"' in installs[0]
    # SageMaker runs training, processing and hosting containers as root and mounts /opt/ml/* owned by
    # root: no USER switch (a non-root user could be refused writing /opt/ml/model and outputs).
    # https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-dockerfile.html
    users = [a for n, a in steps if n == "USER"]
    assert all(u.split(":")[0] in ("root", "0") for u in users), users
    # ENTRYPOINT/CMD in exec form, dispatching on SageMaker's argument.
    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    cmd = json.loads(dict(steps)["CMD"])
    assert entrypoint == ["python3", "-m", "pipeline_code.entrypoints.container"] and cmd == IMAGES[image]["cmd"]
    if image == "serving":
        assert dict(steps).get("EXPOSE") == "8080"
    # The COPY sources exist in the context, survive .dockerignore, and make an installable package.
    stage = tmp_path / "context"
    copied = stage_context(dockerfile, stage)
    assert "pyproject.toml" in copied and "README.md" not in copied  # docs edits rebuild no image
    # pyproject names README.md as its readme: the image writes one before installing.
    assert re.search(r"> README\.md.*pip install", installs[0]), installs[0]
    assert not any("__pycache__" in c for c in copied)
    from setuptools import find_packages

    packages = set(find_packages(str(stage), include=["pipeline_code*"]))
    for module in IMAGES[image]["modules"]:
        assert module.rsplit(".", 1)[0] in packages, f"{module}'s package would not be installed"
        assert (stage / (module.replace(".", "/") + ".py")).is_file()
    # The entry module runs from the copied files alone.
    result = subprocess.run([sys.executable, "-I", "-c",
                             "import sys, runpy; sys.path.insert(0, sys.argv[1]); sys.argv = ['container', '--help'];"
                             "runpy.run_module('pipeline_code.entrypoints.container', run_name='__main__')",
                             str(stage)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train|serve" in result.stdout, result.stderr


def test_dockerignore_keeps_the_context_small():
    rules = dockerignore_rules()
    for path in (".venv/bin/python", "node_modules/x", "tests/serving/test_containers.py", "cdk.out/a",
                 "pipeline_code/__pycache__/app.cpython-311.pyc", ".git/HEAD", "bench/serving_bench.py",
                 "README.md", "docs/deploy.md"):
        assert excluded(path, rules), path
    for path in ("pyproject.toml", "pipeline_code/serving/app.py", "pipeline_code/data/us_gasoline.csv"):
        assert not excluded(path, rules), path


def test_unknown_container_command():
    result = subprocess.run([sys.executable, "-m", "pipeline_code.entrypoints.container", "bogus"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "train|serve" in result.stderr


def test_train_dispatches_to_the_training_entrypoint(tmp_path):
    """`docker run image train` with no hyperparameters: the training entrypoint fails with its reason."""
    result = subprocess.run([sys.executable, "-m", "pipeline_code.entrypoints.container", "train"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**__import__("os").environ, "FORECAST_MLOPS_ML_ROOT": str(tmp_path)})
    assert result.returncode != 0
    assert (tmp_path / "output" / "failure").is_file()


@pytest.mark.parametrize("layout", ["ml_root", "sm_model_dir"])
def test_serve_entrypoint_as_sagemaker_runs_it(model_dir, tmp_path, layout):
    """`docker run image serve`: the entrypoint serves /opt/ml/model (here a temporary root) on the port."""
    root = tmp_path / "opt-ml"
    env = {"FORECAST_MLOPS_ML_ROOT": str(root)}
    if layout == "ml_root":
        shutil.copytree(model_dir, root / "model")
    else:
        shutil.copytree(model_dir, tmp_path / "elsewhere")
        env["SM_MODEL_DIR"] = str(tmp_path / "elsewhere")
        (root / "model").mkdir(parents=True)  # empty: must not be used
    srv = start_server(["serve"], tmp_path, env={**env, "SAGEMAKER_BIND_TO_PORT": "{port}"},
                       module="pipeline_code.entrypoints.container")
    try:
        srv.wait_ready()
        status, _, doc = post_json(f"{srv.url}/invocations", {"periods": "26", "conf": "0.9"})
        assert status == 200 and len(doc["forecasts"]) == 26
        assert http("GET", f"{srv.url}/ping")[0] == 200
        assert any(r.get("event") == "startup" and r.get("model_dir") == str(
            root / "model" if layout == "ml_root" else tmp_path / "elsewhere") for r in srv.log_records())
    finally:
        srv.stop()
    assert "Traceback" not in srv.logs()


def test_serve_entrypoint_without_a_model_stays_up_with_ping_503(tmp_path):
    srv = start_server(["serve"], tmp_path, env={"FORECAST_MLOPS_ML_ROOT": str(tmp_path / "empty"),
                                                 "SAGEMAKER_BIND_TO_PORT": "{port}"},
                       module="pipeline_code.entrypoints.container")
    try:
        srv.wait_listening()
        status, _, body = http("GET", f"{srv.url}/ping")
        assert status == 503 and "does not exist" in json.loads(body)["error"]
    finally:
        srv.stop()
