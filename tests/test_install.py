"""keepalive.install() / uninstall() in this process: which connects get the policy, which are left alone, exact
restore of the originals, idempotence, thread safety, and that the hook never breaks a connect."""

from __future__ import annotations

import _socket
import asyncio
import os
import random
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keepalive
from keepalive import Policy, _install, _runtime
from tests.helpers import (
    LINUX,
    assert_policy_applied,
    echo_server,
    environ_without_keepalive,
    expected_options,
    keepalive_options,
)

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

POLICY = Policy(idle=41, interval=7, count=3)
OTHER = Policy(idle=19, interval=4, count=6)


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    keepalive.uninstall()
    yield
    keepalive.uninstall()
    assert "connect" not in socket.socket.__dict__
    assert "connect_ex" not in socket.socket.__dict__


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    with echo_server() as address:
        yield address


def untouched(sock: Any) -> bool:
    return bool(keepalive_options(sock)["keepalive"] == 0)


def test_create_connection_gets_the_policy(echo: tuple[str, int]) -> None:
    """socket.create_connection after install(): the policy is on the connected socket."""
    keepalive.install(POLICY)
    with socket.create_connection(echo) as sock:
        assert_policy_applied(sock, POLICY)


def test_connect_and_connect_ex_get_the_policy(echo: tuple[str, int]) -> None:
    """Plain sock.connect() and sock.connect_ex() on a socket.socket are covered."""
    keepalive.install(POLICY)
    with socket.socket() as a, socket.socket() as b:
        a.connect(echo)
        assert b.connect_ex(echo) == 0
        assert_policy_applied(a, POLICY)
        assert_policy_applied(b, POLICY)


def test_ipv6_and_nonblocking_sockets_get_the_policy() -> None:
    """AF_INET6 and sockets created with SOCK_NONBLOCK are TCP too."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    keepalive.install(POLICY)
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no ::1: {exc}")
    with server, socket.socket(socket.AF_INET6, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as sock:
        sock.connect_ex(server.getsockname()[:2])
        assert_policy_applied(sock, POLICY)


def test_tls_connections_get_the_policy(echo: tuple[str, int]) -> None:
    """ssl.SSLSocket.connect goes through socket.socket.connect (checked before the handshake fails)."""
    import ssl

    keepalive.install(POLICY)
    context = ssl.create_default_context()
    with context.wrap_socket(socket.socket(), server_hostname="localhost", do_handshake_on_connect=False) as tls:
        tls.connect(echo)
        assert_policy_applied(tls, POLICY)


def test_udp_and_unix_sockets_are_left_alone(echo: tuple[str, int], tmp_path: Path) -> None:
    """Only AF_INET/AF_INET6 SOCK_STREAM sockets are touched: UDP and AF_UNIX connects are unchanged."""
    keepalive.install(POLICY)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(echo)
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def _own_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """What a client such as redis-py or pymongo does before connect: its own keepalive, no user timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def test_a_clients_own_tighter_keepalive_survives(echo: tuple[str, int]) -> None:
    """redis-py's 30/5/3 under a 60/10/5 policy stays 30/5/3; only the missing user timeout is filled in."""
    keepalive.install(Policy(idle=60, interval=10, count=5), sweep=0)
    with socket.socket() as sock:
        _own_keepalive(sock, 30, 5, 3)
        sock.connect(echo)
        options = keepalive_options(sock)
    assert options == {"keepalive": 1, "idle": 30, "interval": 5, "count": 3, "user_timeout_ms": 110_000}


def test_a_clients_own_looser_keepalive_is_brought_down(echo: tuple[str, int]) -> None:
    """pymongo's 120/10/9 set before connect is brought within a 60/10/5 policy, user timeout included."""
    keepalive.install(Policy(idle=60, interval=10, count=5), sweep=0)
    with socket.socket() as sock:
        _own_keepalive(sock, 120, 10, 9)
        sock.connect(echo)
        assert_policy_applied(sock, Policy(idle=60, interval=10, count=5))


def test_each_option_is_the_smaller_of_the_sockets_and_the_policys(echo: tuple[str, int]) -> None:
    """Per option: idle 19 < 41 and interval 4 < 7 are kept, count 6 > 3 comes down; an own user timeout stays."""
    keepalive.install(POLICY, sweep=0)
    with socket.socket() as sock:
        keepalive.apply(sock, OTHER)
        sock.connect(echo)
        options = keepalive_options(sock)
    assert options == {"keepalive": 1, "idle": 19, "interval": 4, "count": 3, "user_timeout_ms": 43_000}


