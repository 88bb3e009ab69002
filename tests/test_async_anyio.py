"""keepalive.anyio on anyio's asyncio (plain and uvloop) and trio backends: real loopback connections, options read
back with getsockopt, compared with anyio's own connect_tcp."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sniffio
import trio
import trio.socket
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.tls import TLSListener, TLSStream

import keepalive
import keepalive.anyio
from tests.async_support import ENV_POLICY, HOSTS, POLICY, connections_to, one_port, refusing_port, tls_contexts
from tests.helpers import (
    LINUX,
    accepted_sockets_do_not_inherit,
    assert_policy_applied,
    echo_server,
    expected_options,
    keepalive_options,
    options_at_listen,
)

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(not LINUX, reason="reads Linux keepalive options back")]

NAME = "several.keepalive.invalid"
_BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="asyncio+uvloop",
        marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"),
    ),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Every test in this module runs on anyio's asyncio backend, on it with uvloop, and on its trio backend."""
    return request.param


def raw(stream: Any) -> socket.socket:
    """The live socket of an anyio stream or listener, through anyio's public typed attribute."""
    sock: socket.socket = stream.extra(SocketAttribute.raw_socket)
    return sock


class _TrioResolver(trio.abc.HostnameResolver):
    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def getaddrinfo(
        self, host: Any, port: Any, family: Any = 0, type: Any = 0, proto: Any = 0, flags: Any = 0
    ) -> Any:
        if host in (NAME, NAME.encode()):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (h, port)) for h in self.hosts]
        return await trio.to_thread.run_sync(socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


@contextlib.contextmanager
def resolving(*hosts: str) -> Iterator[str]:
    """Make the running backend's resolver answer NAME with the loopback addresses ``hosts``, in that order.

    (anyio connects to the resolved IP on the port asked for, so the addresses differ, not the ports.)
    """
    if sniffio.current_async_library() == "trio":
        previous = trio.socket.set_custom_hostname_resolver(_TrioResolver(*hosts))
        try:
            yield NAME
        finally:
            trio.socket.set_custom_hostname_resolver(previous)
        return
    import asyncio

    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwds: Any) -> Any:
        if host in (NAME, NAME.encode()):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (h, port)) for h in hosts]
        return await real(host, port, **kwds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "getaddrinfo", getaddrinfo)
        yield NAME


@contextlib.contextmanager
def recording_apply() -> Iterator[list[bool]]:
    """Wrap the module's apply: record, for each call, whether the socket was already connected."""
    connected: list[bool] = []
    real = keepalive.anyio._apply_options

    def spy(sock: Any, policy: Any = None, **kwds: Any) -> Any:
        try:
            sock.getpeername()
            connected.append(True)
        except OSError:
            connected.append(False)
        return real(sock, policy, **kwds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keepalive.anyio, "_apply_options", spy)
        yield connected


async def roundtrip(stream: Any) -> None:
    await stream.send(b"ping")
    data = b""
    while len(data) < 4:
        data += await stream.receive(4 - len(data))
    assert data == b"ping"


async def failure(connect: Any, *args: Any, **kwds: Any) -> BaseException:
    try:
        stream = await connect(*args, **kwds)
    except Exception as exc:
        return exc
    await stream.aclose()
    pytest.fail(f"{connect} connected")


# -- connecting ----------------------------------------------------------------------------------------------


async def test_connect_tcp_sets_the_policy_before_connect() -> None:
    """connect_tcp() applies the policy before connect(); the result is anyio's SocketStream carrying it."""
    with echo_server() as (host, port), recording_apply() as connected:
        async with await keepalive.anyio.connect_tcp(host, port, policy=POLICY) as stream:
            assert connected == [False]
            assert isinstance(stream, SocketStream)
            assert_policy_applied(raw(stream), POLICY)
            assert raw(stream).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # as anyio's own streams
            assert stream.extra(SocketAttribute.remote_port) == port
            await roundtrip(stream)


async def test_policy_none_uses_the_default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without policy= the stream gets keepalive.default_policy() (here from KEEPALIVE_* variables)."""
    for name, value in ENV_POLICY.items():
        monkeypatch.setenv(name, value)
    keepalive.reset_default_policy()
    with echo_server() as (host, port):
        async with await keepalive.anyio.connect_tcp(host, port) as stream:
            assert_policy_applied(raw(stream), keepalive.default_policy())
            assert keepalive_options(raw(stream))["idle"] == 23


async def test_the_first_connection_runs_the_runtime_check_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first connection through the wrapper runs the once-per-process node check; later ones do not."""
    from keepalive import _runtime
    from keepalive.checker import _runtime as checker_runtime

    calls: list[object] = []
    monkeypatch.setattr(checker_runtime, "run_once", lambda *args, **kwds: calls.append(args))
    _runtime.reset()
    with echo_server() as (host, port):
        for _ in range(3):
            await (await keepalive.anyio.connect_tcp(host, port, policy=POLICY)).aclose()
    assert len(calls) == 1


