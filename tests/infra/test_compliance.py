"""cdk-nag (AwsSolutions), cfn-lint, checkov and asl-validator: clean, every exception acknowledged with a reason."""

from __future__ import annotations

import pytest

from tests.infra import findings, synth


def test_cdk_nag_has_no_unacknowledged_findings(cdk_out):
    assert findings.nag_violations(cdk_out) == []


def test_every_nag_acknowledgement_has_a_reason(cdk_out):
    acks = findings.nag_acknowledgements(cdk_out)
    assert acks, "expected acknowledgements to be recorded in the assembly"
    assert all(len(reason) > 30 for reason in acks.values())


def test_nag_plugin_is_wired_into_every_synth(repo_root):
    app = (repo_root / "app.py").read_text()
    assert "Validations.of(app).add_plugins(AwsSolutionsChecks(app))" in app


def test_cfn_lint_is_clean(cdk_out):
    assert findings.cfn_lint(cdk_out / f"{synth.STACK}.template.json") == []


def test_cfn_lint_ignores_only_redundant_depends_on(template):
    assert {entry.split()[1] for entry in findings.cfn_lint_ignored(template)} <= {"W3005"}


@pytest.mark.slow
def test_checkov_is_clean_with_every_skip_reasoned(cdk_out, template):
    report = findings.checkov(cdk_out / f"{synth.STACK}.template.json")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    for res in template["Resources"].values():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip["comment"]) > 20, skip


@pytest.mark.parametrize("prefix", [synth.PIPELINE_PREFIX, synth.DEPLOY_PREFIX])
def test_state_machine_definitions_pass_asl_validator(cdk_out, tmp_path, prefix):
    path = synth.write_pipeline_definition(tmp_path / f"{prefix}.asl.json", prefix)
    result = findings.asl_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
