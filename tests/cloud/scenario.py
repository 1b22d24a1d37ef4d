"""One upload through the emulated cloud, and what came of it (for the tests and the benchmark)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cloud import endpoints
from tests.cloud.world import CloudWorld


@dataclass
class CloudRun:
    run_id: str
    upload: dict[str, Any]
    executions: list[dict[str, Any]]  # the executions this upload caused (pipeline, then deploys)
    response: dict[str, Any] | None  # POST /forecast through the invoke Lambda (when an endpoint serves)
    seconds: float
    findings: list[str] = field(default_factory=list)

    @property
    def pipeline(self) -> dict[str, Any] | None:
        return next((e for e in self.executions if e.get("name") == self.run_id), None)

    @property
    def deploys(self) -> list[dict[str, Any]]:
        return [e for e in self.executions if e.get("name") != self.run_id]

    def states(self) -> list[str]:
        return [s for e in self.executions for s in e["states"]]

    def served(self) -> dict[str, Any] | None:
        if not self.response or self.response["statusCode"] != 200:
            return None
        return json.loads(self.response["body"])

    def problems(self) -> list[str]:
        """Why this run did not end with a served forecast, as AWS would have seen it (empty: it did)."""
        found = list(self.findings)
        if self.pipeline is None:
            found.append("no pipeline execution started")
        found += [f"{e.get('name')}: {e['status']} {e.get('error', '')} {e['failures'][:1]}"
                  for e in self.executions if e["status"] != "SUCCEEDED"]
        if self.served() is None:
            found.append(f"no forecast served: {self.response}")
        return found


def request_for(series: dict[str, Any]) -> dict[str, Any]:
    """The series' own request (a panel names an item), or one horizon at 80%."""
    return series.get("request") or {"periods": series["settings"]["data"]["horizon"], "conf": 0.8}


def upload_and_serve(world: CloudWorld, series: dict[str, Any], settings: dict[str, Any] | None = None,
                     data: bytes | None = None) -> CloudRun:
    """Upload (data + settings file), wait for every execution, then ask the API for a forecast."""
    seen = {e["executionArn"] for e in world.executions()}
    started = time.perf_counter()
    upload = world.upload(series["name"], series["data"] if data is None else data,
                          series["settings"] if settings is None else settings)
    world.settle()
    new = [e for e in world.executions() if e["executionArn"] not in seen]
    response = world.forecast(request_for(series)) if world.endpoint() else None
    return CloudRun(upload["data"]["run_id"], upload, new, response, time.perf_counter() - started,
                    world.findings())


def serve_locally(model_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """The same serving container on a local model folder (the local pipeline's approved model)."""
    root = Path(tempfile.mkdtemp(prefix="forecast-local-serve-")) / "ml"
    shutil.copytree(model_dir, root / "model")
    server = endpoints.launch(root, {}, "local")
    try:
        status, body = endpoints.post(server, json.dumps(request).encode())
    finally:
        endpoints.stop(server)
    assert status == 200, body
    return json.loads(body)