def test_keepalive_create_connection_policy_tighter_than_installed_stays(echo: tuple[str, int]) -> None:
    """keepalive.create_connection(policy=...) under install(): an explicit policy within the installed one stays."""
    keepalive.install(POLICY, sweep=0)
    tighter = Policy(idle=20, interval=3, count=2)
    with keepalive.create_connection(echo, policy=tighter) as sock:
        assert_policy_applied(sock, tighter)


def test_keepalive_switched_on_without_timings_gets_the_policy(echo: tuple[str, int]) -> None:
    """SO_KEEPALIVE=1 alone (the kernel's 7200 s idle) is brought down to the policy."""
    keepalive.install(POLICY)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.connect(echo)
        assert_policy_applied(sock, POLICY)


def test_bringing_a_socket_down_is_logged_once_per_distinct_values(
    echo: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line on keepalive.install per distinct (origin, before, after), however many connections."""
    keepalive.install(Policy(idle=60, interval=10, count=5), sweep=0)
    with caplog.at_level("INFO", logger="keepalive.install"):
        for _ in range(3):
            with socket.socket() as sock:
                _own_keepalive(sock, 121, 10, 9)
                sock.connect(echo)
    lines = [r.getMessage() for r in caplog.records if "brought" in r.getMessage()]
    assert lines == [
        "keepalive: install() brought a connection's keepalive from 121/10/9 to 60/10/5, user timeout 110 s"
    ]


def test_uninstall_restores_the_original_functions(echo: tuple[str, int]) -> None:
    """After uninstall() socket.socket.connect/connect_ex are the C type's own objects and connects are plain."""
    before = {name: socket.socket.__dict__.get(name) for name in ("connect", "connect_ex")}
    keepalive.install(POLICY)
    assert socket.socket.connect is not _socket.socket.connect
    keepalive.uninstall()
    assert {name: socket.socket.__dict__.get(name) for name in ("connect", "connect_ex")} == before
    assert socket.socket.connect is _socket.socket.connect
    assert socket.socket.connect_ex is _socket.socket.connect_ex
    assert not keepalive.is_installed()
    with socket.create_connection(echo) as sock:
        assert untouched(sock)


def test_uninstall_restores_a_pre_existing_override(echo: tuple[str, int]) -> None:
    """If socket.socket.connect was already overridden, install() wraps it and uninstall() puts it back."""
    calls: list[Any] = []

    def tracing_connect(self: socket.socket, address: Any) -> None:
        calls.append(address)
        _socket.socket.connect(self, address)

    socket.socket.connect = tracing_connect  # type: ignore[method-assign, assignment]
    try:
        keepalive.install(POLICY)
        with socket.create_connection(echo) as sock:
            assert_policy_applied(sock, POLICY)
        assert calls == [echo]
        keepalive.uninstall()
        assert socket.socket.__dict__["connect"] is tracing_connect
    finally:
        keepalive.uninstall()
        del socket.socket.connect


def test_a_wrapper_installed_after_us_survives_uninstall(echo: tuple[str, int]) -> None:
    """uninstall() does not rip out another library's later wrapper; our hook inside it goes inert."""
    keepalive.install(POLICY)
    ours = socket.socket.connect

    def later(self: socket.socket, address: Any) -> None:
        ours(self, address)

    socket.socket.connect = later  # type: ignore[method-assign, assignment]
    try:
        keepalive.uninstall()
        assert socket.socket.__dict__["connect"] is later
        with socket.socket() as sock:
            sock.connect(echo)
            assert untouched(sock)
        keepalive.install(POLICY)  # re-activates the hook still in the chain, without wrapping it twice
        assert socket.socket.__dict__["connect"] is later
        with socket.socket() as sock:
            sock.connect(echo)
            assert_policy_applied(sock, POLICY)
    finally:
        socket.socket.connect = ours  # type: ignore[method-assign]
    keepalive.uninstall()  # ours is on top again and is removed
    assert socket.socket.connect is _socket.socket.connect


def test_install_is_idempotent_and_a_new_policy_replaces_the_old(echo: tuple[str, int]) -> None:
    """install() twice wraps once; install(other) switches the policy for later connections."""
    keepalive.install(POLICY)
    hook = socket.socket.__dict__["connect"]
    keepalive.install(POLICY)
    assert socket.socket.__dict__["connect"] is hook
    assert hook.__wrapped__ is _socket.socket.connect
    keepalive.install(OTHER)
    assert socket.socket.__dict__["connect"] is hook
    with socket.create_connection(echo) as sock:
        assert_policy_applied(sock, OTHER)
    keepalive.uninstall()
    keepalive.uninstall()
    assert socket.socket.connect is _socket.socket.connect


def test_install_rejects_a_non_policy() -> None:
    """install('60,10,5') is a TypeError, and nothing is patched."""
    with pytest.raises(TypeError):
        keepalive.install("60,10,5")  # type: ignore[arg-type]
    assert "connect" not in socket.socket.__dict__


def test_default_policy_and_runtime_check_are_resolved_on_the_first_connection(
    echo: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """install() does no work up front; the first connect resolves the default policy once (runtime check)."""
    calls: list[Policy | None] = []
    real = _runtime.resolve

    def counting(policy: Policy | None) -> Policy:
        calls.append(policy)
        return real(policy)

    monkeypatch.setattr(_runtime, "resolve", counting)
    monkeypatch.setenv("KEEPALIVE_IDLE", "29")
    keepalive.install()
    assert calls == []
    for _ in range(3):
        with socket.create_connection(echo) as sock:
            assert keepalive_options(sock)["idle"] == 29
    assert calls == [None]
    assert _install.installed_policy() == Policy(idle=29)


def test_a_failing_apply_never_breaks_connect(echo: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Any error inside the hook is swallowed (DEBUG log): the connection is made as if nothing were installed."""

    calls: list[object] = []

    def broken(sock: Any, policy: Any = None, **options: Any) -> Any:
        calls.append(sock)
        raise RuntimeError("boom")

    from keepalive import _tighten

    monkeypatch.setattr(_tighten, "tighten", broken)  # the hook imports it on use (not at start-up)
    keepalive.install(POLICY)
    with socket.create_connection(echo) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
    assert len(calls) == 1


def test_connect_errors_still_propagate(echo: tuple[str, int]) -> None:
    """The hook does not change connect's own behaviour: a refused connection still raises, connect_ex returns."""
    keepalive.install(POLICY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(free, timeout=2)
    with socket.socket() as sock:
        assert sock.connect_ex(free) != 0


def test_asyncio_open_connection_gets_the_policy(echo: tuple[str, int]) -> None:
    """asyncio (selector loop): open_connection -> create_connection -> sock_connect -> sock.connect."""
    keepalive.install(POLICY)

    async def main() -> None:
        _reader, writer = await asyncio.open_connection(*echo)
        assert_policy_applied(writer.get_extra_info("socket"), POLICY)
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())


def test_asyncio_sock_connect_gets_the_policy(echo: tuple[str, int]) -> None:
    """loop.sock_connect on a user's non-blocking socket is covered."""
    keepalive.install(POLICY)

    async def main() -> None:
        with socket.socket() as sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, echo)
            assert_policy_applied(sock, POLICY)

    asyncio.run(main())


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop")
def test_uvloop_create_connection_gets_the_policy(echo: tuple[str, int]) -> None:
    """uvloop connects in C; its Loop.create_connection is wrapped (also when uvloop is imported later)."""
    uvloop = pytest.importorskip("uvloop")
    keepalive.install(POLICY)
    assert "create_connection" in uvloop.Loop.__dict__

    async def main() -> None:
        _reader, writer = await asyncio.open_connection(*echo)
        assert_policy_applied(writer.get_extra_info("socket"), POLICY)
        writer.close()
        await writer.wait_closed()
        with socket.socket() as sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, echo)
            assert_policy_applied(sock, POLICY)

    uvloop.run(main())
    keepalive.uninstall()
    assert "create_connection" not in uvloop.Loop.__dict__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop")
def test_loop_modules_imported_after_install_are_wrapped_on_import() -> None:
    """install() before ``import uvloop`` / asyncio's proactor module (the KEEPALIVE_AUTO case): they are wrapped
    as they load."""
    pytest.importorskip("uvloop")
    code = (
        "import keepalive, sys; keepalive.install(keepalive.Policy(idle=41, interval=7, count=3));"
        "assert 'uvloop' not in sys.modules and 'asyncio.proactor_events' not in sys.modules;"
        "import uvloop, asyncio.proactor_events as p;"
        "print('create_connection' in uvloop.Loop.__dict__, 'sock_connect' in p.BaseProactorEventLoop.__dict__)"
    )
    import subprocess

    env = environ_without_keepalive()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.stdout.strip() == "True True", out.stderr


def test_proactor_sock_connect_applies_before_connectex(echo: tuple[str, int]) -> None:
    """asyncio's proactor loop (Windows) connects with ConnectEx, not sock.connect: its sock_connect is wrapped.
    Driven here with a recording stand-in for the IOCP proactor (the real one exists only on Windows)."""
    from asyncio import proactor_events

    before = proactor_events.BaseProactorEventLoop.__dict__["sock_connect"]
    keepalive.install(POLICY)
    seen: list[dict[str, int]] = []

    class RecordingProactor:
        def connect(self, sock: socket.socket, address: Any) -> Any:
            seen.append(keepalive_options(sock))  # what the socket carries when ConnectEx would run
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    class Loop:
        _proactor = RecordingProactor()

    async def main() -> None:
        with socket.socket() as sock:
            await proactor_events.BaseProactorEventLoop.sock_connect(Loop(), sock, echo)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == [expected_options(POLICY)]
    keepalive.uninstall()
    assert proactor_events.BaseProactorEventLoop.__dict__["sock_connect"] is before


@pytest.mark.trio
async def test_trio_open_tcp_stream_gets_the_policy(echo: tuple[str, int]) -> None:
    """trio's socket wraps a socket.socket and calls its connect()."""
    import trio

    keepalive.install(POLICY)
    stream = await trio.open_tcp_stream(*echo)
    try:
        assert_policy_applied(stream.socket, POLICY)
    finally:
        await stream.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)
