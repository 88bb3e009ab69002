"""The runtime side: detected_path_timeout() for default_policy(), and run_once() judging each distinct policy
against the path model in the background, logging each problem once."""

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
from tests.helpers import echo_server, forked_exit_code


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


def test_pod_namespace_kernel_default_is_not_the_nodes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 432000, "net.netfilter.nf_conntrack_count": 0},
        initial=False,
    )
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    assert checker_runtime.detected_path_timeout() is None
    assert keepalive.default_policy() == keepalive.BUILTIN_POLICY


def test_pod_namespace_value_set_on_purpose_counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 40, "net.netfilter.nf_conntrack_count": 0},
        initial=False,
    )
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    assert checker_runtime.detected_path_timeout() == (40.0, False)
    assert keepalive.default_policy() == Policy.below(40)


def test_kube_proxy_config_env_is_node_evidence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 14: kube-proxy's configuration is the node's evidence, not the user naming the path: an IPVS config
    (900 s) must not loosen the built-in default to idle 300."""
    config = tmp_path / "kp.json"
    config.write_text(
        '{"kind": "KubeProxyConfiguration", "mode": "ipvs", "conntrack": {"tcpEstablishedTimeout": "2h"}}'
    )
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path / "proc")))
    monkeypatch.setenv("KEEPALIVE_KUBE_PROXY_CONFIG", str(config))
    assert checker_runtime.detected_path_timeout() == (900.0, False)  # IPVS mode, tcpTimeout unset: 900 s
    assert keepalive.default_policy() == keepalive.BUILTIN_POLICY


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
    assert checker_runtime.wait(30)
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
    assert invalid.levelno == logging.INFO  # counted since boot: history, not something this process can act on
    assert invalid.keepalive_invalid == 12  # type: ignore[attr-defined]
    assert "--conntrack-tcp-be-liberal" in invalid.keepalive_fix  # type: ignore[attr-defined]
    assert [r for r in records if r.levelno >= logging.WARNING] == [error]


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
    assert checker_runtime.wait(30)
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
    assert checker_runtime.wait(30)
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
    assert checker_runtime.wait(30)
    codes = {getattr(r, "keepalive_code", None) for r in _check_records(caplog)}
    assert "kube-proxy-unreadable" in codes
    assert "invalid-policy-environment" not in codes  # the core logs that one itself (keepalive.policy)


def test_each_distinct_policy_is_judged_on_its_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14: create_connection(..., policy=Policy(idle=7200)) behind KEEPALIVE_MIDDLEBOX=aws-nat-gateway was
    never judged: the runtime check looked at the process default only."""
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "aws-nat-gateway")
    caplog.set_level(logging.INFO, logger="keepalive")
    with echo_server() as address:
        keepalive.create_connection(address, timeout=5).close()  # the default: below(350), fits
        for _ in range(2):
            keepalive.create_connection(address, timeout=5, policy=Policy(idle=7200)).close()
    assert checker_runtime.wait(30)
    problems = [r for r in _check_records(caplog) if r.levelno >= logging.WARNING]
    assert [getattr(r, "keepalive_code", None) for r in problems] == ["policy-idle-exceeds-path-timeout"]
    assert problems[0].keepalive_idle == 7200  # type: ignore[attr-defined]
    assert problems[0].keepalive_path_timeout == 350  # type: ignore[attr-defined]


