"""Serving a panel model (one version, a model per series) over HTTP: a real uvicorn process on loopback."""

from __future__ import annotations

import json

import pytest

from pipeline_code.engine.core.panel_artifact import PanelModel
from pipeline_code.serving.model_source import resolve_model

from .conftest import http, post_json, start_server
from .panel_models import edit_section, panel

ITEMS = {"store-1": "seasonal_naive", "store-2": "harmonic_arima", "store 3/é": "seasonal_naive",
         "store-4": "seasonal_naive", "store-5": "seasonal_naive"}


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory):
    return panel(tmp_path_factory.mktemp("panel") / "model", ITEMS)


@pytest.fixture(scope="module")
def panel_server(panel_dir, tmp_path_factory):
    srv = start_server(["serve", "--model", str(panel_dir)], tmp_path_factory.mktemp("panel-server"))
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def ask(srv, document):
    return post_json(f"{srv.url}/invocations", document)


def test_ping_names_the_panel(panel_server):
    status, _, body = http("GET", f"{panel_server.url}/ping")
    assert status == 200 and json.loads(body)["model"]["name"] == "panel"


def test_one_item_is_its_own_models_forecast(panel_server, panel_dir):
    status, _, doc = ask(panel_server, {"item_id": "store 3/é", "periods": 14, "conf": 0.8, "history": 3})
    assert status == 200, doc
    assert set(doc) == {"model", "item_id", "conf", "forecasts", "history"}
    assert doc["item_id"] == "store 3/é" and doc["model"]["items"] == 5 and doc["model"]["metrics"] == {"mase": 0.8}
    expected = PanelModel.load(panel_dir).forecaster("store 3/é").predict(14, 0.8).records()
    assert doc["forecasts"] == expected
    assert len(doc["history"]) == 3 and doc["history"][-1]["timestamp"] == "2022-12-01"


def test_quantiles_are_keyed_like_amazon_forecast_and_never_cross(panel_server):
    status, _, doc = ask(panel_server, {"item_id": "store-2", "periods": 104, "quantiles": [0.9, 0.1, 0.5, 0.999]})
    assert status == 200, doc
    assert doc["quantiles"] == [0.1, 0.5, 0.9, 0.999] and "conf" not in doc
    keys = ["p10", "p50", "p90", "p99.9"]
    for row in doc["forecasts"]:
        assert set(row) == {"timestamp", "mean", *keys}
        assert [row[k] for k in keys] == sorted(row[k] for k in keys)


def test_a_list_of_items_in_the_order_asked(panel_server):
    asked = ["store-5", "store-1", "store-2"]
    status, _, doc = ask(panel_server, {"item_ids": asked, "periods": 3, "quantiles": [0.5], "history": 1})
    assert status == 200, doc
    assert set(doc) == {"model", "quantiles", "items"}
    assert [entry["item_id"] for entry in doc["items"]] == asked
    assert all(len(entry["forecasts"]) == 3 and len(entry["history"]) == 1 for entry in doc["items"])
    single = ask(panel_server, {"item_id": "store-1", "periods": 3, "quantiles": [0.5]})[2]
    assert doc["items"][1]["forecasts"] == single["forecasts"]


def test_unknown_items_are_404_naming_them(panel_server):
    status, _, doc = ask(panel_server, {"item_id": "store-9", "periods": 3, "conf": 0.9})
    assert status == 404 and doc == {"error": "unknown item 'store-9'"}
    status, _, doc = ask(panel_server, {"item_ids": ["store-1", "x", "y"], "periods": 3, "conf": 0.9})
    assert status == 404 and doc["error"] == "unknown items 'x', 'y'"
    many = [f"nope-{i}" for i in range(8)]
    status, _, doc = ask(panel_server, {"item_ids": many, "periods": 3, "conf": 0.9})
    assert status == 404 and doc["error"].endswith("and 3 more")
    assert "Traceback" not in panel_server.logs()


def test_a_panel_needs_an_item(panel_server):
    status, _, doc = ask(panel_server, {"periods": 3, "conf": 0.9})
    assert status == 400 and "holds 5 series: name one with item_id" in doc["error"]


def test_listing_items_by_page(panel_server):
    status, _, doc = ask(panel_server, {"list_items": True, "limit": 2})
    assert status == 200, doc
    assert doc["total"] == 5 and doc["item_ids"] == sorted(ITEMS)[:2] and doc["next_offset"] == 2
    pages, offset = [], 0
    while offset is not None:
        page = ask(panel_server, {"list_items": True, "offset": offset, "limit": 2})[2]
        pages += page["item_ids"]
        offset = page["next_offset"]
    assert pages == sorted(ITEMS)
    assert ask(panel_server, {"list_items": True, "offset": 99})[2]["item_ids"] == []


