"""Synthesize the CDK app once per test process (with the pinned CLI) and read what it produced.

`synth_dir()` runs `node_modules/.bin/cdk synth` (the pinned aws-cdk@2.1148.1; `npm ci` first when
node_modules is missing) into a temporary cloud assembly and caches it, so CDK assertions, cdk-nag,
cfn-lint, checkov, asl-validator and the moto executions all read the same synthesized output. Within
one pytest run, the test processes share each assembly (`synthesized()`): the first to ask synthesizes
it, under a lock, and the others read it.
`resolve()` renders CloudFormation intrinsics with fixed fake values (account, region, names) so the
state machine definition becomes plain ASL.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STACK = "ForecastMlops"
ACCOUNT = "123456789012"
REGION = "us-east-1"
PIPELINE_PREFIX = "PipelineStateMachine"
DEPLOY_PREFIX = "PipelineDeployMachine"


def test_env() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = REPO / ".venv" / "bin"
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_DISABLE_VERSION_CHECK="true",
    )
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(var, None)  # synth must need no credentials
    return env


def ensure_node_modules() -> Path:
    bin_dir = REPO / "node_modules" / ".bin"
    if not (bin_dir / "cdk").exists() or not (bin_dir / "asl-validator").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REPO, check=True,
                       env=test_env())
    return bin_dir


def cdk_synth(outdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cdk = ensure_node_modules() / "cdk"
    return subprocess.run(
        [str(cdk), "synth", "--no-notices", "--quiet", "--output", str(outdir), *extra],
        cwd=REPO, env=test_env(), capture_output=True, text=True, timeout=600,
    )


# A folder every process of one pytest run shares (tests/conftest.py sets it); unset, nothing is shared.
SHARED_ENV = "FORECAST_MLOPS_TEST_SHARED"


def synthesized(*extra: str) -> Path:
    """The cloud assembly of `cdk synth <extra>`: made once per pytest run, whichever process asks first."""
    shared = os.environ.get(SHARED_ENV)
    if not shared:
        return _synthesize(Path(tempfile.mkdtemp(prefix="forecast-cdk-out-")), extra)
    key = hashlib.sha256("\0".join(extra).encode()).hexdigest()[:12]
    outdir = Path(shared) / f"cdk-out-{key}"
    with (Path(shared) / f"cdk-out-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (outdir / "manifest.json").is_file():
            shutil.rmtree(outdir, ignore_errors=True)  # a synthesis that failed half-way
            _synthesize(outdir, extra)
    return outdir


def _synthesize(outdir: Path, extra: tuple[str, ...]) -> Path:
    result = cdk_synth(outdir, *extra)
    if result.returncode != 0:
        raise RuntimeError(f"cdk synth {' '.join(extra)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                           f"{result.stderr[-8000:]}")
    return outdir


@functools.lru_cache(maxsize=1)
def synth_dir() -> Path:
    """The default app's assembly."""
    return synthesized()


@functools.lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return json.loads((synth_dir() / f"{STACK}.template.json").read_text())


def resources(type_: str | None = None) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if type_ is None or v["Type"] == type_}


def pipeline_logical_id(prefix: str = PIPELINE_PREFIX) -> str:
    return next(k for k in resources("AWS::StepFunctions::StateMachine") if k.startswith(prefix))


def logical_id(prefix: str, type_: str) -> str:
    return next(k for k in resources(type_) if k.startswith(prefix))


# ---- intrinsic resolution ------------------------------------------------------------------------
def fake_refs() -> dict[str, str]:
    """Ref / GetAtt values for the resources the state machine definition mentions."""
    refs: dict[str, str] = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": STACK,
        "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    }
    for lid, res in resources().items():
        t = res["Type"]
        name = lid.lower()[:40]
        if t == "AWS::S3::Bucket":
            refs[lid] = f"bucket-{name}"
            refs[f"{lid}.Arn"] = f"arn:aws:s3:::bucket-{name}"
        elif t == "AWS::IAM::Role":
            refs[lid] = lid
            refs[f"{lid}.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/{lid}"
        elif t == "AWS::ECR::Repository":
            refs[lid] = name
            refs[f"{lid}.Arn"] = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"
        elif t == "AWS::SNS::Topic":
            refs[lid] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{lid}"
            refs[f"{lid}.TopicName"] = lid
        elif t == "AWS::StepFunctions::StateMachine":
            refs[lid] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{lid}"
            refs[f"{lid}.Name"] = lid
            refs[f"{lid}.Arn"] = refs[lid]
        elif t == "AWS::Lambda::Function":
            refs[lid] = lid
            refs[f"{lid}.Arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{lid}"
        elif t == "AWS::SQS::Queue":
            refs[f"{lid}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{lid}"
    return refs


def resolve(value: Any, refs: dict[str, str] | None = None) -> Any:
    refs = fake_refs() if refs is None else refs
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return refs[arg]
        if fn == "Fn::GetAtt":
            lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return refs[f"{lid}.{attr}"]
        if fn == "Fn::Join":
            return arg[0].join(str(resolve(v, refs)) for v in arg[1])
        if fn == "Fn::Select":
            return resolve(arg[1], refs)[int(arg[0])]
        if fn == "Fn::Split":
            return resolve(arg[1], refs).split(arg[0])
        if fn == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            import re

            return re.sub(r"\$\{([^}]+)\}", lambda m: str(refs[m.group(1)]), text)
    return {k: resolve(v, refs) for k, v in value.items()}


def pipeline_definition(refs: dict[str, str] | None = None, prefix: str = PIPELINE_PREFIX) -> dict[str, Any]:
    props = resources()[pipeline_logical_id(prefix)]["Properties"]
    return json.loads(resolve(props["DefinitionString"], refs))


def deploy_definition(refs: dict[str, str] | None = None) -> dict[str, Any]:
    """The deploy state machine's ASL (started by the registry's approval event)."""
    return pipeline_definition(refs, DEPLOY_PREFIX)


def write_pipeline_definition(path: Path, prefix: str = PIPELINE_PREFIX) -> Path:
    path.write_text(json.dumps(pipeline_definition(prefix=prefix), indent=2))
    return path