async def test_connection_refused_raises_what_anyio_raises() -> None:
    """A refused connection raises anyio's OSError('All connection attempts failed') from the refusal."""
    with refusing_port() as port:
        original = await failure(anyio.connect_tcp, "127.0.0.1", port)
        ours = await failure(keepalive.anyio.connect_tcp, "127.0.0.1", port, policy=POLICY)
    assert type(ours) is type(original)
    assert isinstance(ours, OSError)
    assert str(ours) == str(original) == "All connection attempts failed"
    assert type(ours.__cause__) is type(original.__cause__) is ConnectionRefusedError
    assert ours.__cause__.errno == original.__cause__.errno  # type: ignore[union-attr]


async def test_every_resolved_address_is_tried() -> None:
    """When the first address refuses, the next one is tried; when all fail, the cause groups every error."""
    with one_port("refuse", "echo") as port, resolving(*HOSTS) as name:
        async with await keepalive.anyio.connect_tcp(name, port, policy=POLICY) as stream:
            assert stream.extra(SocketAttribute.remote_address)[0] == "127.0.0.2"
            assert_policy_applied(raw(stream), POLICY)
            await roundtrip(stream)
    with one_port("refuse", "refuse") as port, resolving(*HOSTS) as name:
        original = await failure(anyio.connect_tcp, name, port)
        ours = await failure(keepalive.anyio.connect_tcp, name, port, policy=POLICY)
    assert type(ours) is type(original)
    assert str(ours) == str(original)
    assert isinstance(ours.__cause__, ExceptionGroup)
    assert isinstance(original.__cause__, ExceptionGroup)
    assert [type(e) for e in ours.__cause__.exceptions] == [type(e) for e in original.__cause__.exceptions]
    assert [type(e) for e in ours.__cause__.exceptions] == [ConnectionRefusedError, ConnectionRefusedError]


async def test_happy_eyeballs_moves_past_a_hanging_address_and_leaves_no_socket_open() -> None:
    """A hanging first address does not block: after happy_eyeballs_delay the second wins; the first is closed."""
    with one_port("hang", "echo") as port, resolving(*HOSTS) as name:
        for connect in (anyio.connect_tcp, keepalive.anyio.connect_tcp):
            before = connections_to(port)
            with anyio.fail_after(30):
                stream = await connect(name, port, happy_eyeballs_delay=0.05)
            async with stream:
                assert stream.extra(SocketAttribute.remote_address)[0] == "127.0.0.2"
                await roundtrip(stream)
            await anyio.sleep(0.05)
            assert connections_to(port) <= before, connect


async def test_cancelling_a_pending_connect_closes_its_sockets_like_anyio() -> None:
    """Cancelled while connecting (two attempts pending): the scope absorbs it, as with anyio's; no socket left."""
    with one_port("hang", "hang") as port, resolving(*HOSTS) as name:
        for connect in (anyio.connect_tcp, keepalive.anyio.connect_tcp):
            before = connections_to(port)
            with anyio.move_on_after(0.2) as scope:
                await connect(name, port, happy_eyeballs_delay=0.05)
            assert scope.cancelled_caught, connect
            await anyio.sleep(0.01)
            assert connections_to(port) == before, connect


async def test_local_host_binds_the_source_address() -> None:
    """local_host= binds the source address before connect, as in anyio."""
    with echo_server() as (host, port):
        async with await keepalive.anyio.connect_tcp(host, port, policy=POLICY, local_host="127.0.0.1") as stream:
            assert stream.extra(SocketAttribute.local_address)[0] == "127.0.0.1"
            assert_policy_applied(raw(stream), POLICY)


@contextlib.asynccontextmanager
async def tls_echo_server() -> Any:
    server_context, client_context = tls_contexts()

    async def echo(stream: Any) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    await stream.send(await stream.receive())

    tcp_listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp_listener.extra(SocketAttribute.local_port)
    listener = TLSListener(tcp_listener, server_context)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        yield port, client_context
        tg.cancel_scope.cancel()


async def test_tls_arguments_are_passed_through() -> None:
    """tls=, ssl_context= and tls_hostname= give anyio's TLSStream; the socket under it carries the policy."""
    async with tls_echo_server() as (port, client_context):
        stream = await keepalive.anyio.connect_tcp(
            "127.0.0.1", port, policy=POLICY, ssl_context=client_context, tls_hostname="localhost"
        )
        async with stream:
            assert isinstance(stream, TLSStream)
            assert stream.extra(anyio.streams.tls.TLSAttribute.server_side) is False
            assert_policy_applied(raw(stream), POLICY)
            await roundtrip(stream)
            other = keepalive.Policy(idle=9, interval=2, count=2)
            assert keepalive.anyio.apply(stream, other).ok
            assert_policy_applied(raw(stream), other)