async def test_anyio_connect_tcp_gets_the_policy(echo: tuple[str, int]) -> None:
    """anyio.connect_tcp on both backends."""
    import anyio
    from anyio.abc import SocketAttribute

    keepalive.install(POLICY)
    async with await anyio.connect_tcp(*echo) as stream:
        assert_policy_applied(stream.extra(SocketAttribute.raw_socket), POLICY)


def test_concurrent_install_uninstall_and_connects_end_in_a_clean_state(echo: tuple[str, int]) -> None:
    """Threads racing install()/uninstall() while others connect: no connect fails, and a final uninstall()
    leaves the originals exactly in place."""
    errors: list[BaseException] = []
    stop = threading.Event()
    allowed = {POLICY.idle, OTHER.idle, keepalive.default_policy().idle}

    def toggler(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(200):
                if rng.random() < 0.5:
                    keepalive.install(rng.choice([POLICY, OTHER, None]))
                else:
                    keepalive.uninstall()
        except BaseException as exc:
            errors.append(exc)

    def connector() -> None:
        try:
            while not stop.is_set():
                with socket.create_connection(echo, timeout=5) as sock:
                    options = keepalive_options(sock)
                    assert options["keepalive"] == 0 or options["idle"] in allowed
        except BaseException as exc:
            errors.append(exc)

    togglers = [threading.Thread(target=toggler, args=(seed,)) for seed in range(6)]
    connectors = [threading.Thread(target=connector) for _ in range(3)]
    for thread in connectors + togglers:
        thread.start()
    for thread in togglers:
        thread.join(60)
    stop.set()
    for thread in connectors:
        thread.join(60)
    assert errors == []
    keepalive.uninstall()
    assert socket.socket.connect is _socket.socket.connect
    assert socket.socket.connect_ex is _socket.socket.connect_ex


def test_concurrent_first_connections_all_get_the_policy(echo: tuple[str, int]) -> None:
    """Many threads making the first connection at once: the policy is resolved once and every socket has it."""
    keepalive.install(POLICY)
    barrier = threading.Barrier(16)
    results: list[dict[str, int]] = []
    lock = threading.Lock()

    def connect() -> None:
        barrier.wait()
        with socket.create_connection(echo, timeout=5) as sock:
            options = keepalive_options(sock)
        with lock:
            results.append(options)

    threads = [threading.Thread(target=connect) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16
    assert all(r["idle"] == POLICY.idle and r["keepalive"] == 1 for r in results)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_another_thread_holds_the_lock_does_not_hang_the_child(echo: tuple[str, int]) -> None:
    """A child forked while another thread is inside install() (holding its lock) can still connect, with the
    policy: the lock is renewed in the child."""
    import warnings

    keepalive.install(POLICY)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with _install._lock:
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                with socket.create_connection(echo, timeout=5) as sock:
                    code = 0 if keepalive_options(sock) == expected_options(POLICY) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        thread.join(10)