def test_the_panels_openapi_schema_takes_items(panel_server):
    schema = json.loads(http("GET", f"{panel_server.url}/openapi.json")[2])
    body = schema["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    forecast, listing = body["oneOf"]
    assert {"item_id", "item_ids", "quantiles"} <= set(forecast["properties"]) and listing["required"] == ["list_items"]


def test_a_single_series_model_refuses_items_and_takes_quantiles(open_server):
    status, _, doc = ask(open_server, {"item_id": "A", "periods": 3, "conf": 0.9})
    assert status == 400 and doc["error"] == "this model forecasts a single series; remove item_id"
    status, _, doc = ask(open_server, {"list_items": True})
    assert status == 400 and "single series" in doc["error"]
    status, _, doc = ask(open_server, {"periods": 3, "quantiles": [0.05, 0.95]})
    interval = ask(open_server, {"periods": 3, "conf": 0.9})[2]["forecasts"]
    assert status == 200 and [r["p5"] for r in doc["forecasts"]] == pytest.approx([r["lower"] for r in interval])


def test_an_items_broken_section_is_a_500_naming_it_and_the_rest_still_serve(tmp_path):
    folder = panel(tmp_path / "model", {"a": "seasonal_naive", "b": "seasonal_naive"})
    edit_section(folder, 1, lambda document: document["parameters"].update(sigma2=-1.0))
    srv = start_server(["serve", "--model", str(folder)], tmp_path)
    try:
        srv.wait_ready()
        status, _, doc = ask(srv, {"item_id": "b", "periods": 3, "conf": 0.9})
        assert status == 500 and doc["error"] == "the model of item 'b' is unusable (the server log says why)"
        assert ask(srv, {"item_id": "a", "periods": 3, "conf": 0.9})[0] == 200
        assert any(r.get("event") == "item_unusable" and "sigma2" in r.get("reason", "") for r in srv.log_records())
    finally:
        srv.stop()


def test_a_registry_serves_an_approved_panel_version(panel_dir, tmp_path):
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(panel_dir, registry / "versions" / "v0001" / "model")
    (registry / "approved.json").write_text(json.dumps({"version": "v0001", "path": "versions/v0001/model"}))
    resolved = resolve_model(tmp_path)
    assert resolved.version == "v0001" and (resolved.path / "panel.json").is_file()


def _client(argv: list[str]) -> int:
    import argparse

    from pipeline_code.serving.cli import add_forecast_arguments, run_forecast

    parser = argparse.ArgumentParser()
    add_forecast_arguments(parser)
    return run_forecast(parser.parse_args(argv))


def test_the_client_asks_for_items_quantiles_and_lists(panel_server, capsys, tmp_path):
    url = ["--url", f"{panel_server.url}/invocations", "--api-key", "unused"]
    assert _client(["--periods", "3", "--item", "store-1", "--quantiles", "0.1,0.5,0.9", *url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] == "item store-1" and lines[2].split() == ["timestamp", "mean", "p10", "p50", "p90"]
    assert len(lines) == 3 + 3
    assert _client(["--periods", "2", "--item", "store-2", "--item", "store-5", *url]) == 0
    out = capsys.readouterr().out
    assert "item store-2" in out and "item store-5" in out and "(90% interval)" in out
    assert _client(["--list-items", "--limit", "2", *url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1:3] == sorted(ITEMS)[:2] and lines[3] == "(2 of 5 items; next page: --offset 2)"
    assert _client(["--periods", "2", "--item", "nope", *url]) == 1
    assert "HTTP 404: unknown item 'nope'" in capsys.readouterr().err
    assert _client(["--item", "store-1", *url]) == 2 and "--periods is required" in capsys.readouterr().err
    png = tmp_path / "item.png"
    assert _client(["--periods", "6", "--item", "store-1", "--quantiles", "0.1,0.9", "--plot", str(png), *url]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_schemathesis_finds_no_issue_on_a_panel_model(panel_server, tmp_path):
    """The panel's OpenAPI schema (items, lists, listings, quantiles) against the server: no 5xx, answers
    as documented (random item ids get the documented 404)."""
    import subprocess
    import sys
    from pathlib import Path

    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "run", f"{panel_server.url}/openapi.json", "--checks", "all", "--max-examples", "100",
         "--seed", "20261125", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in panel_server.logs()
