"""keepalive.trio: real loopback connections, options read back with getsockopt, compared with trio's own."""

from __future__ import annotations

import contextlib
import functools
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.socket

import keepalive
import keepalive.trio
from tests.async_support import ENV_POLICY, POLICY, black_hole, connections_to, refusing_port, tls_contexts
from tests.helpers import (
    LINUX,
    accepted_sockets_do_not_inherit,
    assert_policy_applied,
    echo_server,
    expected_options,
    keepalive_options,
    options_at_listen,
)

pytestmark = pytest.mark.skipif(not LINUX, reason="reads Linux keepalive options back")

NAME = "several.keepalive.invalid"


class Resolver(trio.abc.HostnameResolver):
    """Answers NAME with 127.0.0.1 on each of ``ports`` in order; other names go to the system resolver."""

    def __init__(self, *ports: int) -> None:
        self.ports = ports

    async def getaddrinfo(
        self, host: Any, port: Any, family: Any = 0, type: Any = 0, proto: Any = 0, flags: Any = 0
    ) -> Any:
        if host in (NAME, NAME.encode()):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in self.ports]
        return await trio.to_thread.run_sync(socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


@contextlib.contextmanager
def resolving(*ports: int) -> Iterator[str]:
    previous = trio.socket.set_custom_hostname_resolver(Resolver(*ports))
    try:
        yield NAME
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


@contextlib.contextmanager
def recording_apply() -> Iterator[list[bool]]:
    """Wrap the module's apply: record, for each call, whether the socket was already connected."""
    connected: list[bool] = []
    real = keepalive.trio._apply_options

    def spy(sock: Any, policy: Any = None, **kwds: Any) -> Any:
        try:
            sock.getpeername()
            connected.append(True)
        except OSError:
            connected.append(False)
        return real(sock, policy, **kwds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keepalive.trio, "_apply_options", spy)
        yield connected


async def roundtrip(stream: trio.abc.Stream) -> None:
    await stream.send_all(b"ping")
    data = b""
    while len(data) < 4:
        data += await stream.receive_some(4 - len(data))
    assert data == b"ping"


async def failure(connect: Any, *args: Any, **kwds: Any) -> BaseException:
    with pytest.raises(BaseException) as info:
        await connect(*args, **kwds)
    return info.value


# -- connecting ----------------------------------------------------------------------------------------------


@pytest.mark.trio
async def test_open_tcp_stream_sets_the_policy_before_connect() -> None:
    """open_tcp_stream() applies the policy to the socket before connect(); the live socket carries it."""
    with echo_server() as (host, port), recording_apply() as connected:
        stream = await keepalive.trio.open_tcp_stream(host, port, policy=POLICY)
        async with stream:
            assert connected == [False]
            assert isinstance(stream, trio.SocketStream)
            assert_policy_applied(stream.socket, POLICY)
            assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # trio's SocketStream defaults kept
            await roundtrip(stream)


@pytest.mark.trio
async def test_policy_none_uses_the_default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without policy= the stream gets keepalive.default_policy() (here from KEEPALIVE_* variables)."""
    for name, value in ENV_POLICY.items():
        monkeypatch.setenv(name, value)
    keepalive.reset_default_policy()
    with echo_server() as (host, port):
        async with await keepalive.trio.open_tcp_stream(host, port) as stream:
            assert_policy_applied(stream.socket, keepalive.default_policy())
            assert keepalive_options(stream.socket)["idle"] == 23


@pytest.mark.trio
async def test_the_first_connection_runs_the_runtime_check_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first connection through the wrapper runs the once-per-process node check; later ones do not."""
    from keepalive import _runtime
    from keepalive.checker import _runtime as checker_runtime

    calls: list[object] = []
    monkeypatch.setattr(checker_runtime, "run_once", lambda *args, **kwds: calls.append(args))
    _runtime.reset()
    with echo_server() as (host, port):
        for _ in range(3):
            await (await keepalive.trio.open_tcp_stream(host, port, policy=POLICY)).aclose()
    assert len(calls) == 1


@pytest.mark.trio
async def test_connection_refused_raises_what_trio_raises() -> None:
    """A refused connection raises trio's OSError('all attempts ... failed') from an ExceptionGroup."""
    with refusing_port() as port:
        original = await failure(trio.open_tcp_stream, "127.0.0.1", port)
        ours = await failure(keepalive.trio.open_tcp_stream, "127.0.0.1", port, policy=POLICY)
    assert type(ours) is type(original) is OSError
    assert str(ours) == str(original) == f"all attempts to connect to 127.0.0.1:{port} failed"
    assert isinstance(ours.__cause__, ExceptionGroup)
    assert isinstance(original.__cause__, ExceptionGroup)
    assert [type(e) for e in ours.__cause__.exceptions] == [type(e) for e in original.__cause__.exceptions]
    assert [type(e) for e in ours.__cause__.exceptions] == [ConnectionRefusedError]


@pytest.mark.trio
async def test_every_resolved_address_is_tried() -> None:
    """When the first address refuses, the next one is tried, as trio does; failures of all match trio's."""
    with echo_server() as (_, good), refusing_port() as bad, resolving(bad, good) as name:
        async with await keepalive.trio.open_tcp_stream(name, 1, policy=POLICY) as stream:
            assert stream.socket.getpeername()[1] == good
            assert_policy_applied(stream.socket, POLICY)
            await roundtrip(stream)
    with refusing_port() as first, refusing_port() as second, resolving(first, second) as name:
        original = await failure(trio.open_tcp_stream, name, 1)
        ours = await failure(keepalive.trio.open_tcp_stream, name, 1, policy=POLICY)
    assert str(ours) == str(original)
    assert isinstance(ours.__cause__, ExceptionGroup)
    assert [type(e) for e in ours.__cause__.exceptions] == [ConnectionRefusedError, ConnectionRefusedError]


@pytest.mark.trio
async def test_happy_eyeballs_moves_past_a_hanging_address_and_leaves_no_socket_open() -> None:
    """A hanging first address does not block: after happy_eyeballs_delay the second wins; the first is closed."""
    with echo_server() as (_, good), black_hole() as hanging, resolving(hanging, good) as name:
        before = connections_to(hanging)
        with trio.fail_after(30):
            stream = await keepalive.trio.open_tcp_stream(name, 1, policy=POLICY, happy_eyeballs_delay=0.05)
        async with stream:
            assert stream.socket.getpeername()[1] == good
            assert_policy_applied(stream.socket, POLICY)
            assert connections_to(hanging) == before


@pytest.mark.trio
async def test_cancelling_a_pending_connect_closes_its_sockets_like_trio() -> None:
    """Cancelled while connecting (two attempts pending): nothing escapes the cancel scope, no socket is left."""
    with black_hole() as first, black_hole() as second, resolving(first, second) as name:
        for connect in (trio.open_tcp_stream, keepalive.trio.open_tcp_stream):
            before = connections_to(first) | connections_to(second)
            with trio.move_on_after(0.2) as scope:
                await connect(name, 1, happy_eyeballs_delay=0.05)
            assert scope.cancelled_caught, connect
            assert connections_to(first) | connections_to(second) == before, connect


@pytest.mark.trio
async def test_local_address_binds_the_source_address() -> None:
    """local_address= binds the source IP before connect, as in trio."""
    with echo_server() as (host, port):
        async with await keepalive.trio.open_tcp_stream(host, port, policy=POLICY, local_address="127.0.0.1") as s:
            assert s.socket.getsockname()[0] == "127.0.0.1"
            assert_policy_applied(s.socket, POLICY)


@pytest.mark.trio
async def test_argument_errors_match_trio() -> None:
    """A bad host or port raises trio's ValueError / TypeError."""
    for args in ((None, 80), ("127.0.0.1", "80")):
        original = await failure(trio.open_tcp_stream, *args)
        ours = await failure(keepalive.trio.open_tcp_stream, *args)
        assert type(ours) is type(original)
        assert str(ours) == str(original)


@pytest.mark.trio
async def test_open_ssl_over_tcp_stream_does_tls_over_a_keepalive_socket() -> None:
    """open_ssl_over_tcp_stream(): a TLS stream over a socket carrying the policy; apply() takes it too."""
    server_context, client_context = tls_contexts()

    async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for data in stream:
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, echo, 0, server_context)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        stream = await keepalive.trio.open_ssl_over_tcp_stream(
            "localhost", port, policy=POLICY, ssl_context=client_context
        )
        async with stream:
            await roundtrip(stream)
            assert_policy_applied(stream.transport_stream.socket, POLICY)
            other = keepalive.Policy(idle=9, interval=2, count=2)
            assert keepalive.trio.apply(stream, other).ok
            assert_policy_applied(stream.transport_stream.socket, other)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_apply_sets_the_policy_on_an_open_stream() -> None:
    """keepalive.trio.apply() takes a SocketStream (its public .socket) or a trio socket."""
    with echo_server() as (host, port):
        async with await trio.open_tcp_stream(host, port) as stream:
            assert keepalive_options(stream.socket)["keepalive"] == 0
            assert keepalive.trio.apply(stream, POLICY).ok
            assert_policy_applied(stream.socket, POLICY)
            other = keepalive.Policy(idle=9, interval=2, count=2)
            assert keepalive.trio.apply(stream.socket, other).ok
            assert_policy_applied(stream.socket, other)


