"""The serving path imports no training stack and unpickles nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ["sktime", "statsmodels", "scipy", "pandas", "sklearn", "statsforecast", "joblib", "matplotlib",
             "pipeline_code.engine.estimator", "pipeline_code.engine.cv", "pipeline_code.engine.model.sliding", "pipeline_code.engine.dataset",
             "pipeline_code.engine.preprocess", "pipeline_code.engine.tuning", "pipeline_code.pipeline.runner", "boto3", "httpx"]


def run_fresh(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_serving_app_imports_only_what_forecasting_needs(model_dir):
    """Import the app, build it, run its lifespan (model load) and a forecast in a fresh interpreter."""
    loaded = run_fresh(f"""
        import asyncio, json, sys
        import pipeline_code.serving.app as app_module
        import pipeline_code.serving.server, pipeline_code.entrypoints.serve, pipeline_code.entrypoints.container
        app = app_module.create_app({str(model_dir)!r})
        app.state.holder.refresh()  # what the lifespan's watcher does

        async def call():  # a raw ASGI request (starlette's TestClient would import httpx)
            sent = []
            async def receive():
                return {{"type": "http.request", "body": b'{{"periods": 3, "conf": 0.9}}', "more_body": False}}
            async def send(message):
                sent.append(message)
            scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/invocations", "raw_path": b"/invocations", "root_path": "",
                     "query_string": b"", "headers": [(b"content-type", b"application/json")],
                     "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}}
            await app(scope, receive, send)
            return sent

        sent = asyncio.run(call())
        assert sent[0]["status"] == 200, sent
        assert len(json.loads(sent[1]["body"])["forecasts"]) == 3
        print(json.dumps(sorted(sys.modules)))
    """)
    present = [name for name in FORBIDDEN if name in loaded]
    assert present == [], f"the serving path imported {present}"


def test_cli_module_is_light():
    """pipeline_code.serving.cli is imported by `forecast-mlops --help`: no FastAPI/uvicorn at import."""
    loaded = run_fresh("""
        import json, sys
        import pipeline_code.serving.cli
        print(json.dumps(sorted(sys.modules)))
    """)
    assert not [m for m in ("fastapi", "uvicorn", "httpx", "boto3", "matplotlib", "numpy") if m in loaded]


def test_loading_and_forecasting_never_unpickle(model_dir):
    """An audit hook fails the run if anything is unpickled (pickle.find_class) while loading/serving."""
    result = run_fresh(f"""
        import json, sys
        events = []
        sys.addaudithook(lambda event, args: events.append(event) if event.startswith("pickle") else None)
        from pipeline_code.serving.app import _load, _stamp
        from pipeline_code.serving.model_source import resolve_model
        resolved = resolve_model({str(model_dir)!r})
        loaded = _load(resolved, _stamp(resolved), 104)
        loaded.forecaster.predict(26, 0.9).records()
        print(json.dumps(events))
    """)
    assert result == []
