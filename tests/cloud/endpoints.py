"""moto's SageMaker endpoints backed by the real serving app, and `InvokeEndpoint` answered by it.

CreateEndpoint / UpdateEndpoint host the endpoint config's model the way SageMaker does: the model's
``ModelDataUrl`` (read with the model's execution role) is extracted to ``/opt/ml/model`` and the
serving image's ENTRYPOINT runs with ``serve`` and the container's ``Environment``, on a free loopback
port (tests/cloud/serve_loopback.py: the real entrypoint, bound to 127.0.0.1 instead of 0.0.0.0). The
endpoint is InService once ``GET /ping`` answers 200; a container that does not come up makes the
endpoint Failed (create) or keeps the old config serving (update, as SageMaker rolls back).
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
`sagemaker-runtime` InvokeEndpoint forwards the body to ``POST /invocations``; a container 4xx/5xx
becomes the service's ``ModelError`` (HTTP 424 with OriginalStatusCode / OriginalMessage).
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from moto.sagemaker import models as sm_models
from moto.sagemakerruntime import responses as rt_responses

from pipeline_code.entrypoints.sagemaker_paths import ROOT_ENV
from tests.cloud.jobs import REPO, JobFailed, Transfer
from tests.cloud.policy import ACCOUNT, REGION

READY_TIMEOUT_SECONDS = 60.0  # bounds a hang only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    config: str
    log: Path


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             timeout: float = 30.0) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "application/json")
    finally:
        conn.close()


@dataclass
class EndpointHost:
    """Serving processes by endpoint name; `transfer(role_arn)` reads the model as that role."""

    workdir: Path
    transfer: Callable[[str], Transfer]
    # Image URIs the registry can "pull" (the synthesized serving image); any other fails the endpoint.
    images: set[str]
    servers: dict[str, Server] = field(default_factory=dict)
    invocations: list[tuple[str, int]] = field(default_factory=list)  # (endpoint, container status)

    def start(self, config_name: str) -> Server:
        """Host the config's model; raises JobFailed with the reason SageMaker would give."""
        b = sm_models.sagemaker_backends[ACCOUNT][REGION]
        config = b.endpoint_configs[config_name]
        variant = config.production_variants[0]
        model = b._models[variant["ModelName"]]
        container = model.primary_container or (model.containers or [{}])[0]
        image = container.get("Image")
        if image not in self.images:
            raise JobFailed(f"ClientError: image {image!r} of model {model.model_name} cannot be pulled")
        root = self.workdir / f"{config_name}-{time.monotonic_ns()}" / "ml"
        (root / "model").mkdir(parents=True)
        if container.get("ModelDataUrl"):
            archive = root.parent / "model.tar.gz"
            try:
                archive.write_bytes(self.transfer(model.execution_role_arn).read(container["ModelDataUrl"]))
            except Exception as err:  # noqa: BLE001 - the endpoint fails with the reason
                raise JobFailed(f"ClientError: could not download {container['ModelDataUrl']}: {err}") from None
            with tarfile.open(archive) as tar:
                tar.extractall(root / "model", filter="data")
        try:
            return launch(root, container.get("Environment") or {}, config_name)
        except JobFailed as failed:
            raise JobFailed(f"The primary container for production variant {variant['VariantName']} did not "
                            f"pass the ping health check: {failed.reason}") from None

    def stop(self, endpoint: str) -> None:
        server = self.servers.pop(endpoint, None)
        if server:
            stop(server)

    def stop_all(self) -> None:
        for name in list(self.servers):
            self.stop(name)

    def invoke(self, endpoint: str, body: bytes, content_type: str, accept: str | None) -> tuple[int, bytes, str]:
        server = self.servers[endpoint]
        headers = {"Content-Type": content_type or "application/json"}
        if accept:
            headers["Accept"] = accept
        status, payload, ctype = _request(server.port, "POST", "/invocations", body, headers)
        self.invocations.append((endpoint, status))
        return status, payload, ctype


