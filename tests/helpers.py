"""Test support shared by every test module: socket option read-back, finding a client's socket, skip rules."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from keepalive import Policy
from keepalive._socket import borrow_socket

LINUX = hasattr(socket, "TCP_KEEPIDLE") and hasattr(socket, "TCP_USER_TIMEOUT")


def environ_without_keepalive(**extra: str) -> dict[str, str]:
    """``os.environ`` without the ``KEEPALIVE_*`` variables (a process as a user starts it, whatever the test run
    has set), plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KEEPALIVE_")} | extra


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def keepalive_options(sock: Any) -> dict[str, int]:
    """getsockopt of every keepalive option on ``sock`` (Linux names; user_timeout in ms)."""
    return {
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }


def expected_options(policy: Policy) -> dict[str, int]:
    """What :func:`keepalive_options` reads back from a socket that carries ``policy``."""
    return {
        "keepalive": 1,
        "idle": policy.idle,
        "interval": policy.interval,
        "count": policy.count,
        "user_timeout_ms": policy.user_timeout_ms or 0,
    }


def _forget_keepalive(sock: Any) -> None:
    """Reset the keepalive options to the kernel's defaults: SO_KEEPALIVE off, 7200/75/9, no user timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 75)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 9)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 0)


@contextlib.contextmanager
def accepted_sockets_do_not_inherit() -> Iterator[None]:
    """Make ``accept()`` behave like a platform whose accepted sockets do not inherit the listener's keepalive
    options: every socket that ``socket.socket.accept`` (asyncio, anyio on asyncio) or a trio socket's
    ``accept`` (trio, anyio on trio) returns has them reset to the kernel's defaults before the caller sees it.
    A test of the per-connection path then fails when that path does not apply the policy (on Linux the
    inherited options would hide it)."""
    original = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = original(self)
        _forget_keepalive(conn)
        return conn, address

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "accept", accept)
        try:
            import trio._socket
        except ImportError:
            pass
        else:
            # The concrete class behind trio's public socket API (making an instance needs a running trio).
            trio_socket_type: Any = trio._socket._SocketType
            trio_accept = trio_socket_type.accept

            async def accept_trio(self: Any) -> tuple[Any, Any]:
                conn, address = await trio_accept(self)
                _forget_keepalive(conn)
                return conn, address

            mp.setattr(trio_socket_type, "accept", accept_trio)
        yield


@contextlib.contextmanager
def options_at_listen() -> Iterator[list[dict[str, int]]]:
    """Record :func:`keepalive_options` of every socket at the moment ``socket.socket.listen`` is called on it
    (asyncio, anyio and trio all listen through it): what a connection accepted right after listen() inherits."""
    seen: list[dict[str, int]] = []
    original = socket.socket.listen

    def listen(self: socket.socket, *args: Any) -> None:
        seen.append(keepalive_options(self))
        original(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "listen", listen)
        yield seen


def assert_policy_applied(sock: Any, policy: Policy) -> None:
    """Assert that the live socket carries ``policy`` (read back with getsockopt)."""
    got = keepalive_options(sock)
    want = expected_options(policy)
    if policy.user_timeout is None:
        got.pop("user_timeout_ms")
        want.pop("user_timeout_ms")
    assert got == want, f"socket options {got} != policy {want}"


def socket_for_local_port(port: int) -> socket.socket:
    """A duplicate of this process's connected TCP socket whose local port is ``port``.

    Options are per socket, not per fd, so getsockopt on the duplicate reads the client's real socket. Close the
    returned socket when done (that closes only the duplicate). Each socket fd of this process is asked for its
    own address (``/proc/net/tcp`` lists the whole namespace and is slow on a busy machine).
    """
    for fd_name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd_name}").startswith("socket:["):
                continue
            dup = borrow_socket(os.dup(int(fd_name)))  # never flips the client's shared blocking flag
        except OSError:
            continue
        try:
            if (
                dup.family in (socket.AF_INET, socket.AF_INET6)
                and dup.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
                and dup.getsockname()[1] == port
            ):
                dup.getpeername()  # connected, not a listener
                return dup
        except OSError:
            pass
        dup.close()
    raise AssertionError(f"no connected TCP socket of this process has local port {port}")


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test when the server is unreachable; fail instead under KEEPALIVE_REQUIRE_SERVICES=1."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port}: {exc}"
    if _truthy("KEEPALIVE_REQUIRE_SERVICES"):
        pytest.fail(f"{reason} (KEEPALIVE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def lab_unavailable_reason() -> str | None:
    """Why the conntrack lab cannot run here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft", "sysctl"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command"
    return None


def require_lab() -> None:
    """Skip the test when root / ip netns / nft are missing; fail instead under KEEPALIVE_REQUIRE_LAB=1."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if _truthy("KEEPALIVE_REQUIRE_LAB"):
        pytest.fail(f"lab unavailable: {reason} (KEEPALIVE_REQUIRE_LAB=1)")
    pytest.skip(f"lab unavailable: {reason}")


@contextlib.contextmanager
def echo_server(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> Iterator[tuple[str, int]]:
    """A threaded TCP echo server on loopback; yields its (host, port). Accepted sockets are kept for the test."""
    listener = socket.create_server((host, 0), family=family)
    listener.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for conn in conns:
            conn.close()


def _echo(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := conn.recv(65536):
            conn.sendall(data)


def forked_exit_code(pid: int, *, within: float, deadlock: str) -> int:
    """Wait for the forked child ``pid`` and return its exit code; kill it and fail with ``deadlock`` when it has
    not exited ``within`` seconds (a child stuck on a lock that was held at fork time)."""
    import time

    deadline = time.monotonic() + within
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(deadlock)
        time.sleep(0.05)