def test_node_settings_the_wrapped_sockets_do_not_use_are_info(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tcp_keepalive_time above the path timeout matters only for sockets without their own idle: INFO here."""
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path, {"net.ipv4.tcp_keepalive_time": 7200})))
    monkeypatch.setenv("KEEPALIVE_MIDDLEBOX", "aws-nat-gateway")
    caplog.set_level(logging.INFO, logger="keepalive")
    core_runtime.resolve(None)
    assert checker_runtime.wait(30)
    records = {getattr(r, "keepalive_code", None): r for r in _check_records(caplog)}
    assert records["kernel-keepalive-exceeds-path-timeout"].levelno == logging.INFO
    assert not [r for r in records.values() if r.levelno >= logging.WARNING]


def test_resolve_returns_before_the_check_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 18: the check (imports, /proc, YAML) runs in a daemon thread; resolve() does not wait for it."""
    import threading

    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    release = threading.Event()
    started = threading.Event()
    caller = threading.get_ident()
    ran_in: list[int] = []

    def slow_check(policy: object) -> None:
        ran_in.append(threading.get_ident())
        started.set()
        release.wait(30)

    monkeypatch.setattr(checker_runtime, "check_policy", slow_check)
    policy = core_runtime.resolve(Policy(idle=42))  # would block here if the check ran inline
    assert policy == Policy(idle=42)
    assert started.wait(30)
    release.set()
    assert checker_runtime.wait(30)
    assert ran_in
    assert ran_in[0] != caller


def test_a_fork_while_the_runtime_locks_are_held_does_not_deadlock_the_child() -> None:
    """Issue 15 item 4: both runtime locks are new in a child, so its first connection's resolve() returns."""
    import os
    import warnings

    with core_runtime._lock, checker_runtime._lock:  # as if another thread were inside them at fork time
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.environ["KEEPALIVE_CHECK"] = "0"
                code = 0 if core_runtime.resolve(Policy(idle=41)) == Policy(idle=41) else 3
                checker_runtime.run_once(Policy(idle=43))
            finally:
                os._exit(code)
    assert forked_exit_code(pid, within=60, deadlock="the child deadlocked on a runtime lock held at fork time") == 0


def test_a_conntrack_counter_rising_during_the_sample_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14: since-boot counters are history (INFO); invalid packets counted *while the process runs* are a
    WARNING. The fake node's counter rises from 12 to 40 during a 1 s sample."""
    import threading

    proc = make_proc(tmp_path, nf_stat=nf_stat_text([{"invalid": 12}]))
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    monkeypatch.setenv("KEEPALIVE_CHECK_SAMPLE", "1")
    caplog.set_level(logging.DEBUG, logger="keepalive")
    stat = proc / "net" / "stat" / "nf_conntrack"
    rise = threading.Timer(0.4, lambda: stat.write_text(nf_stat_text([{"invalid": 40}])))
    checker_runtime.run_once(Policy(idle=30, interval=5, count=3))
    rise.start()
    try:
        assert checker_runtime.wait(30, sample=True)
    finally:
        rise.cancel()
    records = [r for r in _check_records(caplog) if getattr(r, "keepalive_code", None) == "conntrack-invalid-packets"]
    levels = sorted(r.levelno for r in records)
    assert levels == [logging.INFO, logging.WARNING]  # since boot first, then rising during the sample
    warning = next(r for r in records if r.levelno == logging.WARNING)
    assert warning.keepalive_invalid_per_second > 0  # type: ignore[attr-defined]
    assert "sample" in warning.getMessage()


def test_a_counter_that_does_not_rise_during_the_sample_stays_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = make_proc(tmp_path, nf_stat=nf_stat_text([{"invalid": 12, "drop": 3}]))
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(proc))
    monkeypatch.setenv("KEEPALIVE_CHECK_SAMPLE", "0.5")
    caplog.set_level(logging.DEBUG, logger="keepalive")
    checker_runtime.run_once(Policy(idle=30, interval=5, count=3))
    assert checker_runtime.wait(30, sample=True)
    assert [r for r in _check_records(caplog) if r.levelno >= logging.WARNING] == []
    assert {"conntrack-invalid-packets", "conntrack-drops"} <= {
        getattr(r, "keepalive_code", None) for r in caplog.records
    }


def test_the_sample_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEEPALIVE_PROC_ROOT", str(make_proc(tmp_path)))
    monkeypatch.setenv("KEEPALIVE_CHECK_SAMPLE", "off")
    checker_runtime.run_once(Policy(idle=30, interval=5, count=3))
    assert checker_runtime.wait(30)
    assert checker_runtime.wait(0.01, sample=True)  # nothing sampling: returns at once, all finished
