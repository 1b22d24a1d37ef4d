"""The starter Lambda's asset carries the run document's modules, and they need nothing but the
standard library (the Lambda runtime has boto3, not NumPy)."""

from __future__ import annotations

import subprocess
import sys

from stacks.functions import RUN_DOCUMENT_MODULES
from tests.infra import synth


def starter_asset():
    (function,) = [r for r in synth.resources("AWS::Lambda::Function").values()
                   if "validate the run document" in r["Properties"].get("Description", "")]
    return synth.synth_dir() / function["Metadata"]["aws:asset:path"]


def test_the_starter_bundles_exactly_the_run_document_modules():
    asset = starter_asset()
    bundled = {str(p.relative_to(asset / "pipeline_code")) for p in (asset / "pipeline_code").rglob("*.py")}
    assert bundled == set(RUN_DOCUMENT_MODULES)


def test_the_bundled_modules_import_without_site_packages():
    """`python -S`: no site-packages, so a NumPy (or any third-party) import would fail here."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from pipeline_code.engine.settings import Settings, resolve;"
            "from pipeline_code.engine.profile import profile_csv;"
            "from pipeline_code.pipeline import layout;"
            "p = profile_csv(b'timestamp,value\\n2020-01-03,1\\n2020-01-10,2\\n2020-01-17,3\\n');"
            "print(resolve([], timestamps=p.timestamps).settings.data.freq, layout.RUN_DOCUMENT)")
    result = subprocess.run([sys.executable, "-S", "-c", code, str(starter_asset())], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["W-FRI", "input/settings.json"]
