"""The runtime side: detected_path_timeout() for default_policy(), and run_once() logging each problem once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive
from keepalive import Policy
from keepalive import _runtime as core_runtime
from keepalive.checker import _runtime as checker_runtime
from tests.checker_support import make_proc, nf_stat_text
from tests.helpers import echo_server


@pytest.fixture(autouse=True)
def _fresh_checker() -> Iterator[None]:
    checker_runtime.reset()
    yield
    checker_runtime.reset()


def test_middlebox_env_is_an_explicit_path_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "gcp-cloud-nat,aws-nat-gateway")
    assert checker_runtime.detected_path_timeout() == (350.0, True)
    assert keepalive.default_policy() == Policy.below(350)


def test_node_conntrack_timeout_is_found_not_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_timeout_established": 40})
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    assert checker_runtime.detected_path_timeout() == (40.0, False)
    assert keepalive.default_policy() == Policy.below(40)  # tighter than the built-in default: used


def test_pod_namespace_conntrack_timeout_is_not_the_nodes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 40, "net.netfilter.nf_conntrack_count": 0},
        initial=False,
    )
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    assert checker_runtime.detected_path_timeout() is None
    assert keepalive.default_policy() == keepalive.BUILTIN_POLICY


def test_kube_proxy_config_env_is_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "kp.json"
    config.write_text(
        '{"kind": "KubeProxyConfiguration", "mode": "ipvs", "conntrack": {"tcpEstablishedTimeout": "2h"}}'
    )
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path / "proc")))
    monkeypatch.setenv("KEEPALIVE_KUBE_PROXY_CONFIG", str(config))
    assert checker_runtime.detected_path_timeout() == (900.0, True)  # IPVS mode, tcpTimeout unset: 900 s


@pytest.mark.parametrize(
    "env",
    [
        {"KEEPALIVE_MIDDLEBOX": "nonsense,\x00", "KEEPALIVE_PATH_TIMEOUT": "-3", "KEEPALIVE_PROC_ROOT": "/nonexistent"},
        {"KEEPALIVE_KUBE_PROXY_CONFIG": "/nonexistent/\x00", "KEEPALIVE_PROC_ROOT": "/nonexistent"},
        {"KEEPALIVE_PATH_TIMEOUT": "inf", "KEEPALIVE_PROC_ROOT": "\x00"},
    ],
)
def test_broken_environment_never_raises(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("\x00", "x"))
    assert checker_runtime.detected_path_timeout() is None


def test_path_timeout_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(tmp_path / "missing"))
    monkeypatch.setenv("KEEPALIVE_PATH_TIMEOUT", "120s")
    assert checker_runtime.detected_path_timeout() == (120.0, True)


def _check_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "keepalive.check"]


def test_run_once_logs_each_warning_and_error_once_with_numbers_in_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = make_proc(tmp_path, nf_stat=nf_stat_text([{"invalid": 12}]))
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "azure-lb")
    monkeypatch.setenv("KEEPALIVE_IDLE", "300")
    caplog.set_level(logging.DEBUG, logger="keepalive")
    checker_runtime.run_once()
    checker_runtime.run_once()
    records = _check_records(caplog)
    by_code = {getattr(r, "keepalive_code", None): r for r in records}
    assert len(records) == len(by_code)  # each once
    error = by_code["policy-idle-exceeds-path-timeout"]
    assert error.levelno == logging.ERROR
    assert "300 s" in error.getMessage()
    assert "240 s" in error.getMessage()
    assert error.keepalive_idle == 300  # type: ignore[attr-defined]
    assert error.keepalive_path_timeout == 240  # type: ignore[attr-defined]
    invalid = by_code["conntrack-invalid-packets"]
    assert invalid.levelno == logging.WARNING
    assert invalid.keepalive_invalid == 12  # type: ignore[attr-defined]
    assert "--conntrack-tcp-be-liberal" in invalid.keepalive_fix  # type: ignore[attr-defined]
    assert all(r.levelno >= logging.WARNING for r in records)  # info findings are not logged


def test_first_connection_runs_the_check_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "aws-nat-gateway")
    monkeypatch.setenv("KEEPALIVE_IDLE", "400")
    caplog.set_level(logging.WARNING, logger="keepalive")
    with echo_server() as address:
        for _ in range(3):
            keepalive.create_connection(address, timeout=5).close()
    codes = [getattr(r, "keepalive_code", None) for r in _check_records(caplog)]
    assert codes.count("policy-idle-exceeds-path-timeout") == 1


def test_keepalive_check_0_turns_the_runtime_check_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    monkeypatch.setenv("KEEPALIVE_PATH_TIMEOUT", "350")
    monkeypatch.setenv("KEEPALIVE_IDLE", "400")
    monkeypatch.setenv("KEEPALIVE_CHECK", "0")
    caplog.set_level(logging.DEBUG, logger="keepalive")
    core_runtime.resolve(None)
    assert not [r for r in _check_records(caplog) if r.levelno >= logging.WARNING]


def test_run_once_never_raises_on_a_broken_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = make_proc(tmp_path, {"net.ipv4.tcp_keepalive_time": b"\x00\xff"}, nf_stat=b"\x00")
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    monkeypatch.setenv("KEEPALIVE_KUBE_PROXY_CONFIG", str(tmp_path))  # a directory
    monkeypatch.setenv("KEEPALIVE_IDLE", "garbage")
    caplog.set_level(logging.WARNING, logger="keepalive")
    checker_runtime.run_once()
    codes = {getattr(r, "keepalive_code", None) for r in _check_records(caplog)}
    assert "kube-proxy-unreadable" in codes
    assert "invalid-policy-environment" not in codes  # the core logs that one itself (keepalive.policy)
