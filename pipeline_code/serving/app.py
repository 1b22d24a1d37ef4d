"""The serving app (FastAPI): the SageMaker container contract plus the local API-key gateway.

* ``GET /ping``: 200 once a model is loaded, 503 before (or while the folder holds no valid model).
* ``POST /invocations``: ``{"periods", "conf"[, "history"]}`` -> ``{"model", "conf", "forecasts"[, "history"]}``;
  a panel model (many series, ``core.panel_artifact``) takes ``item_id`` or ``item_ids`` and lists its
  items with ``{"list_items": true}``; ``quantiles`` may replace ``conf`` (see ``request`` and ``answers``).
* ``POST /forecast`` (only with ``api_keys``): the same behind ``x-api-key`` and a per-key usage plan.

With ``api_keys`` (the local gateway) ``/invocations`` is behind the key and the usage plan too, so
nothing forecasts without a key; without it (the container, reached only by SageMaker) it is open.
Response bodies never hold server paths (the log does).

The model is loaded at start-up by a background task started in the lifespan, so the server answers
``/ping`` (503) while it loads; the task then keeps watching the model source (every
``watch_interval`` seconds) and swaps in a new model when the folder or the registry's approved version
changes. A model is loaded only when it forecasts finite values at ``max_periods`` for a few ``conf``
levels; a failed (re)load keeps the current model. Nothing is unpickled (see pipeline_code/engine/core/artifact.py)
and only the NumPy forecaster is imported: no training code, SciPy, pandas or statsmodels.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import numpy as np

from pipeline_code.engine.core.artifact import ArtifactError, finite
from pipeline_code.engine.core.artifact_checks import ModelCheckError, check_forecasts
from pipeline_code.engine.core.forecaster import Forecaster
from pipeline_code.engine.core.panel_artifact import ARRAYS, PANEL_JSON, PanelModel, is_panel
from pipeline_code.serving.answers import answer
from pipeline_code.serving.gateway import ApiKeyGuard, KeyFileError
from pipeline_code.serving.logs import get_logger
from pipeline_code.serving.model_source import ModelSourceError, ResolvedModel, resolve_model
from pipeline_code.serving.request import (
    DEFAULT_MAX_PERIODS,
    MAX_BODY_BYTES,
    RequestError,
    check_content_encoding,
    check_content_type,
    parse_request,
    request_schema,
)
from pipeline_code.serving.schemas import RESPONSES, PingResponse, error_responses

log = get_logger()
JSON = "application/json"
# (id of a sorted calibration array, conf) -> (the array, lower, upper bounds); cleared when full.
_BOUNDS: dict[tuple[int, float], tuple] = {}
MAX_CACHED_BOUNDS = 4096


class ServingForecaster(Forecaster):
    """The engine's forecaster, memoizing the conf-independent part of ``predict`` per ``periods``.

    ``log_forecast(periods)`` (log-scale mean and model variance) depends only on the model and
    ``periods``, and is most of a forecast's cost (the ARIMA recursions); a request then only computes
    its ``conf`` quantiles. At most ``max_periods`` entries of 2 x periods floats; the cached arrays are
    read-only so nothing can alter them. ``history``: the recent observations as response rows.
    """

    def __init__(self, artifact, *, sorted_errors=None) -> None:
        super().__init__(artifact, sorted_errors=sorted_errors)
        self._log_cache: dict[int, tuple] = {}

    @functools.cached_property
    def history(self) -> list[dict[str, Any]]:
        raw = self.artifact.history or {}
        return [
            {"timestamp": str(ts), "value": float(v)}
            for ts, v in zip(raw.get("timestamps", []), raw.get("values", []))
            if isinstance(v, (int, float)) and math.isfinite(v)
        ]

    def calibrated_bounds(self, conf: float):
        """Memoized per calibration array and ``conf``: the items of a panel share one pooled array, whose
        tails past the sample (a normal fit over all its rows) would otherwise be recomputed per item."""
        key = (id(self._errors), conf)
        found = _BOUNDS.get(key)
        if found is None or found[0] is not self._errors:
            if len(_BOUNDS) >= MAX_CACHED_BOUNDS:
                _BOUNDS.clear()
            low, high = super().calibrated_bounds(conf)
            for array in (low, high):
                array.setflags(write=False)
            found = _BOUNDS[key] = (self._errors, low, high)
        return found[1], found[2]

    def log_forecast(self, periods: int):
        cached = self._log_cache.get(periods)
        if cached is None:
            cached = super().log_forecast(periods)
            for array in cached:
                array.setflags(write=False)
            self._log_cache[periods] = cached
        return cached


@dataclass(frozen=True)
class LoadedModel:
    """What is served: one series' forecaster, or a panel (``panel``; ``forecaster`` is then its first
    item's, checked at load)."""

    forecaster: Forecaster
    resolved: ResolvedModel
    stamp: tuple
    info: dict[str, Any]
    info_json: str
    panel: PanelModel | None = None
    max_periods: int = DEFAULT_MAX_PERIODS  # the server's limit; a model may allow fewer (periods_limit)

    @property
    def periods_limit(self) -> int:
        """The most periods a request may ask: a single series' model's own limit (its stored path, if
        shorter than the server's), the server's for a panel (each item's is checked when asked for)."""
        return self.max_periods if self.panel is not None else self.forecaster.periods_limit(self.max_periods)


