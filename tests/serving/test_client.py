"""`forecast-mlops forecast`: the local gateway, a deployed stack (moto), the table and the plot."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from pipeline_code.serving.cli import add_forecast_arguments, add_serve_arguments, run_forecast, run_serve
from pipeline_code.serving.gateway import KeyStore

from .conftest import ROOT


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_forecast_arguments(parser)
    return parser.parse_args(argv)


def test_table_from_the_local_gateway(server, capsys):
    code = run_forecast(parse(["--periods", "5", "--conf", "0.8", "--url", f"{server.url}/forecast",
                               "--api-key-file", str(server.extra["key_file"])]))
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("model harmonic-arima") and "80% interval" in lines[1]
    assert len(lines) == 2 + 5 and lines[2].startswith("2017-01-27")


def test_default_key_file_and_json_output(server, capsys, monkeypatch):
    monkeypatch.setenv("FORECAST_MLOPS_KEY_FILE", str(server.extra["key_file"]))
    code = run_forecast(parse(["--periods", "2", "--url", f"{server.url}/forecast", "--json"]))
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and len(document["forecasts"]) == 2 and document["conf"] == 0.9


def test_errors_are_reported_not_raised(server, capsys):
    code = run_forecast(parse(["--periods", "2", "--url", f"{server.url}/forecast", "--api-key", "fmk_nope"]))
    assert code == 1 and "HTTP 403" in capsys.readouterr().err
    key = KeyStore(server.extra["key_file"]).active_key().key
    code = run_forecast(parse(["--periods", "500", "--url", f"{server.url}/forecast", "--api-key", key]))
    assert code == 1 and "periods must be an integer from 1 to 104" in capsys.readouterr().err
    code = run_forecast(parse(["--periods", "2", "--url", "http://127.0.0.1:1/forecast", "--api-key", key,
                               "--timeout", "2"]))
    assert code == 1 and "cannot reach" in capsys.readouterr().err
    assert run_forecast(parse(["--periods", "2", "--conf", "1.5"])) == 2


def test_plot_in_a_fresh_process_imports_matplotlib_only_for_plot(server, tmp_path):
    key_file = str(server.extra["key_file"])
    png = tmp_path / "forecast.png"
    code = (
        "import sys, runpy\n"
        "sys.argv = ['cli', 'forecast', '--periods', '8', '--url', sys.argv[1], '--api-key-file', sys.argv[2]]"
        " + sys.argv[3:]\n"
        "try:\n    runpy.run_module('pipeline_code.serving.cli', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "print('MATPLOTLIB' if 'matplotlib' in sys.modules else 'NO-MATPLOTLIB')\n"
    )
    url = f"{server.url}/forecast"
    plain = subprocess.run([sys.executable, "-c", code, url, key_file], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().endswith("NO-MATPLOTLIB")
    plotted = subprocess.run([sys.executable, "-c", code, url, key_file, "--plot", str(png)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_stack_outputs_give_url_and_key(server, capsys, monkeypatch):
    """--stack: ApiUrl/ApiKeyId from CloudFormation, the key's value from API Gateway (moto)."""
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    local_key = KeyStore(server.extra["key_file"]).active_key().key
    with mock_aws():
        key_id = boto3.client("apigateway").create_api_key(name="forecast", enabled=True, value=local_key)["id"]
        template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {"ApiUrl": {"Value": f"{server.url}/"}, "ApiKeyId": {"Value": key_id}}}
        boto3.client("cloudformation").create_stack(StackName="forecast-mlops", TemplateBody=json.dumps(template))
        code = run_forecast(parse(["--periods", "3", "--stack", "forecast-mlops"]))
        out = capsys.readouterr().out
        assert code == 0 and len(out.strip().splitlines()) == 2 + 3
        assert run_forecast(parse(["--periods", "3", "--stack", "no-such-stack"])) == 1
        assert "cannot read stack" in capsys.readouterr().err


def test_serve_arguments_wire_like_the_main_cli(tmp_path, capsys):
    """pipeline_code.cli.main wires serve to add_serve_arguments/run_serve; the key admin actions need no model."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    key_file = tmp_path / "k.json"
    assert run_serve(parser.parse_args(["--api-key-file", str(key_file), "--issue-key"])) == 0
    assert "fmk_" in capsys.readouterr().out
    assert run_serve(parser.parse_args(["--api-key-file", str(key_file), "--list-keys"])) == 0
    assert "active" in capsys.readouterr().out
    assert run_serve(parser.parse_args([])) == 2  # --model is required to serve
    with pytest.raises(SystemExit):
        parser.parse_args(["--issue-key", "--list-keys"])