def test_address_order_is_trios() -> None:
    """The RFC 6555 section 5.4 reordering is trio's own, for mixed and single-family results."""
    from trio._highlevel_open_tcp_stream import reorder_for_rfc_6555_section_5_4

    six, four = socket.AF_INET6, socket.AF_INET
    for families in ([six, six, four, four], [four, six, six], [six, four, six], [four, four], [six]):
        ours = [(family, i) for i, family in enumerate(families)]
        theirs = list(ours)
        keepalive.trio._reorder_for_rfc_6555_section_5_4(ours)
        reorder_for_rfc_6555_section_5_4(theirs)  # type: ignore[arg-type]
        assert ours == theirs


# -- servers -------------------------------------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("inherit", [True, False], ids=["inherited-from-listener", "applied-per-connection"])
async def test_serve_tcp_accepted_streams_carry_the_policy(inherit: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_tcp(): listeners carry the policy; accepted streams too (inherited on Linux, else applied)."""
    monkeypatch.setattr(keepalive.trio, "_accepted_inherit", inherit)
    seen: list[dict[str, int]] = []
    done = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        seen.append(keepalive_options(stream.socket))
        await stream.aclose()
        done.set()

    async with trio.open_nursery() as nursery:
        serve = functools.partial(keepalive.trio.serve_tcp, host="127.0.0.1", policy=POLICY)
        listeners = await nursery.start(serve, handler, 0)
        for listener in listeners:
            assert_policy_applied(listener.socket, POLICY)
        with contextlib.ExitStack() as stack:
            if not inherit:
                stack.enter_context(accepted_sockets_do_not_inherit())
            async with await trio.open_tcp_stream(*listeners[0].socket.getsockname()[:2]):
                await done.wait()
        nursery.cancel_scope.cancel()
    assert seen == [expected_options(POLICY)]


@pytest.mark.trio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", None])
async def test_open_tcp_listeners_set_the_policy_before_listen(host: str | None) -> None:
    """issue 15: the options are on each listening socket when listen() is called, so a connection accepted
    right away inherits them; the listeners are trio's (the same addresses and families)."""
    with options_at_listen() as seen:
        listeners = await keepalive.trio.open_tcp_listeners(0, host=host, policy=POLICY)
    reference = await trio.open_tcp_listeners(0, host=host)
    try:
        assert seen
        assert seen == [expected_options(POLICY)] * len(listeners)
        assert sorted(lst.socket.family for lst in listeners) == sorted(lst.socket.family for lst in reference)
        assert all(lst.socket.getsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR) for lst in listeners)
    finally:
        for listener in (*listeners, *reference):
            await listener.aclose()


