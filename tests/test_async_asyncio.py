"""keepalive.asyncio: real loopback connections, options read back with getsockopt, compared with asyncio's own.

Every ``test_*`` coroutine runs on asyncio's default loop through pytest-asyncio, and again on uvloop's loop
through ``test_on_uvloop`` (which replays the module's coroutine tests; they take no fixtures for that reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

import keepalive
import keepalive.asyncio
from tests.async_support import (
    ENV_POLICY,
    POLICY,
    black_hole,
    connections_to,
    open_socket_fds,
    refusing_port,
    tls_contexts,
)
from tests.helpers import (
    LINUX,
    accepted_sockets_do_not_inherit,
    assert_policy_applied,
    expected_options,
    keepalive_options,
    options_at_listen,
)

pytestmark = pytest.mark.skipif(not LINUX, reason="reads Linux keepalive options back")


# -- helpers -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def echo_server(**kwds: Any) -> Any:
    """A plain asyncio echo server on 127.0.0.1 (no keepalive of ours); yields its port."""
    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        current = asyncio.current_task()
        assert current is not None
        handlers.add(current)  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, **kwds)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)  # closing the writers ends them
        for writer in writers:
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
                await writer.wait_closed()
        await server.wait_closed()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"


@contextlib.contextmanager
def recording_apply(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Wrap the module's apply: record, for each call, whether the socket was already connected."""
    connected: list[bool] = []
    real = keepalive.asyncio._apply_options

    def spy(sock: Any, policy: Any = None, **kwds: Any) -> Any:
        try:
            sock.getpeername()
            connected.append(True)
        except OSError:
            connected.append(False)
        return real(sock, policy, **kwds)

    monkeypatch.setattr(keepalive.asyncio, "_apply_options", spy)
    yield connected


def resolver(loop: asyncio.AbstractEventLoop, mp: pytest.MonkeyPatch, *ports: int) -> str:
    """Make ``loop.getaddrinfo`` answer a made-up name with 127.0.0.1 on each of ``ports``, in that order."""
    name = "several.keepalive.invalid"
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwds: Any) -> Any:
        if host != name:
            return await real(host, port, **kwds)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in ports]

    mp.setattr(loop, "getaddrinfo", getaddrinfo)
    return name


def default_loop() -> bool:
    """True on asyncio's own loop (uvloop resolves internally, so a patched getaddrinfo does not reach it)."""
    return isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)


async def settle() -> None:
    """Let cancelled tasks run their cleanup."""
    for _ in range(5):
        await asyncio.sleep(0)


async def expect_error(call: Callable[[], Coroutine[Any, Any, Any]]) -> BaseException:
    with pytest.raises(BaseException) as info:
        await call()
    return info.value


# -- connecting ----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_open_connection_sets_the_policy_before_connect() -> None:
    """open_connection() applies the policy to the socket before connect(); the live socket carries it."""
    with pytest.MonkeyPatch.context() as mp, recording_apply(mp) as connected:
        async with echo_server() as port:
            reader, writer = await keepalive.asyncio.open_connection("127.0.0.1", port, policy=POLICY)
            try:
                assert connected == [False]
                assert_policy_applied(writer.get_extra_info("socket"), POLICY)
                await roundtrip(reader, writer)
            finally:
                await close(writer)


