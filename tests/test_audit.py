"""keepalive.audit() on this process: real sockets with and without keepalive, read back through a duplicate."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest

import keepalive
import keepalive._audit._sweep
import keepalive._audit._tables
import keepalive._audit._verdict
from keepalive import Policy, SocketState, _audit, _policy
from tests.helpers import LINUX, keepalive_options

pytestmark = pytest.mark.skipif(not LINUX or not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")

TUNED = Policy(idle=30, interval=5, count=3)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@pytest.fixture
def no_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker detects no path timeout, so the policy is the yardstick."""
    monkeypatch.setattr(_policy, "_detect_path", lambda: None)


def connected_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    return client, server


def state_of(sock: socket.socket, states: list[SocketState]) -> SocketState:
    matches = [s for s in states if s.fd == sock.fileno()]
    assert len(matches) == 1, f"fd {sock.fileno()} not audited exactly once: {states}"
    return matches[0]


def test_socket_without_keepalive_is_no_keepalive(listener: socket.socket) -> None:
    client, server = connected_pair(listener)
    with client, server:
        state = state_of(client, keepalive.audit(path_timeout=240))
    assert state.keepalive is False
    assert state.verdict == "no-keepalive"
    assert state.offending
    assert state.state == "ESTABLISHED"
    assert state.fix is not None
    assert "keepalive.apply" in state.fix


def test_exact_options_are_read_back_and_fit_the_path(listener: socket.socket) -> None:
    client, server = connected_pair(listener)
    with client, server:
        keepalive.apply(client, TUNED, strict=True)
        state = state_of(client, keepalive.audit(path_timeout=240))
    assert (state.keepalive, state.idle, state.interval, state.count) == (True, 30, 5, 3)
    assert state.user_timeout == 45.0
    assert state.verdict == "ok"
    assert state.fix is None
    assert state.source == "getsockopt"
    assert state.path_timeout == 240.0


def test_addresses_pid_and_inode_match_the_socket(listener: socket.socket) -> None:
    client, server = connected_pair(listener)
    with client, server:
        state = state_of(client, keepalive.audit(path_timeout=240))
        host, port = client.getsockname()
        peer_host, peer_port = client.getpeername()
        assert state.local == f"{host}:{port}"
        assert state.remote == f"{peer_host}:{peer_port}"
        assert state.inode == os.fstat(client.fileno()).st_ino
    assert state.pid == os.getpid()
    assert state.family == "ipv4"
    assert state.loopback


def test_ipv6_loopback_connection_is_audited() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with listener6:
        client, server = connected_pair(listener6)
        with client, server:
            keepalive.apply(server, TUNED, strict=True)
            states = keepalive.audit(path_timeout=240)
            c, s = state_of(client, states), state_of(server, states)
            assert c.remote == f"[::1]:{listener6.getsockname()[1]}"
            assert s.local == f"[::1]:{listener6.getsockname()[1]}"
            assert state_of(listener6, states).state == "LISTEN"
    assert c.family == s.family == "ipv6"
    assert (c.verdict, s.verdict) == ("no-keepalive", "ok")
    assert s.idle == 30


def test_default_keepalive_idle_is_too_slow_for_the_path(listener: socket.socket) -> None:
    """SO_KEEPALIVE alone probes after the tcp_keepalive_time sysctl (7200 s by default): far too late."""
    client, server = connected_pair(listener)
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sysctl_idle = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        state = state_of(client, keepalive.audit(path_timeout=240))
    assert state.keepalive is True
    assert state.idle == sysctl_idle
    if sysctl_idle >= 240:
        assert state.verdict == "too-slow"
        assert "first probe" in state.reason


@pytest.mark.parametrize(
    ("idle", "interval", "verdict"),
    [
        (239, 1, "too-slow"),  # idle + interval reaches the timeout: a lost probe lets the path forget
        (240, 1, "too-slow"),  # the first probe comes too late
        (230, 9, "ok"),  # 239 < 240
        (200, 30, "ok"),
        (200, 40, "too-slow"),
    ],
)
def test_too_slow_when_idle_plus_interval_reaches_the_path_timeout(
    listener: socket.socket, idle: int, interval: int, verdict: str
) -> None:
    client, server = connected_pair(listener)
    with client, server:
        keepalive.apply(client, Policy(idle=idle, interval=interval, count=3), strict=True)
        state = state_of(client, keepalive.audit(path_timeout=240))
    assert state.verdict == verdict, state.reason


