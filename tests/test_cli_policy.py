"""`keepalive policy`, `python -m keepalive` and the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from keepalive import Policy
from keepalive._cli import main


def test_policy_command_prints_the_default_and_platform_support(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy"]) == 0
    out = capsys.readouterr().out
    assert "policy:    idle=" in out
    assert "KEEPALIVE_IDLE=" in out
    assert "SO_KEEPALIVE" in out


def test_policy_command_json_below(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "--below", "350", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = Policy.below(350)
    assert data["policy"] == {"idle": expected.idle, "interval": 30, "count": 5, "user_timeout": 382}
    assert data["env"]["KEEPALIVE_IDLE"] == str(expected.idle)
    assert data["setsockopt"][-1]["option"] == "SO_KEEPALIVE"


def test_policy_command_reports_a_broken_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEEPALIVE_COUNT", "many")
    assert main(["policy"]) == 2
    assert "KEEPALIVE_COUNT='many'" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: keepalive" in capsys.readouterr().err


def test_python_dash_m_keepalive_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keepalive", "policy", "--policy", "30,5,3", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KEEPALIVE_CHECK": "0"},
    )
    assert json.loads(result.stdout)["policy"]["idle"] == 30


def test_console_script_is_installed() -> None:
    script = shutil.which("keepalive", path=os.path.dirname(sys.executable))
    assert script is not None, "the keepalive console script is not installed next to this Python"
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("keepalive ")


def test_policy_command_shows_the_path_models_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    """`keepalive policy` shows the evidence, the minimum and the rule: a named azure-lb beats a longer path."""
    monkeypatch.setenv("KEEPALIVE_PATH_TIMEOUT", "3600")
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "azure-lb")
    assert main(["policy"]) == 0
    out = capsys.readouterr().out
    expected = Policy.below(240)
    assert f"policy:    idle={expected.idle}s interval={expected.interval}s" in out
    assert "path:      240 s, the minimum over:" in out
    assert "middlebox azure-lb from KEEPALIVE_MIDDLEBOX" in out
    assert "KEEPALIVE_PATH_TIMEOUT" in out
    assert main(["policy", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == expected.to_dict()
    assert data["path"]["path_timeout"] == 240
    assert data["path"]["named"] is True
    assert {item["kind"] for item in data["path"]["evidence"]} >= {"explicit"}
