"""Bad command-line input: a one-line error and exit code 2, before any work, never a traceback."""

from __future__ import annotations

import pytest

from pipeline_code.cli.main import main

DATA = "pipeline_code/data/us_gasoline.csv"


@pytest.mark.parametrize("argv, expected", [
    (["pipeline", "run", "--data", DATA, "--workdir", "w", "--port", "99999"], "must be a port number 0..65535"),
    (["pipeline", "run", "--data", DATA, "--workdir", "w", "--jobs", "-3"], "must be a positive integer"),
    (["backtest", "--data", DATA, "--out", "bt", "--origins", "0"], "must be a positive integer"),
    (["runs", "list", "--workdir", "w", "--limit", "-1"], "must be a positive integer"),
    (["forecast", "--periods", "3", "--plot", "."], "is a folder; give a file name such as forecast.png"),
    (["forecast", "--periods", "3", "--plot", "noext"], "give a file name ending in .png, .svg, .pdf"),
    (["tuning", "show", "r", "--workdir", "w", "--plot", "t.xyz"], "give a file name ending in .png"),
    (["forecast", "--periods", "3", "--quantiles", ","], "expected numbers separated by commas"),
    (["forecast", "--periods", "3", "--quantiles", "nan"], "expected numbers separated by commas"),
    (["forecast", "--periods", "3", "--timeout", "0"], "must be a positive number"),
])
def test_arguments_are_checked_when_parsed(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and expected in capsys.readouterr().err


def test_paths_of_the_wrong_kind_are_one_line_errors(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert main(["pipeline", "run", "--data", DATA, "--workdir", str(tmp_path / "w"), "--settings", str(tmp_path),
                 "--no-serve"]) == 2
    assert f"{tmp_path}: cannot read: Is a directory" in capsys.readouterr().err
    assert main(["models", "list", "--workdir", str(a_file)]) == 2
    assert main(["runs", "show", "", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'' is not a run" in err


def test_the_preflight_without_credentials_says_so(tmp_path, monkeypatch, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert main(["doctor", "--stack", "ForecastMlops"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("doctor: ") and "region" in err and "Traceback" not in err


def test_the_preflight_says_how_to_give_a_region_and_credentials(tmp_path, monkeypatch, capsys):
    """botocore raises both before any request: no network (instance metadata is off)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["doctor", "--stack", "ForecastMlops"]) == 2
    assert capsys.readouterr().err == ("doctor: You must specify a region. Give --region REGION, or set AWS_REGION"
                                       " (or a region in your AWS profile).\n")
    assert main(["doctor", "--stack", "ForecastMlops", "--region", "eu-west-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("doctor: Unable to locate credentials. Configure them: `aws configure`") and (
        "AWS_ACCESS_KEY_ID" in err and err.count("\n") == 1)


@pytest.mark.parametrize("version", ["²", "٣", "v٠٠٠٣", "3 "])
def test_a_version_is_ascii_digits_for_a_stack_too(version, capsys):
    """Refused before the stack is read (no AWS call): int() would take "٣" for 3 and fail on "²"."""
    assert main(["models", "reject", version, "--stack", "S", "--region", "eu-west-1"]) == 2
    assert capsys.readouterr().err == (f"error: {version!r} is not a version name: versions are named v0001"
                                       " (or 1), v0002, ...\n")


def test_tune_and_backtest_name_a_panel_as_such(tmp_path, capsys):
    rows = [f"{item},{2015 + k // 12}-{k % 12 + 1:02d}-01,{10 + k % 12}" for item in "ab" for k in range(120)]
    panel = tmp_path / "stores.csv"
    panel.write_text("\n".join(["item_id,timestamp,value", *rows]) + "\n")
    for command in (["tune", "--out", str(tmp_path / "t")], ["backtest", "--out", str(tmp_path / "b")]):
        assert main([*command, "--data", str(panel)]) == 2
        assert "takes one series (timestamp,value); this file is a panel" in capsys.readouterr().err


def test_watch_refuses_to_serve_on_a_busy_port_before_it_starts(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["watch", str(tmp_path), "--serve", "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / ".forecast-mlops").exists()  # nothing started, nothing written
