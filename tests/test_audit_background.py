"""keepalive.audit_in_background(): warnings once per offending connection, fix=True, stop, fork."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import keepalive
import keepalive._audit._background
from keepalive import Policy, _audit
from tests.helpers import LINUX, assert_policy_applied, keepalive_options

pytestmark = pytest.mark.skipif(not LINUX or not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")

LOGGER = "keepalive.audit"
FIX = Policy(idle=20, interval=4, count=3)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback connection without keepalive on either end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            yield client, server


def warnings_about(caplog: pytest.LogCaptureFixture, sock: socket.socket) -> list[logging.LogRecord]:
    fd = sock.fileno()
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and getattr(r, "keepalive_fd", None) == fd
    ]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait (not a timing assertion: a generous bound for a slow CI machine) until ``condition`` holds."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_each_offending_connection_is_warned_about_once(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    client, server = pair
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with keepalive.audit_in_background(3600, path_timeout=240, loopback=True) as handle:
        wait_for(lambda: handle.rounds >= 1, "the first round")
        handle.audit_now()
        handle.audit_now()
    records = warnings_about(caplog, client)
    assert len(records) == 1
    record = records[0]
    peer = "{}:{}".format(*client.getpeername())
    assert peer in record.getMessage()
    assert "no-keepalive" in record.getMessage()
    assert "fix:" in record.getMessage()
    assert record.keepalive_remote == peer  # type: ignore[attr-defined]
    assert record.keepalive_verdict == "no-keepalive"  # type: ignore[attr-defined]
    assert record.keepalive_path_timeout == 240.0  # type: ignore[attr-defined]
    assert len(warnings_about(caplog, server)) == 1


def test_too_slow_connection_warning_carries_the_numbers(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = pair
    keepalive.apply(client, Policy(idle=600, interval=30, count=3), strict=True)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with keepalive.audit_in_background(3600, path_timeout=240, loopback=True) as handle:
        handle.audit_now()
    (record,) = warnings_about(caplog, client)
    assert record.keepalive_verdict == "too-slow"  # type: ignore[attr-defined]
    assert record.keepalive_idle == 600  # type: ignore[attr-defined]
    assert record.keepalive_interval == 30  # type: ignore[attr-defined]
    assert "600 s" in record.getMessage()


def test_loopback_connections_are_not_reported_by_default(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = pair
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with keepalive.audit_in_background(3600, path_timeout=240) as handle:
        states = handle.audit_now()
    assert any(s.fd == client.fileno() and s.offending for s in states)
    assert warnings_about(caplog, client) == []


def test_connection_opened_later_is_reported_in_a_later_round(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        keepalive.audit_in_background(3600, path_timeout=240, loopback=True) as handle,
    ):
        wait_for(lambda: handle.rounds >= 1, "the thread's first round")  # then it sleeps for an hour
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            assert warnings_about(caplog, client) == []
            handle.audit_now()
            assert len(warnings_about(caplog, client)) == 1


def test_fix_applies_the_policy_to_offenders_only(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    client, server = pair
    good = Policy(idle=30, interval=5, count=3)
    keepalive.apply(server, good, strict=True)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with keepalive.audit_in_background(3600, policy=FIX, fix=True, path_timeout=240, loopback=True) as handle:
        handle.audit_now()
        assert_policy_applied(client, FIX)
        assert_policy_applied(server, good)  # ok already: left alone
        (record,) = warnings_about(caplog, client)
        assert "applied" in record.getMessage()
        assert record.keepalive_fixed is True  # type: ignore[attr-defined]
        states = handle.audit_now()
    assert next(s for s in states if s.fd == client.fileno()).verdict == "ok"
    assert len(warnings_about(caplog, client)) == 1
    client.sendall(b"still connected")
    assert server.recv(64) == b"still connected"


def test_without_fix_nothing_is_changed(pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = pair
    before = keepalive_options(client)
    with keepalive.audit_in_background(3600, policy=FIX, path_timeout=240, loopback=True) as handle:
        handle.audit_now()
    assert keepalive_options(client) == before


def test_stop_ends_the_thread() -> None:
    handle = keepalive.audit_in_background(3600, path_timeout=240)
    assert handle.running
    threads = [t for t in threading.enumerate() if t.name == "keepalive-audit"]
    assert threads
    assert all(t.daemon for t in threads)
    handle.stop()
    assert not handle.running
    handle.stop()  # idempotent
    assert "running=False" in repr(handle)


def test_context_manager_stops_on_exit() -> None:
    with keepalive.audit_in_background(0.01, path_timeout=240) as handle:
        wait_for(lambda: handle.rounds >= 3, "three rounds")
        assert handle.running
    assert not handle.running


def test_a_failing_round_is_logged_once_and_the_thread_keeps_going(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    real = _audit._background._own

    def flaky(*args: object, **kwargs: object) -> list[keepalive.SocketState]:
        calls.append(1)
        if len(calls) <= 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_audit._background, "_own", flaky)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with keepalive.audit_in_background(0.01, path_timeout=240) as handle:
        wait_for(lambda: handle.rounds >= 1, "a round after the failures")
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_child_after_fork_gets_its_own_audit_thread() -> None:
    with keepalive.audit_in_background(3600, path_timeout=240) as handle:
        stopped = keepalive.audit_in_background(3600, path_timeout=240)
        stopped.stop()
        parent_thread = handle._thread
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            ok = handle.running and handle._thread is not parent_thread and not stopped.running
            handle.stop()
            os.write(write_end, b"1" if ok and not handle.running else b"0")
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert handle.running  # the parent's thread is untouched


@pytest.mark.parametrize("bad", [0, -1, float("nan"), True])
def test_bad_interval_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        keepalive.audit_in_background(bad)


def test_without_proc_it_warns_and_returns_a_stopped_handle(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Other platforms (faked: no /proc) get one warning, not an exception at start-up."""

    def no_proc() -> None:
        raise keepalive.KeepaliveError("keepalive.audit needs Linux's /proc (this is darwin)")

    monkeypatch.setattr(_audit._background, "_require_proc", no_proc)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    handle = keepalive.audit_in_background(60)
    assert not handle.running
    assert any("not running" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    handle.stop()