NOT_LOADED_YET = "model not loaded yet"  # /ping's reason before the first load has been tried


class ModelHolder:
    """The current model and why there is none (``error`` for the log, ``public_error`` for clients);
    loads and reloads from the model source."""

    def __init__(self, model_dir: str | Path, max_periods: int = DEFAULT_MAX_PERIODS) -> None:
        self.model_dir = Path(model_dir)
        self.max_periods = max_periods
        self.current: LoadedModel | None = None
        self.error: str | None = NOT_LOADED_YET
        self.public_error: str | None = self.error

    def refresh(self) -> bool:
        """(Re)load when the source changed; True when a new model was swapped in."""
        try:
            resolved = resolve_model(self.model_dir)
            stamp = _stamp(resolved)
            if self.current is not None and self.current.stamp == stamp:
                return False
            loaded = _load(resolved, stamp, self.max_periods)
        except Exception as err:  # noqa: BLE001 - any failure leaves the current model serving
            message = str(err) or type(err).__name__
            self.public_error = _public_reason(err)
            if message != self.error:
                if self.current is None:
                    log.warning("model not available", extra={"event": "model_unavailable", "reason": message})
                else:
                    log.error(
                        "model reload failed; keeping the current model",
                        extra={"event": "model_reload_failed", "reason": message,
                               "version": self.current.info.get("version")},
                    )
            self.error = message
            return False
        previous = self.current
        self.current, self.error, self.public_error = loaded, None, None
        if previous is not None:  # the old model's calibration arrays need not stay cached
            _BOUNDS.clear()
        log.info(
            "model loaded",
            extra={"event": "model_loaded", "path": str(resolved.path), "version": loaded.info.get("version"),
                   "model_name": loaded.info.get("name"), "trained_at": loaded.info.get("trained_at"),
                   "replaced": previous.info.get("version") if previous else None},
        )
        return True

    async def watch(self, interval: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # noqa: BLE001 - the watcher must outlive any single failure
                log.exception("model watcher error", extra={"event": "watcher_error"})
            await asyncio.sleep(interval)


def create_app(
    model_dir: str | Path,
    *,
    max_periods: int = DEFAULT_MAX_PERIODS,
    api_keys: ApiKeyGuard | None = None,
    watch_interval: float = 2.0,
) -> FastAPI:
    """Build the app for the model artifact or registry folder ``model_dir``."""
    if max_periods < 1:
        raise ValueError("max_periods must be at least 1")
    holder = ModelHolder(model_dir, max_periods)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("starting", extra={"event": "startup", "model_dir": str(model_dir), "max_periods": max_periods,
                                    "gateway": api_keys is not None})
        task = asyncio.create_task(holder.watch(watch_interval))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("stopped", extra={"event": "shutdown"})

    app = FastAPI(
        title="forecast-mlops serving",
        version="1",
        description="Forecasts with prediction intervals from the approved model. See docs/serving.md.",
        lifespan=lifespan,
        redoc_url=None,
        redirect_slashes=False,  # "/ping/" is an unknown route (404), not a redirect to the Host header
    )
    app.state.holder = holder
    # Middleware added last runs first: the request log wraps the fast path, which wraps FastAPI.
    app.add_middleware(ForecastFastPath, paths=("/invocations", "/forecast") if api_keys else ("/invocations",))
    app.add_middleware(RequestLogMiddleware)
    body_schema = {"requestBody": {"required": True, "content": {JSON: {"schema": request_schema(max_periods)}}}}
    _install_openapi(app, holder, max_periods, keyed=api_keys is not None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=400)

    @app.get("/ping", response_model=PingResponse, responses={503: {"model": PingResponse}})
    async def ping() -> Response:
        """Health check: 200 when a model is loaded."""
        loaded = holder.current
        if loaded is None:
            return JSONResponse({"status": "unavailable", "error": holder.public_error}, status_code=503)
        return JSONResponse({"status": "ok", "model": {"name": loaded.info.get("name"),
                                                       "version": loaded.info.get("version")}})

    app.add_api_route("/ping", ping, methods=["HEAD"], include_in_schema=False)  # uvicorn sends no body

    handler = ForecastHandler(holder, max_periods=max_periods, api_keys=api_keys)
    app.state.forecast_handler = handler

    async def route(request: Request) -> Response:
        # Normally answered by ForecastFastPath before routing; this is the same logic for completeness.
        status, body, headers = await handler(request.url.path, request.headers.raw, request.stream())
        return Response(body, status_code=status, headers=headers, media_type=JSON)

    keyed = {"responses": error_responses(400, 403, 404, 413, 415, 429, 500, 503),
             "openapi_extra": {**body_schema, "security": [{"ApiKey": []}]}}
    open_ = {"responses": error_responses(400, 404, 413, 415, 500, 503), "openapi_extra": body_schema}

    @app.post("/invocations", response_model=RESPONSES, **(keyed if api_keys else open_))
    async def invocations(request: Request) -> Response:
        """Forecast `periods` steps after the last observation with a `conf` interval or `quantiles`, of
        the model's series or a panel model's `item_id`/`item_ids`; or list a panel's items (behind the
        API key when the server has one)."""
        return await route(request)

    if api_keys is not None:

        @app.post("/forecast", response_model=RESPONSES, **keyed)
        async def forecast(request: Request) -> Response:
            """`/invocations` behind an API key and a per-key usage plan (the deployed API's shape)."""
            return await route(request)

    return app


# --- the forecast routes ----------------------------------------------------------------------------

class ForecastHandler:
    """``POST /invocations`` and ``POST /forecast`` without FastAPI: (status, body, headers) from the
    path, the raw header pairs (lower-case names) and the body chunks."""

    def __init__(self, holder: ModelHolder, *, max_periods: int, api_keys: ApiKeyGuard | None) -> None:
        self.holder, self.max_periods, self.api_keys = holder, max_periods, api_keys

    async def __call__(self, path: str, raw_headers, chunks) -> tuple[int, bytes, dict[str, str]]:
        headers: dict[bytes, list[bytes]] = {}
        for name, value in raw_headers:
            headers.setdefault(name, []).append(value)

        def header(name: str) -> str | None:
            values = headers.get(name.encode())
            return None if values is None else values[-1].decode("latin-1")

        if self.api_keys is not None:
            refused = self._throttle(headers.get(b"x-api-key", []))
            if refused is not None:
                return refused
        elif path == "/forecast":
            return _error_body(404, "Not Found")
        try:
            check_content_type(_only(headers, b"content-type"))
            check_content_encoding(b", ".join(headers.get(b"content-encoding", [])).decode("latin-1") or None)
            raw = await _read_body(header("content-length"), chunks)
            parsed = parse_request(raw, max_periods=self.max_periods)
        except RequestError as err:
            return _error_body(err.status, err.message)
        loaded = self.holder.current
        if loaded is None:
            return _error_body(503, f"no model loaded: {self.holder.public_error}")
        status, body = answer(loaded, parsed)
        return status, body, {}

    def _throttle(self, presented: list[bytes]) -> tuple[int, bytes, dict[str, str]] | None:
        """The gateway's refusal for these ``x-api-key`` values, or None to go on."""
        if len(presented) > 1:
            return _error_body(400, f"ambiguous credentials: {len(presented)} x-api-key headers; send exactly one")
        try:
            key = self.api_keys.store.authenticate(presented[0].decode("latin-1") if presented else None)
        except KeyFileError:  # logged by the store, with the file and the problem
            return _error_body(503, "Service Unavailable: the server's API key file is unusable; "
                                    "ask its operator to fix it")
        if key is None:
            return _error_body(403, "Forbidden: missing, unknown or revoked API key (header x-api-key)")
        wait = self.api_keys.plan.hit(key.id)
        if wait is not None:
            return _error_body(429, "Too Many Requests: rate limit of this API key exceeded",
                               {"retry-after": str(wait)})
        return None


class ForecastFastPath:
    """Pure ASGI: answers ``POST`` on the forecast paths with ForecastHandler directly, skipping
    FastAPI's routing and request objects (the routes stay registered for the OpenAPI schema)."""

    def __init__(self, app: Any, paths: tuple[str, ...]) -> None:
        self.app, self.paths = app, paths
        self._handler: ForecastHandler | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self._handler is None:
            self._handler = scope["app"].state.forecast_handler
        status, body, extra = await self._handler(scope["path"], scope["headers"], _asgi_chunks(receive))
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


async def _asgi_chunks(receive: Any):
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # client went away
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _only(headers: dict[bytes, list[bytes]], name: bytes) -> str | None:
    """The one value of header ``name`` (None when absent); several are ambiguous (a 400 RequestError)."""
    values = headers.get(name, [])
    if len(values) > 1:
        raise RequestError(f"ambiguous request: {len(values)} {name.decode()} headers; send exactly one")
    return values[0].decode("latin-1") if values else None


def _error_body(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message}).encode(), headers or {}


