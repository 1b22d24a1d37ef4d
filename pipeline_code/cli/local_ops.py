"""``runs``, ``tuning`` and ``models`` on a local work folder (``--workdir``): run records, the
tuning report and the local registry."""

from __future__ import annotations

import sys

from pathlib import Path
from typing import Any

from pipeline_code.cli.views import UNREADABLE, ModelRow, Trial, report_trials
from pipeline_code.pipeline.layout import FORECAST_FILE, FORECASTS, LATEST, TUNING_FILE, publish_forecast
from pipeline_code.pipeline.registry import APPROVED, LocalRegistry, RegistryError
from pipeline_code.pipeline.runs import (
    RunDetail, RunNotFound, RunSummary, headline, local_run, local_runs, parse_time, read_record,
)


class LocalOps:
    """The same questions as cli/cloud.py's StackOps, answered from a work folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        if not self.workdir.is_dir():
            raise FileNotFoundError(f"no work folder {self.workdir}")
        self.registry = LocalRegistry(self.workdir / "registry",
                                      on_wait=lambda message: print(message, file=sys.stderr))

    def where(self) -> str:
        return str(self.workdir)

    def runs(self, limit: int | None = None) -> list[RunSummary]:
        return local_runs(self.workdir)[:limit]

    def run(self, run_id: str) -> RunDetail:
        return local_run(self.workdir, run_id)

    def trials(self, run_id: str) -> tuple[str, list[Trial]]:
        """(the run id, its candidates in trial order) from ``reports/tuning.json`` (RecordError when it
        does not read)."""
        detail = self.run(run_id)
        report = self.workdir / "runs" / detail.summary.run_id / "reports" / TUNING_FILE
        if not report.is_file():
            raise RunNotFound(f"run {detail.summary.run_id} has no tuning report ({detail.summary.state};"
                              f" {report} is missing)")
        return detail.summary.run_id, report_trials(read_record(report), report)

    def models(self) -> list[ModelRow]:
        latest: dict[str, dict[str, Any]] = {}
        for record in self.registry.audit():
            latest[str(record.get("version"))] = record
        versions, unreadable = self.registry.survey()
        rows = [_row(v, latest.get(v.name, {})) for v in versions]
        rows += [ModelRow(version=name, status=UNREADABLE, serving=False, problem=problem)
                 for name, problem in unreadable.items()]
        return sorted(rows, key=lambda r: r.version)

    def decide(self, action: str, version: str, reason: str | None) -> str:
        """approve / reject / rollback through the registry; returns what happened, in a sentence."""
        if version.isascii() and version.isdigit():  # "3" as in the cloud: v0003 (not "٣" or "²")
            version = f"v{int(version):04d}"
        try:
            before = self.registry.approved()
        except RegistryError:
            before = None  # an unreadable approved.json, which an approval or a rollback repairs
        decided = self.registry.decide(action, version, reason=reason)
        if action == "reject":
            return f"{decided.name} rejected; it stays undeployed (served: {before.name if before else 'none'})"
        return (f"{decided.name} approved ({action}); a running `forecast-mlops serve --model"
                f" {self.workdir / 'registry'}` switches to it within seconds (was {before.name if before else 'none'});"
                f" {self._publish(decided)}")

    def _publish(self, version) -> str:
        """Copy the approved version's forecast (its run's export) to ``forecasts/latest/``, as a run that
        approves one does; says what it did."""
        run_id = version.record.get("run_id")
        source = self.workdir / FORECASTS / str(run_id)
        if not run_id or not (source / FORECAST_FILE).is_file():
            return (f"its run's forecast ({source / FORECAST_FILE}) is missing, so {FORECASTS}{LATEST}/ is"
                    " unchanged: run the pipeline again to export one")
        publish_forecast(source, self.workdir / FORECASTS / LATEST)
        return f"{FORECASTS}{LATEST}/ now holds its forecast (from run {run_id})"


def _row(version, decision: dict[str, Any]) -> ModelRow:
    """A version's row; its last decision is a person's (the audit log), else the gate's."""
    record = version.record
    gate = record.get("gate")
    if not decision and isinstance(gate, dict):
        decision = {"action": "gate " + ("passed" if gate.get("passed") else "not passed"), "by": "pipeline",
                    "at": record.get("registered_at"), "reason": gate.get("reason")}
    return ModelRow(
        version=version.name, status=version.status, serving=version.status == APPROVED,
        run_id=record.get("run_id"), registered_at=parse_time(record.get("registered_at")),
        metrics=headline(record.get("metrics")),
        decision={k: decision.get(k) for k in ("action", "by", "at", "reason")} if decision else {},
    )