@pytest.mark.asyncio
async def test_create_connection_returns_the_transport_and_protocol_of_the_factory() -> None:
    """create_connection() returns (transport, protocol) like the loop's, with the policy on the socket."""
    received = asyncio.get_running_loop().create_future()

    class Client(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            if not received.done():
                received.set_result(data)

    async with echo_server() as port:
        transport, protocol = await keepalive.asyncio.create_connection(Client, "127.0.0.1", port, policy=POLICY)
        try:
            assert isinstance(protocol, Client)
            assert_policy_applied(transport.get_extra_info("socket"), POLICY)
            transport.write(b"hello")
            assert await received == b"hello"
        finally:
            transport.close()


@pytest.mark.asyncio
async def test_policy_none_uses_the_default_policy() -> None:
    """Without policy= the connection gets keepalive.default_policy() (here from KEEPALIVE_* variables)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV_POLICY.items():
            mp.setenv(name, value)
        keepalive.reset_default_policy()
        async with echo_server() as port:
            _, writer = await keepalive.asyncio.open_connection("127.0.0.1", port)
            try:
                assert_policy_applied(writer.get_extra_info("socket"), keepalive.default_policy())
                assert keepalive_options(writer.get_extra_info("socket"))["idle"] == 23
            finally:
                await close(writer)
        keepalive.reset_default_policy()


@pytest.mark.asyncio
async def test_the_first_connection_runs_the_runtime_check_once() -> None:
    """The first connection through the wrapper runs the once-per-process node check; later ones do not."""
    from keepalive import _runtime
    from keepalive.checker import _runtime as checker_runtime

    calls: list[object] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checker_runtime, "run_once", lambda *args, **kwds: calls.append(args))
        _runtime.reset()
        async with echo_server() as port:
            for _ in range(3):
                _, writer = await keepalive.asyncio.open_connection("127.0.0.1", port, policy=POLICY)
                await close(writer)
    assert len(calls) == 1


@pytest.mark.asyncio
async def test_connection_refused_raises_what_asyncio_raises() -> None:
    """A refused connection raises the same ConnectionRefusedError (type, errno, text) as asyncio's."""
    with refusing_port() as port:
        original = await expect_error(lambda: asyncio.open_connection("127.0.0.1", port))
        ours = await expect_error(lambda: keepalive.asyncio.open_connection("127.0.0.1", port, policy=POLICY))
    assert isinstance(ours, ConnectionRefusedError)
    assert type(ours) is type(original)
    assert ours.errno == original.errno  # type: ignore[attr-defined]
    if default_loop():
        assert str(ours) == str(original)


@pytest.mark.asyncio
async def test_every_resolved_address_is_tried_in_order() -> None:
    """When the first address refuses, the next one is tried, as asyncio does."""
    loop = asyncio.get_running_loop()
    async with echo_server() as good:
        with refusing_port() as bad, pytest.MonkeyPatch.context() as mp:
            name = resolver(loop, mp, bad, good)
            reader, writer = await keepalive.asyncio.open_connection(name, 1, policy=POLICY)
            try:
                assert writer.get_extra_info("peername")[1] == good
                assert_policy_applied(writer.get_extra_info("socket"), POLICY)
                await roundtrip(reader, writer)
            finally:
                await close(writer)


@pytest.mark.asyncio
async def test_all_addresses_failing_raise_what_asyncio_raises() -> None:
    """Several failed addresses: OSError('Multiple exceptions: ...'), or an ExceptionGroup with all_errors."""
    loop = asyncio.get_running_loop()
    with refusing_port() as first, refusing_port() as second, pytest.MonkeyPatch.context() as mp:
        name = resolver(loop, mp, first, second)
        ours = await expect_error(lambda: keepalive.asyncio.open_connection(name, 1, policy=POLICY))
        assert type(ours) is OSError
        assert str(ours).startswith("Multiple exceptions: ")
        assert str(first) in str(ours)
        assert str(second) in str(ours)
        if default_loop():
            original = await expect_error(lambda: asyncio.open_connection(name, 1))
            assert str(ours) == str(original)
        group = await expect_error(lambda: keepalive.asyncio.open_connection(name, 1, policy=POLICY, all_errors=True))
        assert isinstance(group, ExceptionGroup)
        assert [type(exc) for exc in group.exceptions] == [ConnectionRefusedError, ConnectionRefusedError]


@pytest.mark.asyncio
async def test_happy_eyeballs_moves_past_a_hanging_address_and_leaves_no_socket_open() -> None:
    """With happy_eyeballs_delay, a hanging first address does not block: the second wins, the first is closed."""
    loop = asyncio.get_running_loop()
    async with echo_server() as good:
        with black_hole() as hanging, pytest.MonkeyPatch.context() as mp:
            name = resolver(loop, mp, hanging, good)
            before = connections_to(hanging)
            reader, writer = await asyncio.wait_for(
                keepalive.asyncio.open_connection(name, 1, policy=POLICY, happy_eyeballs_delay=0.05), 30
            )
            try:
                assert writer.get_extra_info("peername")[1] == good
                assert_policy_applied(writer.get_extra_info("socket"), POLICY)
                await roundtrip(reader, writer)
                await settle()
                assert connections_to(hanging) == before
            finally:
                await close(writer)


@pytest.mark.asyncio
async def test_cancelling_a_pending_connect_closes_its_socket_like_asyncio() -> None:
    """Cancelling a pending connect raises CancelledError (as asyncio's does) and leaves no socket open."""
    with black_hole() as port:
        for connect in (asyncio.open_connection, keepalive.asyncio.open_connection):
            before = open_socket_fds()
            task = asyncio.ensure_future(connect("127.0.0.1", port))
            await asyncio.sleep(0.05)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await settle()
            assert open_socket_fds() <= before, connect


@pytest.mark.asyncio
async def test_cancelling_happy_eyeballs_closes_every_attempt() -> None:
    """Cancelled during happy eyeballs with several attempts pending: every attempt's socket is closed."""
    loop = asyncio.get_running_loop()
    with black_hole() as first, black_hole() as second, pytest.MonkeyPatch.context() as mp:
        name = resolver(loop, mp, first, second)
        before = open_socket_fds()
        task = asyncio.ensure_future(
            keepalive.asyncio.open_connection(name, 1, policy=POLICY, happy_eyeballs_delay=0.01)
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()
        assert open_socket_fds() <= before


@pytest.mark.asyncio
async def test_tls_arguments_are_passed_through() -> None:
    """ssl= and server_hostname= reach the loop: the TLS handshake succeeds; the raw socket has the policy."""
    server_context, client_context = tls_contexts()
    async with echo_server(ssl=server_context) as port:
        reader, writer = await keepalive.asyncio.open_connection(
            "127.0.0.1", port, policy=POLICY, ssl=client_context, server_hostname="localhost"
        )
        try:
            assert writer.get_extra_info("ssl_object") is not None
            assert_policy_applied(writer.get_extra_info("socket"), POLICY)
            await roundtrip(reader, writer)
        finally:
            await close(writer)
        # The host is the default server_hostname, as in asyncio: 127.0.0.1 is in the certificate.
        reader, writer = await keepalive.asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        await roundtrip(reader, writer)
        await close(writer)


@contextlib.asynccontextmanager
async def silent_server() -> Any:
    """Accepts TCP connections and never answers: a TLS handshake against it stays pending."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_cancelling_during_the_tls_handshake_closes_the_socket_like_asyncio() -> None:
    """Cancelled after connect, during the TLS handshake: CancelledError, as asyncio's, and the socket is closed."""
    _, client_context = tls_contexts()
    async with silent_server() as port:
        for connect in (asyncio.open_connection, keepalive.asyncio.open_connection):
            before = connections_to(port)
            task = asyncio.ensure_future(connect("127.0.0.1", port, ssl=client_context, server_hostname="localhost"))
            for _ in range(100):  # until the TCP connection is up and the handshake is waiting
                await asyncio.sleep(0.01)
                if connections_to(port) - before:
                    break
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(20):
                await asyncio.sleep(0.01)
                if connections_to(port) <= before:
                    break
            assert connections_to(port) <= before, connect


@pytest.mark.asyncio
async def test_tls_failure_raises_what_asyncio_raises() -> None:
    """A certificate that does not verify raises the same SSLCertVerificationError as asyncio's."""
    server_context, _ = tls_contexts()
    untrusting = ssl.create_default_context()
    async with echo_server(ssl=server_context) as port:
        original = await expect_error(lambda: asyncio.open_connection("127.0.0.1", port, ssl=untrusting))
        ours = await expect_error(lambda: keepalive.asyncio.open_connection("127.0.0.1", port, ssl=untrusting))
    assert type(ours) is type(original) is ssl.SSLCertVerificationError


@pytest.mark.asyncio
async def test_argument_errors_match_asyncio() -> None:
    """Inconsistent arguments raise asyncio's ValueError, before anything is resolved or connected."""
    context = ssl.create_default_context()
    cases: list[dict[str, Any]] = [
        {"host": "127.0.0.1", "port": 1, "server_hostname": "x"},
        {"host": "127.0.0.1", "port": 1, "ssl_handshake_timeout": 1.0},
        {"host": "127.0.0.1", "port": 1, "ssl_shutdown_timeout": 1.0},
        {"host": None, "port": 1, "ssl": context},
        {"host": "127.0.0.1", "port": 1, "sock": socket.socket()},
        {},
    ]
    for kwds in cases:
        original = await expect_error(lambda kwds=kwds: asyncio.open_connection(**kwds))
        ours = await expect_error(lambda kwds=kwds: keepalive.asyncio.open_connection(**kwds))
        assert type(ours) is type(original) is ValueError
        assert str(ours) == str(original)
        if kwds.get("sock") is not None:
            kwds["sock"].close()


@pytest.mark.asyncio
async def test_local_addr_binds_the_source_address() -> None:
    """local_addr= binds the socket before connect, as in asyncio."""
    async with echo_server() as port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            source_port = probe.getsockname()[1]
        _, writer = await keepalive.asyncio.open_connection(
            "127.0.0.1", port, policy=POLICY, local_addr=("127.0.0.1", source_port)
        )
        try:
            assert writer.get_extra_info("sockname")[1] == source_port
            assert_policy_applied(writer.get_extra_info("socket"), POLICY)
        finally:
            await close(writer)


@pytest.mark.asyncio
async def test_a_given_socket_gets_the_policy_and_is_handed_over() -> None:
    """sock= (a socket the caller connected) gets the policy and becomes the transport's socket."""
    async with echo_server() as port:
        sock = socket.create_connection(("127.0.0.1", port))
        reader, writer = await keepalive.asyncio.open_connection(sock=sock, policy=POLICY)
        try:
            assert_policy_applied(writer.get_extra_info("socket"), POLICY)
            await roundtrip(reader, writer)
        finally:
            await close(writer)


@pytest.mark.asyncio
async def test_apply_sets_the_policy_on_an_open_connection() -> None:
    """keepalive.asyncio.apply() takes a StreamWriter or a transport (public get_extra_info('socket'))."""
    async with echo_server() as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert keepalive_options(writer.get_extra_info("socket"))["keepalive"] == 0
            assert keepalive.asyncio.apply(writer, POLICY).ok
            assert_policy_applied(writer.get_extra_info("socket"), POLICY)
            other = keepalive.Policy(idle=9, interval=2, count=2)
            assert keepalive.asyncio.apply(writer.transport, other).ok
            assert_policy_applied(writer.get_extra_info("socket"), other)
        finally:
            await close(writer)


def test_happy_eyeballs_interleaves_families_as_asyncio_does() -> None:
    """The address order for happy eyeballs is asyncio's own (_interleave_addrinfos), for every interleave."""
    from asyncio import base_events

    v6 = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (f"::{i}", 1, 0, 0)) for i in range(1, 4)]
    v4 = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"127.0.0.{i}", 1)) for i in range(1, 4)]
    for infos in (v6 + v4, v4 + v6, [v6[0], v4[0], v4[1], v6[1], v6[2], v4[2]], v4):
        for interleave in (1, 2, 3):
            ours = keepalive.asyncio._interleave(infos, interleave)
            assert ours == base_events._interleave_addrinfos(infos, interleave)  # type: ignore[attr-defined]