@pytest.mark.usefixtures("no_checker")
@pytest.mark.parametrize(
    ("idle", "interval", "verdict"),
    [(60, 10, "ok"), (30, 40, "ok"), (61, 1, "too-slow"), (50, 21, "too-slow"), (1, 1, "ok")],
)
def test_without_a_path_timeout_the_policy_is_the_yardstick(
    listener: socket.socket, idle: int, interval: int, verdict: str
) -> None:
    client, server = connected_pair(listener)
    with client, server:
        keepalive.apply(client, Policy(idle=idle, interval=interval, count=3), strict=True)
        state = state_of(client, keepalive.audit(Policy(idle=60, interval=10, count=5)))
    assert state.path_timeout is None
    assert state.verdict == verdict, state.reason
    assert "no path timeout configured" in state.reason


def test_path_timeout_comes_from_the_checker(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "_detect_path", lambda: (350.0, True, "KEEPALIVE_PATH_TIMEOUT"))
    client, server = connected_pair(listener)
    with client, server:
        keepalive.apply(client, Policy.below(240), strict=True)
        state = state_of(client, keepalive.audit())
    assert state.path_timeout == 350.0
    assert state.verdict == "ok"


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ((432000.0, False), None),  # the node's conntrack: longer than cloud NATs the node cannot see
        ((90.0, False), 90.0),  # below(90) is tighter than the built-in policy: used
        ((100.0, False), None),  # below(100) is not: the built-in policy (tighter still) is the yardstick
        ((2.0, False), 2.0),
        ((86400.0, True), 86400.0),  # configured: taken as given
    ],
)
def test_a_found_path_timeout_is_used_like_default_policy_uses_it(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, found: tuple[float, bool], expected: float | None
) -> None:
    monkeypatch.setattr(_policy, "_detect_path", lambda: (*found, "test evidence"))
    client, server = connected_pair(listener)
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        state = state_of(client, keepalive.audit())
    assert state.path_timeout == expected
    if expected is None:
        assert "no path timeout configured" in state.reason


def test_audit_changes_nothing_on_the_original_socket(listener: socket.socket) -> None:
    """Not the options, not the blocking mode (even with a default timeout set), not the connection; no fd leaks."""
    client, server = connected_pair(listener)
    with client, server:
        client.settimeout(None)
        keepalive.apply(client, TUNED, strict=True)
        before = keepalive_options(client)
        fds_before = set(os.listdir("/proc/self/fd"))
        old_default = socket.getdefaulttimeout()
        socket.setdefaulttimeout(3.0)  # socket.socket(fileno=dup) would flip the shared O_NONBLOCK with this set
        try:
            keepalive.audit(path_timeout=240)
        finally:
            socket.setdefaulttimeout(old_default)
        assert os.get_blocking(client.fileno())
        assert client.gettimeout() is None
        assert keepalive_options(client) == before
        assert set(os.listdir("/proc/self/fd")) == fds_before
        client.sendall(b"ping")
        assert server.recv(4) == b"ping"


def test_other_socket_kinds_are_skipped_quietly(listener: socket.socket) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix_a, unix_b = socket.socketpair(socket.AF_UNIX)
    with udp, unix_a, unix_b:
        fds = {s.fd for s in keepalive.audit(path_timeout=240)}
        assert fds.isdisjoint({udp.fileno(), unix_a.fileno(), unix_b.fileno()})
        assert listener.fileno() in fds


def test_listener_is_reported_with_its_own_verdict(listener: socket.socket) -> None:
    state = state_of(listener, keepalive.audit(path_timeout=240))
    assert state.state == "LISTEN"
    assert state.verdict == "no-keepalive"
    assert "listener" in state.reason
    assert state.remote == "0.0.0.0:0"


