"""apply(), socket_options(), create_connection() and create_server() on real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator

import pytest

import keepalive
from keepalive import KeepaliveError, Policy
from tests.helpers import LINUX, assert_policy_applied, echo_server, keepalive_options

pytestmark = pytest.mark.skipif(not LINUX, reason="reads Linux socket options back")

POLICY = Policy(idle=17, interval=4, count=3, user_timeout=9.5)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield client, server
    client.close()
    server.close()


def test_apply_sets_every_option_on_a_connected_socket(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = tcp_pair
    assert keepalive_options(client)["keepalive"] == 0
    applied = keepalive.apply(client, POLICY)
    assert applied.ok
    assert applied.set == ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT", "SO_KEEPALIVE")
    assert applied.unsupported == ()
    assert keepalive_options(client) == {
        "keepalive": 1,
        "idle": 17,
        "interval": 4,
        "count": 3,
        "user_timeout_ms": 9500,
    }


@pytest.mark.parametrize(
    "policy",
    [
        Policy(idle=1, interval=1, count=1),
        Policy(idle=32767, interval=32767, count=127),
        Policy.below(3),
        Policy.below(350),
        Policy(user_timeout=0),
    ],
)
def test_round_trip_of_extreme_and_derived_policies(policy: Policy) -> None:
    with socket.socket() as sock:
        assert keepalive.apply(sock, policy).ok
        assert_policy_applied(sock, policy)


def test_user_timeout_none_leaves_the_sockets_own_value() -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 4321)
        keepalive.apply(sock, Policy(user_timeout=None))
        assert keepalive_options(sock)["user_timeout_ms"] == 4321


def test_apply_without_policy_uses_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "33")
    with socket.socket() as sock:
        applied = keepalive.apply(sock)
        assert applied.policy.idle == 33
        assert keepalive_options(sock)["idle"] == 33


def test_apply_works_on_ipv6_sockets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        assert keepalive.apply(sock, POLICY).ok
        assert_policy_applied(sock, POLICY)


@pytest.mark.parametrize(
    ("family", "kind"),
    [(socket.AF_INET, socket.SOCK_DGRAM), (socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM)],
)
def test_non_tcp_sockets_are_skipped_untouched(
    family: socket.AddressFamily, kind: socket.SocketKind, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(family, kind) as sock, caplog.at_level(logging.DEBUG, logger="keepalive"):
        applied = keepalive.apply(sock, POLICY)
        assert applied.skipped is not None
        assert "not a TCP socket" in applied.skipped
        assert not applied.ok
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    assert all(record.levelno == logging.DEBUG for record in caplog.records)
    assert any("not a TCP socket" in record.getMessage() for record in caplog.records)


def test_closed_socket_is_skipped() -> None:
    sock = socket.socket()
    sock.close()
    applied = keepalive.apply(sock, POLICY)
    assert applied.skipped == "the socket is closed"


@pytest.mark.parametrize("make", [lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket])
def test_strict_raises_for_what_default_mode_skips(make: object) -> None:
    sock = make()  # type: ignore[operator]
    if sock.type == socket.SOCK_STREAM:
        sock.close()
    with pytest.raises(KeepaliveError, match="cannot apply keepalive"):
        keepalive.apply(sock, POLICY, strict=True)
    sock.close()


@pytest.mark.parametrize("thing", [object(), "str", None, 42, b"bytes", socket])
@pytest.mark.parametrize("strict", [False, True])
def test_what_is_not_a_socket_is_a_type_error_naming_it(thing: object, strict: bool) -> None:
    """A programmer error is not hidden behind a quiet skip: apply(object()) raises TypeError naming the type."""
    with pytest.raises(TypeError, match=rf"apply\(\) needs a socket .*got {type(thing).__name__}"):
        keepalive.apply(thing, POLICY, strict=strict)  # type: ignore[arg-type]


def test_a_wrong_policy_type_is_a_type_error() -> None:
    with socket.socket() as sock, pytest.raises(TypeError, match=r"keepalive\.Policy"):
        keepalive.apply(sock, {"idle": 5})  # type: ignore[arg-type]


def test_apply_logs_nothing_on_success(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock, caplog.at_level(logging.DEBUG, logger="keepalive"):
        keepalive.apply(sock, POLICY)
    assert caplog.records == []


def test_apply_on_an_asyncio_transport_socket() -> None:
    async def main() -> None:
        with echo_server() as (host, port):
            _reader, writer = await asyncio.open_connection(host, port)
            transport_socket = writer.get_extra_info("socket")
            assert type(transport_socket).__name__ == "TransportSocket"
            assert keepalive.apply(transport_socket, POLICY).ok
            assert_policy_applied(transport_socket, POLICY)
            writer.close()
            await writer.wait_closed()

    asyncio.run(main())


def test_apply_on_a_trio_socket() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        sock = trio.socket.socket()
        with sock:
            assert keepalive.apply(sock, POLICY).ok
            assert_policy_applied(sock, POLICY)

    trio.run(main)


def test_socket_options_are_the_triples_apply_makes() -> None:
    assert keepalive.socket_options(POLICY) == [
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 17),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 4),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
        (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 9500),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    with socket.socket() as sock:
        for level, optname, value in keepalive.socket_options(POLICY):
            sock.setsockopt(level, optname, value)
        assert_policy_applied(sock, POLICY)


# -- create_connection ------------------------------------------------------------------------------------------


def test_create_connection_sets_options_and_talks() -> None:
    with echo_server() as address:
        sock = keepalive.create_connection(address, timeout=5, policy=POLICY)
        with sock:
            assert_policy_applied(sock, POLICY)
            assert sock.gettimeout() == 5
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"


def test_create_connection_uses_the_default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_PATH_TIMEOUT", "350")
    with echo_server() as address, keepalive.create_connection(address) as sock:
        assert_policy_applied(sock, Policy.below(350))
        assert sock.gettimeout() is None


def test_create_connection_over_ipv6_and_with_a_source_address() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with (
        echo_server("::1", socket.AF_INET6) as (host, port),
        keepalive.create_connection((host, port), source_address=("::1", 0), policy=POLICY) as sock,
    ):
        assert sock.family == socket.AF_INET6
        assert_policy_applied(sock, POLICY)


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_create_connection_raises_what_the_stdlib_raises() -> None:
    port = _refused_port()
    with pytest.raises(ConnectionRefusedError) as ours:
        keepalive.create_connection(("127.0.0.1", port), policy=POLICY)
    with pytest.raises(ConnectionRefusedError) as theirs:
        socket.create_connection(("127.0.0.1", port))
    assert ours.value.errno == theirs.value.errno


def test_create_connection_tries_every_address_and_groups_errors() -> None:
    """'localhost' resolves to ::1 and 127.0.0.1 here: with nothing listening both are tried."""
    port = _refused_port()
    infos = socket.getaddrinfo("localhost", port, 0, socket.SOCK_STREAM)
    with pytest.raises(ExceptionGroup) as group:
        keepalive.create_connection(("localhost", port), all_errors=True, policy=POLICY)
    assert len(group.value.exceptions) == len(infos)
    assert all(isinstance(exc, ConnectionRefusedError) for exc in group.value.exceptions)


def test_create_connection_falls_through_to_a_working_address() -> None:
    """A listener on 127.0.0.1 only: 'localhost' may resolve to ::1 first, which is refused, then works."""
    with (
        echo_server("127.0.0.1") as (_host, port),
        keepalive.create_connection(("localhost", port), policy=POLICY) as s,
    ):
        assert s.getpeername()[1] == port


def test_create_connection_name_errors_propagate() -> None:
    with pytest.raises(socket.gaierror):
        keepalive.create_connection(("name.invalid", 80), timeout=1, policy=POLICY)


# -- create_server ----------------------------------------------------------------------------------------------


def test_accepted_connections_inherit_the_listeners_policy() -> None:
    """Linux copies keepalive settings from the listener to every socket accept() returns."""
    listener = keepalive.create_server(("127.0.0.1", 0), policy=POLICY)
    with listener, socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with accepted:
            assert_policy_applied(accepted, POLICY)
            assert keepalive_options(client)["keepalive"] == 0


def test_create_server_dualstack_and_errors() -> None:
    if socket.has_dualstack_ipv6():
        with keepalive.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True, policy=POLICY) as srv:
            port = srv.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)):
                accepted, _ = srv.accept()
                with accepted:
                    assert_policy_applied(accepted, POLICY)
    with (
        keepalive.create_server(("127.0.0.1", 0), policy=POLICY) as busy,
        pytest.raises(OSError, match="while attempting to bind"),
    ):
        keepalive.create_server(busy.getsockname(), policy=POLICY)
    with pytest.raises(ValueError, match="dualstack_ipv6 requires AF_INET6"):
        keepalive.create_server(("127.0.0.1", 0), dualstack_ipv6=True)


def test_borrow_socket_leaves_the_owners_blocking_mode_alone() -> None:
    """Wrapping a client's descriptor must not make its blocking socket non-blocking (setdefaulttimeout set)."""
    from keepalive._socket import borrow_socket

    with echo_server() as address, socket.create_connection(address) as owner:
        owner.setblocking(True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(3.0)
        try:
            borrowed = borrow_socket(owner.fileno())
            keepalive.apply(borrowed, POLICY)
            borrowed.detach()
        finally:
            socket.setdefaulttimeout(previous)
        assert os.get_blocking(owner.fileno())
        assert_policy_applied(owner, POLICY)


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which refusals this process has already warned about."""
    from keepalive import _socket

    monkeypatch.setattr(_socket, "_warned", {})


def _mptcp_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM, getattr(socket, "IPPROTO_MPTCP", 262))
    except OSError as exc:
        pytest.skip(f"no MPTCP here: {exc}")


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "keepalive.socket" and r.levelno == logging.WARNING]


@pytest.mark.usefixtures("fresh_warnings")
def test_a_tcp_socket_that_refuses_an_option_gets_the_others_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """MPTCP sockets (a TCP socket to the application) refuse TCP_USER_TIMEOUT with ENOPROTOOPT: the other options
    are set, Applied.failed names the refusal, and one WARNING per process names the option and the errno."""
    import errno

    with caplog.at_level(logging.DEBUG, logger="keepalive"):
        for _ in range(3):
            with _mptcp_socket() as sock:
                applied = keepalive.apply(sock, POLICY)
                assert applied.skipped is None
                assert not applied.ok
                assert [name for name, _text in applied.failed] == ["TCP_USER_TIMEOUT"]
                assert applied.set == ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "SO_KEEPALIVE")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == POLICY.idle
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    warnings = _refusals(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "TCP_USER_TIMEOUT" in message
    assert "ENOPROTOOPT" in message
    assert warnings[0].keepalive_option == "TCP_USER_TIMEOUT"  # type: ignore[attr-defined]
    assert warnings[0].keepalive_errno == errno.ENOPROTOOPT  # type: ignore[attr-defined]


@pytest.mark.usefixtures("fresh_warnings")
def test_each_distinct_refusal_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    """A different (option, errno) gets its own WARNING: the kernel's EINVAL for TCP_KEEPIDLE 0 (a value only a
    hand-made plan can carry) next to MPTCP's ENOPROTOOPT for TCP_USER_TIMEOUT."""
    from keepalive._platform import CURRENT, Plan, compile_plan

    policy = Policy(idle=5)
    real = compile_plan(policy, CURRENT)
    calls = tuple((n, lvl, opt, 0 if n == "TCP_KEEPIDLE" else v) for n, lvl, opt, v in real.calls)
    object.__setattr__(policy, "_plan", Plan(calls=calls, ioctl=None, success=real.success))
    with caplog.at_level(logging.WARNING, logger="keepalive"):
        for _ in range(2):
            with socket.socket() as sock:
                applied = keepalive.apply(sock, policy)
                assert [name for name, _text in applied.failed] == ["TCP_KEEPIDLE"]
                assert "EINVAL" in applied.failed[0][1]
            with _mptcp_socket() as sock:
                keepalive.apply(sock, POLICY)
    messages = sorted(r.getMessage() for r in _refusals(caplog))
    assert len(messages) == 2, messages
    assert "TCP_KEEPIDLE" in messages[0]
    assert "EINVAL" in messages[0]
    assert "TCP_USER_TIMEOUT" in messages[1]
    assert "ENOPROTOOPT" in messages[1]