@pytest.mark.trio
async def test_open_tcp_listeners_argument_errors_match_trio() -> None:
    for kwargs in ({"port": "80"}, {"port": 0, "backlog": "many"}):
        with pytest.raises(TypeError) as ours:
            await keepalive.trio.open_tcp_listeners(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(TypeError) as theirs:
            await trio.open_tcp_listeners(**kwargs)  # type: ignore[arg-type]
        assert str(ours.value) == str(theirs.value)


@pytest.mark.trio
async def test_open_tcp_listeners_carry_the_policy() -> None:
    """open_tcp_listeners() returns trio's SocketListeners with the policy on each listening socket."""
    listeners = await keepalive.trio.open_tcp_listeners(0, host="127.0.0.1", policy=POLICY)
    try:
        assert all(isinstance(listener, trio.SocketListener) for listener in listeners)
        for listener in listeners:
            assert_policy_applied(listener.socket, POLICY)
        accepted = trio.Event()

        async def client() -> None:
            async with await trio.open_tcp_stream(*listeners[0].socket.getsockname()[:2]):
                await accepted.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            async with await listeners[0].accept() as stream:
                assert keepalive_options(stream.socket) == expected_options(POLICY)
                accepted.set()
    finally:
        for listener in listeners:
            await listener.aclose()


# -- packaging -----------------------------------------------------------------------------------------------


def test_import_without_trio_names_the_extra() -> None:
    """Importing keepalive.trio without trio raises an ImportError that says what to install."""
    code = "import sys; sys.modules['trio'] = None\ntry:\n import keepalive.trio\nexcept ImportError as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'tcp-keepalive[trio]'" in out


def test_import_keepalive_imports_no_async_runtime() -> None:
    """`import keepalive` imports neither trio nor anyio nor the async wrappers."""
    modules = ("trio", "anyio", "keepalive.trio", "keepalive.anyio", "keepalive.asyncio")
    code = f"import sys, keepalive; print(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