def launch(root: Path, environment: dict[str, str], config: str) -> Server:
    """Start the serving container on `root` (an /opt/ml folder with model/); up once /ping is 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(environment)
    env.update({ROOT_ENV: str(root), "SAGEMAKER_BIND_TO_PORT": str(port)})
    log = root.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.cloud.serve_loopback"], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, config, log)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise JobFailed(" | ".join(tail) or "no output")
        try:
            if _request(port, "GET", "/ping", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def post(server: Server, body: bytes) -> tuple[int, bytes]:
    """POST /invocations to a launched server."""
    status, payload, _ = _request(server.port, "POST", "/invocations", body, {"Content-Type": "application/json"})
    return status, payload


# ---- moto patches ----------------------------------------------------------------------------------
HOST: EndpointHost | None = None


def _host() -> EndpointHost:
    assert HOST is not None, "tests.cloud.endpoints.install() was not called"
    return HOST


def _fail(endpoint, reason: str) -> None:
    endpoint.endpoint_status = "Failed"
    endpoint.failure_reason = reason


def _error(status: int, code: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    # moto takes the HTTP status of a hand-made response from its "status" header
    return status, {"status": status, "x-amzn-ErrorType": code}, json.dumps({"__type": code, **body})


def install(monkeypatch, host: EndpointHost) -> None:
    """Patch moto (undone by monkeypatch): create/update/delete host the model, invoke forwards."""
    global HOST
    HOST = host
    backend_cls = sm_models.SageMakerModelBackend
    create, delete = backend_cls.create_endpoint, backend_cls.delete_endpoint
    update = getattr(backend_cls, "update_endpoint")

    def create_endpoint(self, endpoint_name: str, endpoint_config_name: str, tags: Any = None):
        endpoint = create(self, endpoint_name=endpoint_name, endpoint_config_name=endpoint_config_name, tags=tags)
        try:
            _host().servers[endpoint_name] = _host().start(endpoint_config_name)
        except JobFailed as failed:
            _fail(endpoint, failed.reason)
        return endpoint

    def update_endpoint(self, endpoint_name: str, endpoint_config_name: str) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None and endpoint.endpoint_status != "InService":
            # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html
            raise sm_models.ValidationError(
                message=f"Cannot update in-progress endpoint or endpoint in status {endpoint.endpoint_status}")
        try:
            server = _host().start(endpoint_config_name)
        except JobFailed as failed:  # SageMaker rolls back: the old config keeps serving
            if endpoint is not None:
                endpoint.failure_reason = failed.reason
            return endpoint.arn if endpoint else ""
        arn = update(self, endpoint_name, endpoint_config_name)
        _host().stop(endpoint_name)
        _host().servers[endpoint_name] = server
        return arn

    def delete_endpoint(self, endpoint_name: str) -> None:
        _host().stop(endpoint_name)
        return delete(self, endpoint_name)

    def invoke_endpoint(self):
        name = unquote(self.path.split("/")[2])  # /endpoints/<name>/invocations
        endpoint = sm_models.sagemaker_backends[ACCOUNT][REGION].endpoints.get(name)
        if endpoint is None or name not in _host().servers:
            arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"
            return _error(400, "ValidationError", {"message": f"Endpoint {name} of account {ACCOUNT} not found. ({arn})"})
        status, body, ctype = _host().invoke(name, self.body, self.headers.get("Content-Type"),
                                             self.headers.get("Accept"))
        if status >= 400:
            text = body.decode(errors="replace")
            side = "client" if status < 500 else "server"
            return _error(424, "ModelError", {
                "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL", "OriginalStatusCode": status, "OriginalMessage": text,
                "message": f"Received {side} error ({status}) from primary with message \"{text}\"."})
        return 200, {"Content-Type": ctype, "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, body

    monkeypatch.setattr(backend_cls, "create_endpoint", create_endpoint)
    monkeypatch.setattr(backend_cls, "update_endpoint", update_endpoint, raising=False)
    monkeypatch.setattr(backend_cls, "delete_endpoint", delete_endpoint)
    monkeypatch.setattr(rt_responses.SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)


