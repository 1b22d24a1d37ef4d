"""models approve|rollback run serving's forecast check first: a version whose forecasts are not finite
within serve.max_periods (the version's own, from its run document, else the default) is refused, and
approved.json and the audit log stay as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline_code.cli.main import main
from pipeline_code.engine.settings import ServeSettings
from pipeline_code.pipeline.layout import RUN_DOCUMENT, run_key
from pipeline_code.pipeline.registry import APPROVED, PENDING, SUPERSEDED, LocalRegistry

# The first AR coefficient of the harmonic section: 3.0 overflows within a few steps; 1.1 after step 52
# but before step 104 (the default serve.max_periods).
EXPLOSIVE, SLOW_EXPLOSIVE = 3.0, 1.1
SHORT_MAX_PERIODS = 52


def harmonic_sections(document: dict) -> list[dict]:
    """The harmonic ARIMA sections' parameters of a model.json (the model's own, or a combination's)."""
    sections = [document, *document["parameters"].get("members", [])]
    return [s["parameters"] for s in sections if s.get("core") == "harmonic_arima"]


def explosive_copy(model_dir: Path, target: Path, phi: float) -> Path:
    """The artifact with its harmonic section's first AR coefficient set to ``phi`` (others 0): valid
    JSON that loads, whose forecasts overflow after a number of steps that falls as ``phi`` grows."""
    shutil.copytree(model_dir, target)
    document = json.loads((target / "model.json").read_text())
    sections = harmonic_sections(document)
    assert sections, "the run's model has no harmonic ARIMA section to make explosive"
    for parameters in sections:
        parameters["phi"] = [phi] + [0.0] * (len(parameters["phi"]) - 1)
    (target / "model.json").write_text(json.dumps(document))
    return target


def run_document(workdir: Path, run_id: str, source_run: str, max_periods: int) -> None:
    """A run document for ``run_id``: the source run's with ``serve.max_periods`` changed."""
    document = json.loads((workdir / run_key(source_run, RUN_DOCUMENT)).read_text())
    document["serve"]["max_periods"] = max_periods
    path = workdir / run_key(run_id, RUN_DOCUMENT)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(document))


def models(workdir: Path, *args: str) -> int:
    return main(["models", *args, "--workdir", str(workdir)])


def decisions(registry: LocalRegistry) -> tuple[str, list[dict]]:
    """approved.json's bytes and the audit log: what a refused decision must leave as it was."""
    return (registry.root / "approved.json").read_text(), registry.audit()


def test_approve_refuses_a_version_whose_forecasts_overflow_and_changes_nothing(workdir, tmp_path, capsys):
    registry = LocalRegistry(workdir / "registry")
    good = registry.get("v0001")
    broken = registry.register(explosive_copy(good.model_dir, tmp_path / "broken", EXPLOSIVE), status=PENDING,
                               run_id=good.record["run_id"], evaluation={})
    before = decisions(registry)
    assert models(workdir, "approve", broken.name, "--reason", "looks fine") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken.name} cannot be served: its mean forecast is not finite")
    assert (f"(serving's forecast check: finite forecasts for serve.max_periods {ServeSettings().max_periods}"
            f" steps, from its run document {run_key(good.record['run_id'], RUN_DOCUMENT)}") in err
    assert err.rstrip().endswith("nothing changed")
    assert decisions(registry) == before
    assert registry.get(broken.name).status == PENDING and registry.approved().name == good.name

    fine = registry.register(good.model_dir, status=PENDING, run_id=good.record["run_id"], evaluation={})
    assert models(workdir, "approve", fine.name) == 0
    assert registry.approved().name == fine.name and registry.audit()[-1]["version"] == fine.name


def test_rollback_refuses_a_version_approved_before_whose_forecasts_overflow(workdir, tmp_path, capsys):
    """A version approved without the check (by an earlier release, say) cannot be brought back."""
    registry = LocalRegistry(workdir / "registry")
    good = registry.get("v0001")
    broken = registry.register(explosive_copy(good.model_dir, tmp_path / "broken", EXPLOSIVE), status=APPROVED,
                               run_id="run-unchecked", evaluation={})
    assert models(workdir, "rollback", good.name) == 0
    assert registry.get(broken.name).status == SUPERSEDED
    before = decisions(registry)
    assert models(workdir, "rollback", broken.name) == 2
    err = capsys.readouterr().err
    assert f"{broken.name} cannot be served: its mean forecast is not finite" in err
    assert "the settings default: its run 'run-unchecked' has no readable run document" in err
    assert decisions(registry) == before and registry.approved().name == good.name


def test_the_check_uses_the_versions_own_max_periods(workdir, tmp_path, capsys):
    """Forecasts that overflow between step 52 and 104 serve a run gated with serve.max_periods 52, not
    a version whose run document is gone (the default, 104)."""
    registry = LocalRegistry(workdir / "registry")
    source = registry.get("v0001").record["run_id"]
    model = explosive_copy(registry.get("v0001").model_dir, tmp_path / "slow", SLOW_EXPLOSIVE)
    run_document(workdir, "run-short", source, SHORT_MAX_PERIODS)
    short = registry.register(model, status=PENDING, run_id="run-short", evaluation={})
    orphan = registry.register(model, status=PENDING, run_id="run-gone", evaluation={})
    assert models(workdir, "approve", orphan.name) == 2
    err = capsys.readouterr().err
    assert f"of {ServeSettings().max_periods} with conf" in err and "the settings default" in err
    assert models(workdir, "approve", short.name) == 0
    assert registry.approved().name == short.name
