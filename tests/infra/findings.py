"""cdk-nag, cfn-lint, checkov and asl-validator over one synthesized cloud assembly (tests and bench)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.infra import synth

CHECKOV_REQUIREMENTS = Path(__file__).with_name("checkov-requirements.txt")
CHECKOV_VERSION = next(line.split("==")[1].strip() for line in CHECKOV_REQUIREMENTS.read_text().splitlines()
                       if line.startswith("checkov=="))
CHECKOV_VENV = synth.REPO / ".venv-checkov"


def nag_violations(cdk_out: Path) -> list[tuple[str, str]]:
    report = json.loads((cdk_out / "validation-report.json").read_text())
    return [
        (v["ruleName"], c["constructPath"])
        for plugin in report.get("pluginReports", [])
        for v in plugin.get("violations", [])
        for c in v.get("violatingConstructs", [])
    ]


def nag_acknowledgements(cdk_out: Path) -> dict[str, str]:
    """`<construct path> <rule>` -> reason, for every cdk-nag acknowledgement in the assembly."""
    metadata = json.loads((cdk_out / f"{synth.STACK}.metadata.json").read_text())
    out = {}
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] == "aws:cdk:acknowledged-rules":
                for rule, reason in entry["data"].items():
                    if "AwsSolutions-" in rule:
                        out[f"{path} {rule}"] = reason
    return out


def cfn_lint(template: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "parseable", str(template)],
        capture_output=True, text=True, env=synth.test_env(),
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def cfn_lint_ignored(template: dict[str, Any]) -> list[str]:
    return [
        f"{lid} {check}"
        for lid, res in template["Resources"].items()
        for check in res.get("Metadata", {}).get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
    ]


def ensure_checkov() -> Path:
    """checkov's own virtual environment (`make test` builds it first; created here for a bare pytest)."""
    exe = CHECKOV_VENV / "bin" / "checkov"
    if not exe.exists():
        subprocess.run(["python3", "-m", "venv", str(CHECKOV_VENV)], check=True)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "--quiet", "-r", str(CHECKOV_REQUIREMENTS)],
                       check=True)
    return exe


def checkov(template: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(ensure_checkov()), "-f", str(template), "--framework", "cloudformation", "--quiet", "--compact",
         "-o", "json"],
        capture_output=True, text=True,
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    return report


def asl_validate(definition_path: Path) -> subprocess.CompletedProcess:
    exe = synth.ensure_node_modules() / "asl-validator"
    return subprocess.run([str(exe), "--json-path", str(definition_path)], capture_output=True, text=True,
                          env=synth.test_env())
