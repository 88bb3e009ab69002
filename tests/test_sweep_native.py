"""The in-process sweep: connections made in C inside a Python process (libpq through psycopg2, gRPC core) are
brought within the policy under KEEPALIVE_AUTO=1, and clients that set their own keepalive before connect
(pymongo's 120/10/9; a tighter 30/5/3) are tightened, never loosened. Every value is read back from outside the
child with pidfd_getfd (keepalive.audit(pid=...)), so nothing in the child vouches for itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

import keepalive
from keepalive import Policy, _install
from tests.helpers import LINUX, environ_without_keepalive, expected_options, require_service
from tests.reach_support import accepting_listener

pytestmark = pytest.mark.skipif(not LINUX or not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")

ROOT = Path(__file__).resolve().parent.parent
CHILD = str(Path(__file__).resolve().parent / "reach_child.py")
POLICY = Policy(idle=60, interval=10, count=5)
POSTGRES = ("127.0.0.1", 5432)
#: libpq switches SO_KEEPALIVE on and leaves the kernel's timings (the namespace's tcp_keepalive_* sysctls).
LIBPQ_OWN = {"keepalive": 1, "idle": 7200, "interval": 75, "count": 9, "user_timeout_ms": 0}


def child_env(**extra: str) -> dict[str, str]:
    env = environ_without_keepalive()
    env.update(KEEPALIVE_CHECK="0", **POLICY.to_env())
    env.update(extra)
    return env


@contextmanager
def holding(client: str, address: tuple[str, int], env: dict[str, str], *python_flags: str) -> Iterator[int]:
    """Run tests/reach_child.py CLIENT; yield its pid once it says ready; end it on exit."""
    argv = [sys.executable, *python_flags, CHILD, client, address[0], str(address[1])]
    with subprocess.Popen(
        argv, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.kill()
                pytest.fail(f"child failed: {line}{proc.communicate()[1]}")
            yield proc.pid
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def connections(pid: int, port: int) -> list[dict[str, int]]:
    """The keepalive options of ``pid``'s established connections to ``port``, read through pidfd_getfd."""
    found = []
    for state in keepalive.audit(pid=pid, path_timeout=1000):
        if state.state == "ESTABLISHED" and state.remote.endswith(f":{port}"):
            assert state.source == "getsockopt", state.reason
            found.append(
                {
                    "keepalive": int(bool(state.keepalive)),
                    "idle": state.idle or 0,
                    "interval": state.interval or 0,
                    "count": state.count or 0,
                    "user_timeout_ms": round((state.user_timeout or 0) * 1000),
                }
            )
    return found


def eventually(
    read: Callable[[], list[dict[str, int]]], want: dict[str, int], limit: float = 30
) -> list[dict[str, int]]:
    """Poll ``read()`` until every connection it lists equals ``want`` (or ``limit`` seconds pass); return it."""
    deadline = time.monotonic() + limit
    while True:
        got = read()
        if (got and all(g == want for g in got)) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A loopback server that accepts and holds every connection, answering nothing (pymongo waits for hello)."""
    with accepting_listener() as address:
        yield address


@pytest.fixture
def grpc_server() -> Iterator[tuple[str, int]]:
    """A real gRPC server on loopback with one echo method (/reach.Echo/Call, bytes in, bytes out)."""
    grpc = pytest.importorskip("grpc")
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "reach.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield "127.0.0.1", port
    finally:
        server.stop(None)


def test_psycopg2_libpq_connection_is_not_reached_without_the_sweep() -> None:
    """The control: libpq connects in C, so install()'s connect hook never sees it (KEEPALIVE_SWEEP=0)."""
    require_service("postgresql", *POSTGRES)
    with holding("psycopg2", POSTGRES, child_env(KEEPALIVE_AUTO="1", KEEPALIVE_SWEEP="0")) as pid:
        assert connections(pid, POSTGRES[1]) == [LIBPQ_OWN]


def test_psycopg2_libpq_connection_is_brought_within_the_policy_by_the_sweep() -> None:
    """KEEPALIVE_AUTO=1 (sweep on by default, here every 0.2 s): libpq's 7200/75/9 becomes 60/10/5 + user timeout."""
    require_service("postgresql", *POSTGRES)
    with holding("psycopg2", POSTGRES, child_env(KEEPALIVE_AUTO="1", KEEPALIVE_SWEEP="0.2")) as pid:
        got = eventually(lambda: connections(pid, POSTGRES[1]), expected_options(POLICY))
    assert got == [expected_options(POLICY)]


def test_grpc_core_connection_is_brought_within_the_policy_by_the_sweep(grpc_server: tuple[str, int]) -> None:
    """gRPC core (keepalive off by default) connects in C; the sweep switches keepalive on with the policy."""
    with holding("grpc", grpc_server, child_env(KEEPALIVE_AUTO="1", KEEPALIVE_SWEEP="0.2")) as pid:
        got = eventually(lambda: connections(pid, grpc_server[1]), expected_options(POLICY))
    assert got, "no connection found"
    assert all(g == expected_options(POLICY) for g in got), got


def test_pymongo_sets_its_own_looser_keepalive_without_the_hook(listener: tuple[str, int]) -> None:
    """The control: pymongo sets 120/10/9 itself before connect (no keepalive in the process)."""
    pytest.importorskip("pymongo")
    with holding("pymongo", listener, child_env(KEEPALIVE_SWEEP="0")) as pid:
        got = eventually(
            lambda: connections(pid, listener[1]),
            {**expected_options(Policy(idle=120, interval=10, count=9)), "user_timeout_ms": 0},
        )
    assert got, "no connection found"
    assert all((g["idle"], g["count"]) == (120, 9) for g in got), got