# --- responses ------------------------------------------------------------------------------------

async def _read_body(declared: str | None, chunks) -> bytes:
    """The body, refusing (413) more than MAX_BODY_BYTES without reading it all."""
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError("invalid Content-Length")
        if int(declared) > MAX_BODY_BYTES:
            raise RequestError(f"request body exceeds {MAX_BODY_BYTES} bytes", 413)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(f"request body exceeds {MAX_BODY_BYTES} bytes", 413)
        parts.append(chunk)
    return b"".join(parts)


def _install_openapi(app: FastAPI, holder: "ModelHolder", max_periods: int, *, keyed: bool) -> None:
    """The OpenAPI schema, with the exact request schema of the model being served (a panel model takes
    items; a single-series model refuses them; ``periods`` up to the model's limit) and, in gateway mode,
    the API key scheme."""

    @functools.lru_cache(maxsize=4)  # per (panel, periods limit): what the schema depends on
    def schema_for(panel: bool, limit: int) -> dict[str, Any]:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operation in (schema["paths"].get(path, {}).get("post") for path in ("/invocations", "/forecast")):
            if operation:
                operation["requestBody"]["content"][JSON]["schema"] = request_schema(limit, panel=panel)
        if keyed:
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
            }
        return schema

    def openapi() -> dict[str, Any]:
        loaded = holder.current
        if loaded is None:
            return schema_for(False, max_periods)
        return schema_for(loaded.panel is not None, loaded.periods_limit)

    app.openapi = openapi  # type: ignore[method-assign]


