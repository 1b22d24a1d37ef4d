"""models list|approve|reject|rollback on a work folder: the rules, the audit record, nothing changed on
a refusal, and a running server that switches on a rollback without a restart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline_code.cli.main import main
from pipeline_code.pipeline.registry import APPROVED, PENDING, REJECTED, SUPERSEDED, LocalRegistry
from tests.conftest import free_port


def three_versions(workdir: Path) -> LocalRegistry:
    """v0001 superseded, v0002 pending, v0003 approved (copies of the run's artifact)."""
    registry = LocalRegistry(workdir / "registry")
    model = registry.get("v0001").model_dir
    registry.register(model, status=PENDING, run_id="run-2", evaluation={})
    registry.register(model, status=APPROVED, run_id="run-3", evaluation={})
    return registry


def models(workdir: Path, *args: str) -> int:
    return main(["models", *args, "--workdir", str(workdir)])


def statuses(registry: LocalRegistry) -> dict[str, str]:
    return {v.name: v.status for v in registry.versions()}


def test_list_marks_the_served_version(workdir, capsys):
    three_versions(workdir)
    assert models(workdir, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "STATUS", "REGISTERED"]
    assert lines[1].split()[:2] == ["v0001", SUPERSEDED]
    assert lines[2].split()[:2] == ["v0002", PENDING]
    assert lines[3].split()[:3] == ["*", "v0003", APPROVED]



def test_list_shows_a_version_whose_record_does_not_read_and_the_rest(workdir, capsys):
    """A broken version.json is one Unreadable row with the reason, not the end of the listing; it
    cannot be approved, and the served version is untouched."""
    registry = three_versions(workdir)
    (registry.root / "versions" / "v0002" / "version.json").write_text('{"broken')
    assert models(workdir, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["v0001", SUPERSEDED]
    assert lines[2].split()[:2] == ["v0002", "Unreadable"]
    assert "v0002/version.json is not valid JSON: Unterminated string starting at line 1 column 2" in lines[2]
    assert lines[3].split()[:3] == ["*", "v0003", APPROVED]
    assert models(workdir, "approve", "v0002") == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert registry.approved().name == "v0003"

def test_list_prints_a_reason_as_one_escaped_cut_line_in_aligned_columns(workdir, capsys):
    """A reason cannot forge a row or drive the terminal, a long one is cut (the audit keeps it whole),
    and every column starts where its header does."""
    registry = three_versions(workdir)
    forged = "fix\n* v0009      Approved   (fake row)\x1b[31mRED"
    assert models(workdir, "reject", "2", "--reason", forged) == 0
    assert models(workdir, "reject", "1", "--reason", "x" * 5000) == 0
    capsys.readouterr()
    assert models(workdir, "list") == 0
    out = capsys.readouterr().out
    header, first, second, served, footer = out.splitlines()
    assert "\x1b" not in out and "fix⏎* v0009      Approved   (fake row)\\x1b[31mRED" in second
    assert len(first) < 300 and first.endswith("…") and registry.audit()[-1]["reason"] == "x" * 5000
    run_id = registry.get("v0001").record["run_id"]
    assert first.index(run_id) == header.index("RUN") and first.index("MASE") == header.index("METRICS")
    assert first.index("reject by") == header.index("LAST DECISION")


def test_approve_reject_rollback_are_recorded_with_who_when_why(workdir, capsys):
    registry = three_versions(workdir)
    assert models(workdir, "reject", "v0002", "--reason", "coverage too low") == 0
    assert models(workdir, "rollback", "v0001", "--reason", "v0003 drifts") == 0
    assert models(workdir, "approve", "v0002", "--reason", "checked by hand") == 0
    assert statuses(registry) == {"v0001": SUPERSEDED, "v0002": APPROVED, "v0003": SUPERSEDED}
    audit = registry.audit()
    assert [(a["action"], a["version"], a["reason"], a["approved_before"]) for a in audit] == [
        ("reject", "v0002", "coverage too low", "v0003"),
        ("rollback", "v0001", "v0003 drifts", "v0003"),
        ("approve", "v0002", "checked by hand", "v0001"),
    ]
    assert all(a["by"] and a["at"] for a in audit)
    capsys.readouterr()
    assert models(workdir, "list") == 0
    listing = capsys.readouterr().out
    assert "approve by" in listing and "checked by hand" in listing


def test_a_rejected_version_shows_rejected_until_approved(workdir):
    registry = three_versions(workdir)
    assert models(workdir, "reject", "v0002") == 0
    assert registry.get("v0002").status == REJECTED
    assert models(workdir, "rollback", "v0002") == 2  # rejected: approve it instead
    assert registry.get("v0002").status == REJECTED


@pytest.mark.parametrize("args, message", [
    (["approve", "v0003"], "v0003 is already approved"),
    (["approve", "v0001"], "models rollback v0001"),
    (["reject", "v0003"], "roll back to an earlier one first"),
    (["rollback", "v0003"], "already the approved version"),
    (["rollback", "v0002"], "never approved"),
    (["rollback", "v0009"], "no version v0009"),
    (["approve", "latest"], "'latest' is not a version name"),
    (["reject", "²"], "'²' is not a version name"),
    (["reject", "٣"], "'٣' is not a version name"),  # Arabic-Indic 3: int() reads it, a version name is ASCII
    (["reject", "v٠٠٠٣"], "'v٠٠٠٣' is not a version name"),
])
def test_refusals_name_the_reason_and_change_nothing(workdir, capsys, args, message):
    registry = three_versions(workdir)
    before = {p.name: p.read_bytes() for p in (workdir / "registry").iterdir() if p.is_file()}
    assert models(workdir, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert {p.name: p.read_bytes() for p in (workdir / "registry").iterdir() if p.is_file()} == before
    assert registry.approved().name == "v0003"


@pytest.mark.parametrize("gone", ["model.json", "arrays.npz", None])
def test_rollback_to_a_version_whose_artifact_is_gone_fails_with_nothing_changed(workdir, capsys, gone):
    registry = three_versions(workdir)
    model = registry.get("v0001").model_dir
    if gone:
        (model / gone).unlink()
    else:
        shutil.rmtree(model)
    pointer = (workdir / "registry" / "approved.json").read_bytes()
    assert models(workdir, "rollback", "v0001") == 2
    assert "artifact is gone or broken" in capsys.readouterr().err
    assert (workdir / "registry" / "approved.json").read_bytes() == pointer
    assert registry.audit() == []


def test_unknown_work_folder(tmp_path, capsys):
    assert models(tmp_path / "missing", "list") == 2
    assert "no work folder" in capsys.readouterr().err


def _served_version(url: str) -> str | None:
    try:
        request = urllib.request.Request(f"{url}/invocations", data=b'{"periods": 1, "conf": 0.8}',
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())["model"]["version"]
    except OSError:
        return None


def test_rollback_switches_a_running_server_without_restart(workdir):
    three_versions(workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "pipeline_code.cli.main", "serve", "--model",
                               str(workdir / "registry"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _served_version(url) != "v0003":
            assert server.poll() is None and time.monotonic() < deadline, "the server did not serve v0003"
            time.sleep(0.2)
        assert models(workdir, "rollback", "v0001", "--reason", "test") == 0
        while _served_version(url) != "v0001":
            assert server.poll() is None and time.monotonic() < deadline, "the server did not switch"
            time.sleep(0.2)
        assert server.poll() is None  # the same process: no restart
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_an_approval_or_rollback_publishes_the_versions_forecast_to_latest(workdir, capsys):
    """forecasts/latest/ follows the served version whoever approved it: a person's approve or rollback
    copies that version's run export, as a run that approves one does."""
    registry = three_versions(workdir)
    first_run = registry.get("v0001").record["run_id"]
    forecasts = workdir / "forecasts"
    for run_id, value in (("run-2", "2"), ("run-3", "3")):
        (forecasts / run_id).mkdir(parents=True)
        (forecasts / run_id / "forecast.csv").write_text(f"timestamp,mean\n2030-01-04,{value}\n")
    (forecasts / "latest" / "backtest.csv").write_text("stale panel backtest\n")
    assert models(workdir, "approve", "v0002") == 0
    assert "forecasts/latest/ now holds its forecast (from run run-2)" in capsys.readouterr().out
    assert (forecasts / "latest" / "forecast.csv").read_text().endswith(",2\n")
    assert not (forecasts / "latest" / "backtest.csv").exists()
    assert models(workdir, "rollback", "v0001") == 0
    assert (forecasts / "latest" / "forecast.csv").read_bytes() == (forecasts / first_run / "forecast.csv").read_bytes()
    shutil.rmtree(forecasts / "run-3")
    assert models(workdir, "rollback", "v0003") == 0
    out = capsys.readouterr().out
    assert "is missing, so forecasts/latest/ is unchanged" in out
    assert (forecasts / "latest" / "forecast.csv").read_bytes() == (forecasts / first_run / "forecast.csv").read_bytes()


def test_list_shows_the_gates_decision_until_a_person_decides(workdir, capsys):
    registry = three_versions(workdir)
    assert models(workdir, "list") == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert "gate passed by pipeline at" in first and registry.get("v0001").record["gate"]["reason"][:40] in first
    assert models(workdir, "reject", "2", "--reason", "stale data") == 0
    capsys.readouterr()
    assert models(workdir, "list") == 0
    assert "reject by" in capsys.readouterr().out.splitlines()[2]