async def test_tls_failure_raises_what_anyio_raises() -> None:
    """A certificate that does not verify raises the same error as anyio's and leaves no socket open."""
    async with tls_echo_server() as (port, _):
        original = await failure(anyio.connect_tcp, "127.0.0.1", port, tls=True)
        ours = await failure(keepalive.anyio.connect_tcp, "127.0.0.1", port, tls=True, policy=POLICY)
    assert type(ours) is type(original)
    assert isinstance(ours, anyio.BrokenResourceError | OSError)


async def test_cancelling_during_the_tls_handshake_closes_the_socket_like_anyio() -> None:
    """Cancelled during the TLS handshake (the server never answers): absorbed like anyio's, no socket left."""
    _, client_context = tls_contexts()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel completes handshakes; nobody accepts
        port = silent.getsockname()[1]
        for connect in (anyio.connect_tcp, keepalive.anyio.connect_tcp):
            before = connections_to(port)
            with anyio.move_on_after(0.3) as scope:
                await connect("127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost")
            assert scope.cancelled_caught, connect
            await anyio.sleep(0.01)
            assert connections_to(port) <= before, connect


async def test_apply_sets_the_policy_on_an_open_stream() -> None:
    """keepalive.anyio.apply() reaches the socket through SocketAttribute.raw_socket."""
    with echo_server() as (host, port):
        async with await anyio.connect_tcp(host, port) as stream:
            assert keepalive_options(raw(stream))["keepalive"] == 0
            assert keepalive.anyio.apply(stream, POLICY).ok
            assert_policy_applied(raw(stream), POLICY)


# -- servers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inherit", [True, False], ids=["inherited-from-listener", "applied-per-connection"])
async def test_create_tcp_listener_accepted_streams_carry_the_policy(
    inherit: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_tcp_listener(): listening sockets carry the policy; accepted streams too (inherited or applied)."""
    monkeypatch.setattr(keepalive.anyio, "_accepted_inherit", inherit)
    seen: list[dict[str, int]] = []
    done = anyio.Event()

    async def handler(stream: SocketStream) -> None:
        async with stream:
            seen.append(keepalive_options(raw(stream)))
            done.set()

    listener = await keepalive.anyio.create_tcp_listener(local_host="127.0.0.1", policy=POLICY)
    async with listener, anyio.create_task_group() as tg:
        for inner in listener.listeners:
            if inherit:
                assert_policy_applied(raw(inner), POLICY)
        port = listener.extra(SocketAttribute.local_port)
        with contextlib.ExitStack() as stack:
            if not inherit:
                stack.enter_context(accepted_sockets_do_not_inherit())
            tg.start_soon(listener.serve, handler)
            async with await anyio.connect_tcp("127.0.0.1", port):
                await done.wait()
        tg.cancel_scope.cancel()
    assert seen == [expected_options(POLICY)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", None])
async def test_create_tcp_listener_sets_the_policy_before_listen(host: str | None) -> None:
    """issue 15: the options are on each listening socket when listen() is called, so a connection accepted
    right away inherits them; the sockets are anyio's (one dual-stack socket for any host, one port for all)."""
    with options_at_listen() as seen:
        listener = await keepalive.anyio.create_tcp_listener(local_host=host, policy=POLICY)
    async with listener:
        assert seen
        assert seen == [expected_options(POLICY)] * len(listener.listeners)
        ports = {inner.extra(SocketAttribute.local_port) for inner in listener.listeners}
        assert len(ports) == 1
        reference = await anyio.create_tcp_listener(local_host=host)
        async with reference:
            families = sorted(inner.extra(SocketAttribute.family) for inner in listener.listeners)
            assert families == sorted(inner.extra(SocketAttribute.family) for inner in reference.listeners)
        async with await anyio.connect_tcp("localhost" if host is None else host, ports.pop()) as client:
            assert keepalive_options(raw(client))["keepalive"] == 0  # the client side is not ours


async def test_create_tcp_listener_accept_applies_where_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the per-connection path a listener's accept() also returns a stream that carries the policy."""
    monkeypatch.setattr(keepalive.anyio, "_accepted_inherit", False)
    listener = await keepalive.anyio.create_tcp_listener(local_host="127.0.0.1", policy=POLICY)
    async with listener:
        port = listener.extra(SocketAttribute.local_port)
        with accepted_sockets_do_not_inherit():
            async with await anyio.connect_tcp("127.0.0.1", port), await listener.listeners[0].accept() as stream:  # type: ignore[attr-defined]
                assert keepalive_options(raw(stream)) == expected_options(POLICY)


# -- packaging -----------------------------------------------------------------------------------------------


def test_import_without_anyio_names_the_extra() -> None:
    """Importing keepalive.anyio without anyio raises an ImportError that says what to install."""
    code = "import sys; sys.modules['anyio'] = None\ntry:\n import keepalive.anyio\nexcept ImportError as e:\n print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'tcp-keepalive[anyio]'" in out