# --- loading --------------------------------------------------------------------------------------

def _stamp(resolved: ResolvedModel) -> tuple:
    # panel.json is written last, after the files its digests cover.
    names = (PANEL_JSON, ARRAYS) if is_panel(resolved.path) else ("model.json", "arrays.npz")
    files = [resolved.path / name for name in names]
    return (str(resolved.path.resolve()), resolved.version,
            *((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None for f in files))


def _load(resolved: ResolvedModel, stamp: tuple, max_periods: int) -> LoadedModel:
    """A single-series model, or a panel whose items are checked as they are first asked for (its
    first item at once, so a panel that cannot forecast at all is refused here)."""
    panel = None
    if is_panel(resolved.path):
        def checked(artifact, *, sorted_errors=None) -> ServingForecaster:
            forecaster = ServingForecaster(artifact, sorted_errors=sorted_errors)
            _check_forecasts(forecaster, forecaster.periods_limit(max_periods))
            return forecaster

        panel = PanelModel.load(resolved.path, factory=checked)
        forecaster = panel.forecaster(panel.items[0])
        metadata = finite(dict(panel.metadata))
    else:
        forecaster = ServingForecaster.load(resolved.path)
        _check_forecasts(forecaster, forecaster.periods_limit(max_periods))
        metadata = finite(dict(forecaster.metadata))
    info = {
        **metadata,
        "name": metadata.get("name"),
        "version": resolved.version or metadata.get("version"),
        "trained_at": metadata.get("trained_at"),
        "metrics": metadata.get("metrics") or {},
        "source": resolved.source,
        "calibrated_horizon": forecaster.calibrated_horizon,
    }
    if panel is not None:
        info["items"] = len(panel)
    else:
        info["max_periods"] = forecaster.periods_limit(max_periods)
    info_json = json.dumps(info, allow_nan=False, separators=(",", ":"), default=str)
    limit = forecaster.periods_limit(max_periods)
    if limit < max_periods:
        log.warning("model allows fewer periods than the server",
                    extra={"event": "model_periods_limit", "max_periods": max_periods, "model_periods": limit})
    return LoadedModel(forecaster, resolved, stamp, info, info_json, panel, max_periods)


def _check_forecasts(forecaster: Forecaster, max_periods: int) -> None:
    """Fail at load time, not on requests, when the artifact cannot forecast finite values."""
    try:
        check_forecasts(forecaster, max_periods)
    except ModelCheckError as err:
        raise ModelCheckError(f"model refused: {err}") from None


# An absolute path in a message: a "/" at its start or after a space, quote, bracket, "=", ":" or ",".
_ABSOLUTE_PATH = re.compile(r"""(?:^|(?<=[\s'"(\[=:,]))/[^\s'"()\[\],]*""")


def _public_reason(err: Exception) -> str:
    """Why there is no model, for clients: without server paths."""
    if isinstance(err, ModelSourceError):
        return err.public
    if isinstance(err, (ArtifactError, ModelCheckError)):  # built from file names; a path is cut to its name
        return _ABSOLUTE_PATH.sub(lambda m: PurePosixPath(m.group()).name or m.group(), str(err))
    return "the model could not be loaded (the server log says why)"


# --- one structured log line per request ----------------------------------------------------------

class RequestLogMiddleware:
    """Pure ASGI: request id (``x-request-id`` in, else generated; echoed back), one JSON log line per
    request (method, path, status, duration_ms, request_id), and a JSON 500 without a stack trace for
    anything unexpected (the trace goes to the log)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_wrapper(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra={"event": "error", "request_id": request_id})
            status = 500
            if not started:
                body = json.dumps({"error": "internal server error", "request_id": request_id}).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"x-request-id", request_id.encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            log.info(
                "request",
                extra={"event": "request", "method": scope.get("method"), "path": scope.get("path"),
                       "status": status, "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                       "request_id": request_id},
            )


# A request id taken from the caller: 1 to 128 printable ASCII characters.
_REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,128}")


def _request_id(scope: dict) -> str:
    """The caller's ``x-request-id``, else the ``request-id=`` of SageMaker's custom attributes (set by
    the invoke Lambda), else a new one."""
    found: dict[bytes, bytes] = {}  # header name -> its first usable id
    for name, value in scope.get("headers", ()):
        if name == b"x-amzn-sagemaker-custom-attributes":
            value = next((val for key, _, val in (item.strip().partition(b"=") for item in value.split(b","))
                          if key == b"request-id"), b"")
        elif name != b"x-request-id":
            continue
        if _REQUEST_ID.fullmatch(value):
            found.setdefault(name, value)
    chosen = found.get(b"x-request-id") or found.get(b"x-amzn-sagemaker-custom-attributes")
    return chosen.decode("ascii") if chosen else uuid.uuid4().hex