def test_descriptor_closed_during_the_scan_is_skipped(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    client, server = connected_pair(listener)
    closed_fd = client.fileno()
    real = _audit._sweep._socket_fds

    def list_then_close(proc: str) -> dict[int, int]:
        found = real(proc)
        client.close()  # between listing /proc/self/fd and duplicating the descriptor
        return found

    monkeypatch.setattr(_audit._sweep, "_socket_fds", list_then_close)
    with server:
        states = keepalive.audit(path_timeout=240)
    assert closed_fd not in {s.fd for s in states}
    assert any(s.fd == listener.fileno() for s in states)


def test_descriptor_reused_during_the_scan_is_not_mistaken_for_the_old_socket(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number is reused by another socket between listing and dup: the inode check skips it."""
    client, server = connected_pair(listener)
    fd = client.fileno()
    real = _audit._sweep._socket_fds
    replacement: list[socket.socket] = []

    def list_then_reuse(proc: str) -> dict[int, int]:
        found = real(proc)
        client.close()
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if other.fileno() != fd:
            os.dup2(other.fileno(), fd)
        replacement.append(other)
        return found

    monkeypatch.setattr(_audit._sweep, "_socket_fds", list_then_reuse)
    try:
        with server:
            states = keepalive.audit(path_timeout=240)
        assert fd not in {s.fd for s in states}
    finally:
        for sock in replacement:
            if sock.fileno() != fd:
                os.close(fd)
            sock.close()


def test_own_pid_is_the_same_as_no_pid(listener: socket.socket) -> None:
    fds = [s.fd for s in keepalive.audit(pid=os.getpid(), path_timeout=240)]
    assert listener.fileno() in fds


@pytest.mark.parametrize("bad", [0, -1, True])
def test_bad_pid_is_a_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="pid"):
        keepalive.audit(pid=bad)


def test_policy_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Policy"):
        keepalive.audit("60,10,5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Policy"):
        keepalive.audit_in_background(60, policy="60,10,5")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -5, True])
def test_bad_path_timeout_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="path_timeout"):
        keepalive.audit(path_timeout=bad)


def test_to_dict_is_json_ready_with_nulls(listener: socket.socket) -> None:
    import json

    state = state_of(listener, keepalive.audit(path_timeout=240))
    document = json.loads(json.dumps(state.to_dict()))
    for key in ("local", "remote", "state", "keepalive", "idle", "interval", "count", "user_timeout", "verdict"):
        assert key in document
    assert document["timer"] is None


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample rows are from a little-endian kernel")
def test_proc_net_tcp_rows_are_decoded() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 0200000A:D431 01 00000000:00000000 02:00000BB8 00000000  1000        0 4242 1 0\n"
        "   1: garbage\n"
        "   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0\n"
    )
    rows = list(_audit._tables._parse_table(text, "ipv4"))
    assert [r.inode for r in rows] == [4242, 4243]
    assert [r.inode for r in _audit._tables._parse_table(text, "ipv4", {4243})] == [4243]
    first = rows[0]
    assert (first.local, first.remote, first.state) == ("127.0.0.1:8080", "10.0.0.2:54321", "ESTABLISHED")
    assert (first.timer, first.timer_remaining, first.uid) == ("keepalive", 30.0, 1000)
    assert rows[1].state == "LISTEN"


@pytest.mark.skipif(sys.byteorder != "little", reason="the sample rows are from a little-endian kernel")
def test_ipv6_addresses_are_decoded_word_by_word() -> None:
    assert _audit._tables._address("00000000000000000000000001000000:1F90") == "[::1]:8080"
    assert _audit._tables._address("0000000000000000FFFF00000100007F:0050") == "[::ffff:127.0.0.1]:80"
    assert _audit._tables._address("B80D0120000000000000000001000000:01BB") == "[2001:db8::1]:443"


def test_audit_survives_sockets_opening_and_closing_in_other_threads(listener: socket.socket) -> None:
    """Descriptors close, get reused, change family under the audit's feet: it never raises and leaks nothing."""
    import threading

    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        while not stop.is_set():
            try:
                client = socket.create_connection(listener.getsockname())
                server, _ = listener.accept()
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                client.close()
                udp.close()
                server.close()
            except OSError as exc:  # pragma: no cover - would be a test-machine problem
                failures.append(exc)
                return

    thread = threading.Thread(target=churn)
    fds_before = len(os.listdir("/proc/self/fd"))
    thread.start()
    try:
        for _ in range(300):
            keepalive.audit(path_timeout=240)
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert len(os.listdir("/proc/self/fd")) == fds_before