def test_pymongo_own_looser_keepalive_is_brought_down_at_connect(listener: tuple[str, int]) -> None:
    """Under KEEPALIVE_AUTO=1 (sweep off, so the connect hook alone): pymongo's 120/10/9 becomes 60/10/5."""
    pytest.importorskip("pymongo")
    with holding("pymongo", listener, child_env(KEEPALIVE_AUTO="1", KEEPALIVE_SWEEP="0")) as pid:
        got = eventually(lambda: connections(pid, listener[1]), expected_options(POLICY))
    assert got, "no connection found"
    assert all(g == expected_options(POLICY) for g in got), got


def test_a_clients_own_tighter_keepalive_survives_the_sweep(listener: tuple[str, int]) -> None:
    """30/5/3 set before connect under a 60/10/5 policy: kept by the hook and by sweep rounds; user timeout added."""
    with holding("own-30-5-3", listener, child_env(KEEPALIVE_AUTO="1", KEEPALIVE_SWEEP="0.1")) as pid:
        want = {"keepalive": 1, "idle": 30, "interval": 5, "count": 3, "user_timeout_ms": 110_000}
        got = eventually(lambda: connections(pid, listener[1]), want)
    assert got == [want]


# --- the sweep thread in this process --------------------------------------------------------------------------


@pytest.fixture
def _uninstalled() -> Iterator[None]:
    keepalive.uninstall()
    yield
    keepalive.uninstall()


def _loosen(sock: socket.socket) -> None:
    """What a native library does after connect, out of the hook's sight: keepalive off."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)


@pytest.mark.usefixtures("_uninstalled")
def test_a_sweep_round_tightens_a_connection_the_hook_did_not_see(listener: tuple[str, int]) -> None:
    """One round (run in this thread) brings a connected socket whose options changed after connect within policy."""
    keepalive.install(POLICY, sweep=3600)
    with socket.create_connection(listener) as sock:
        _loosen(sock)
        assert _install._sweeper is not None
        _install._sweeper.sweep_now()
        from tests.helpers import keepalive_options

        assert keepalive_options(sock) == expected_options(POLICY)


@pytest.mark.usefixtures("_uninstalled")
def test_sweep_off_and_uninstall_stop_the_thread() -> None:
    """sweep=0 starts no thread; uninstall() stops a running one; KEEPALIVE_SWEEP is validated."""
    keepalive.install(POLICY, sweep=0)
    assert _install._sweeper is None
    keepalive.install(POLICY, sweep=0.5)
    sweeper = _install._sweeper
    assert sweeper is not None
    assert sweeper._thread is not None
    keepalive.uninstall()
    sweeper._thread.join(5)
    assert not sweeper._thread.is_alive()
    with pytest.raises(ValueError, match="sweep must be"):
        keepalive.install(POLICY, sweep=-1)
    with pytest.raises(ValueError, match="KEEPALIVE_SWEEP='soon'"):
        _install.parse_sweep("soon")
    assert _install.parse_sweep("0") == 0
    assert _install.parse_sweep(" 2.5 ") == 2.5


@pytest.mark.usefixtures("_uninstalled")
def test_a_forked_child_runs_its_own_sweep(listener: tuple[str, int]) -> None:
    """After os.fork() the child (which inherits no threads) starts its own sweep and reaches its connections."""
    keepalive.install(POLICY, sweep=0.1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            with socket.create_connection(listener) as sock:
                _loosen(sock)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if (
                        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                        and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == POLICY.idle
                    ):
                        code = 0
                        break
                    time.sleep(0.05)
        finally:
            os.write(write_end, bytes([code]))
            os._exit(code)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def test_the_sweep_thread_does_not_import_the_engine_before_its_first_round() -> None:
    """KEEPALIVE_AUTO start-up stays cheap: install() imports neither keepalive._audit nor ctypes, nor even
    keepalive._tighten (the first connection imports that)."""
    code = (
        "import sys, keepalive; keepalive.install(sweep=60); "
        "print(sorted(m for m in ('keepalive._audit', 'ctypes', 'keepalive._tighten') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_a_descriptor_closed_or_reused_mid_round_is_skipped_without_error(
    listener: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between listing /proc/self/fd and duplicating: one connection closes, another's number is reused by a fresh
    unconnected socket. The round neither raises nor reports them, nor touches the newcomer (not connected yet: its
    owner may still set its own options); the rest is reached."""
    import keepalive._audit._sweep as engine

    closing = socket.create_connection(listener)
    reused = socket.create_connection(listener)
    staying = socket.create_connection(listener)
    reused_fd = reused.fileno()
    newcomer = socket.socket()
    real = engine._socket_fds

    def list_then_change(proc: str) -> dict[int, int]:
        found = real(proc)
        closing.close()
        reused.close()
        os.dup2(newcomer.fileno(), reused_fd)
        return found

    monkeypatch.setattr(engine, "_socket_fds", list_then_change)
    try:
        result = engine.tighten_round(None, POLICY, set(), origin="test")
        assert result.unreachable is None
        assert not result.gone
        assert {r.fd for r in result.reached} >= {staying.fileno()}
        assert reused_fd not in {r.fd for r in result.reached}
        assert newcomer.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        with socket.socket(fileno=os.dup(reused_fd)) as dup:
            assert dup.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    finally:
        os.close(reused_fd)
        newcomer.close()
        staying.close()