# -- servers -------------------------------------------------------------------------------------------------


async def _accepted_sockets_carry_the_policy(inherit: bool) -> None:
    seen: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(keepalive_options(writer.get_extra_info("socket")))
        await close(writer)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keepalive.asyncio, "_accepted_inherit", inherit)
        server = await keepalive.asyncio.start_server(handle, "127.0.0.1", 0, policy=POLICY)
    try:
        assert server.is_serving()
        for listener in server.sockets:
            assert_policy_applied(listener, POLICY)
        with contextlib.ExitStack() as stack:
            if not inherit:
                stack.enter_context(accepted_sockets_do_not_inherit())
            _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            assert await seen == expected_options(POLICY)
        await close(writer)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_start_server_connections_inherit_the_policy_from_the_listener() -> None:
    """start_server(): the listening sockets carry the policy; on Linux accepted sockets inherit it."""
    await _accepted_sockets_carry_the_policy(inherit=True)


@pytest.mark.asyncio
async def test_start_server_applies_the_policy_per_connection_where_not_inherited() -> None:
    """The other platforms' path: each accepted connection gets the policy before the callback runs."""
    await _accepted_sockets_carry_the_policy(inherit=False)


@pytest.mark.asyncio
async def test_create_server_wraps_protocols_where_not_inherited() -> None:
    """create_server() on the per-connection path: plain and buffered protocols still see every callback."""
    loop = asyncio.get_running_loop()
    for buffered in (False, True):
        got_future: asyncio.Future[tuple[dict[str, int], bytes]] = loop.create_future()

        class Plain(asyncio.Protocol):
            got = got_future

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.options = keepalive_options(transport.get_extra_info("socket"))

            def data_received(self, data: bytes) -> None:
                self.got.set_result((self.options, data))

        class Buffered(asyncio.BufferedProtocol):
            got = got_future

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.options = keepalive_options(transport.get_extra_info("socket"))
                self.buffer = bytearray(64)

            def get_buffer(self, sizehint: int) -> bytearray:
                return self.buffer

            def buffer_updated(self, nbytes: int) -> None:
                self.got.set_result((self.options, bytes(self.buffer[:nbytes])))

        factory: type[asyncio.BaseProtocol] = Buffered if buffered else Plain
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(keepalive.asyncio, "_accepted_inherit", False)
            server = await keepalive.asyncio.create_server(factory, "127.0.0.1", 0, policy=POLICY)
        try:
            with accepted_sockets_do_not_inherit():
                _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
                writer.write(b"data")
                options, data = await got_future
            assert options == expected_options(POLICY)
            assert data == b"data"
            await close(writer)
        finally:
            server.close()
            await server.wait_closed()


