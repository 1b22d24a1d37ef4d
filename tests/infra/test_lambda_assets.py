"""The Lambdas that link ``pipeline_code`` (the starter, the invoke function) carry only the run
document's and the request rules' modules, and those need nothing but the standard library (the Lambda
runtime has boto3, not NumPy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stacks.functions import LAMBDA_MODULES
from tests.infra import synth


FUNCTIONS = {"starter": "validate the run document", "invoke": "InvokeEndpoint"}


def asset(kind: str):
    (function,) = [r for r in synth.resources("AWS::Lambda::Function").values()
                   if FUNCTIONS[kind] in r["Properties"].get("Description", "")]
    return synth.synth_dir() / function["Metadata"]["aws:asset:path"]


@pytest.mark.parametrize("kind", FUNCTIONS)
def test_the_linked_package_is_cut_to_the_stdlib_modules(kind):
    folder = asset(kind) / "pipeline_code"
    assert {str(p.relative_to(folder)) for p in folder.rglob("*.py")} == set(LAMBDA_MODULES)


def test_the_bundled_modules_import_without_site_packages():
    """`python -S`: no site-packages, so a NumPy (or any third-party) import would fail here."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from pipeline_code.engine.settings import Settings, resolve;"
            "from pipeline_code.engine.profile import profile_csv;"
            "from pipeline_code.pipeline import layout;"
            "from pipeline_code.serving.request import parse_request;"
            "p = profile_csv(b'timestamp,value\\n2020-01-03,1\\n2020-01-10,2\\n2020-01-17,3\\n');"
            "print(resolve([], timestamps=p.timestamps).settings.data.freq, layout.RUN_DOCUMENT)")
    result = subprocess.run([sys.executable, "-S", "-c", code, str(asset("starter"))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["W-FRI", "input/settings.json"]