@pytest.mark.usefixtures("fresh_warnings")
def test_skipped_sockets_never_warn(caplog: pytest.LogCaptureFixture) -> None:
    """UDP, AF_UNIX and closed sockets stay a quiet DEBUG skip, not a refusal."""
    closed = socket.socket()
    closed.close()
    with caplog.at_level(logging.DEBUG, logger="keepalive"):
        for sock in (socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_UNIX), closed):
            with sock:
                assert keepalive.apply(sock, POLICY).skipped is not None
    assert _refusals(caplog) == []


def test_the_compiled_plan_is_cached_on_the_policy() -> None:
    """apply() compiles a policy's setsockopt plan once; later calls reuse it (the hot path allocates nothing)."""
    policy = Policy(idle=23)
    with socket.socket() as first, socket.socket() as second:
        applied = keepalive.apply(first, policy)
        plan = policy._plan
        assert plan is not None
        assert keepalive.apply(second, policy) is applied is plan.success
        assert policy._plan is plan


def test_socket_options_without_a_policy_use_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "41")
    keepalive.reset_default_policy()
    try:
        assert keepalive.socket_options() == keepalive.socket_options(keepalive.default_policy())
        assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 41) in keepalive.socket_options()
    finally:
        monkeypatch.delenv("KEEPALIVE_IDLE")
        keepalive.reset_default_policy()


def test_a_refused_option_keeps_the_policy_in_the_result() -> None:
    policy = Policy(idle=5)
    with _mptcp_socket() as sock:
        assert keepalive.apply(sock, policy).policy is policy


def test_skip_reasons_name_the_family_and_type() -> None:
    closed = socket.socket()
    closed.close()
    with socket.socket(socket.AF_UNIX) as unix, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert keepalive.apply(unix, POLICY).skipped == "not a TCP socket (family AF_UNIX)"
        assert keepalive.apply(udp, POLICY).skipped == "not a TCP socket (type SOCK_DGRAM)"
    assert keepalive.apply(closed, POLICY).skipped == "the socket is closed"