@pytest.mark.asyncio
async def test_start_server_sets_the_policy_before_listen() -> None:
    """The options are on each listening socket when listen() is called (asyncio listens in start_serving())."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await close(writer)

    with options_at_listen() as seen:
        server = await keepalive.asyncio.start_server(handle, "localhost", 0, policy=POLICY)
    try:
        if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
            assert seen == []  # uvloop listens in C (libuv), out of the recorder's sight
        else:
            assert seen == [expected_options(POLICY)] * len(server.sockets)
        for listener in server.sockets:
            assert_policy_applied(listener, POLICY)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_create_server_start_serving_false_is_respected() -> None:
    """start_serving=False returns a server that is not serving yet, with the policy already on its sockets."""
    server = await keepalive.asyncio.create_server(asyncio.Protocol, "127.0.0.1", 0, policy=POLICY, start_serving=False)
    try:
        assert not server.is_serving()
        assert_policy_applied(server.sockets[0], POLICY)
        await server.start_serving()
        assert server.is_serving()
    finally:
        server.close()
        await server.wait_closed()


# -- the same tests on uvloop --------------------------------------------------------------------------------


def _coroutine_tests() -> list[Any]:
    module = sys.modules[__name__]
    return [
        pytest.param(function, id=name)
        for name, function in vars(module).items()
        if name.startswith("test_") and inspect.iscoroutinefunction(function)
    ]


@pytest.mark.parametrize("test", _coroutine_tests())
def test_on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Every coroutine test above, on uvloop's event loop (uvloop implements sock_connect and sock=)."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())
