"""Micro-benchmarks run by pyperf (each in its own worker processes).

Run by ``python -m benchmarks``; standalone: ``python benchmarks/micro.py --fast -o out.json``.

* ``raw_setsockopt``: the setsockopt calls ``keepalive.apply()`` makes, written out by hand (the floor).
* ``apply``: ``keepalive.apply(sock, policy)`` on the same kind of socket.
  (All are timed in this thread's CPU time, see ``cpu_clock``.)
* ``socket_create_connection`` / ``keepalive_create_connection``: connect + close on loopback.
* ``connect_plain`` / ``connect_installed``: ``socket.create_connection`` without and with ``keepalive.install()``.
* ``raw_calls_create_connection``: ``socket.create_connection`` written out with the setsockopt calls of
  ``apply()`` before ``connect()``: what a connection with these options costs the kernel, without keepalive's code
  (the floor of the two connection rows above).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import keepalive

POLICY = keepalive.Policy(idle=60, interval=10, count=5)
CALLS = keepalive.socket_options(POLICY)


#: The clock of the apply rows: this thread's CPU time (user + system), which excludes the time a busy machine's
#: scheduler gives to other processes; apply() and its setsockopt calls never wait for anything.
cpu_clock = time.thread_time


def time_raw(loops: int) -> float:
    sock = socket.socket()
    setsockopt = sock.setsockopt
    calls = CALLS
    clock = cpu_clock
    try:
        start = clock()
        for _ in range(loops):
            for level, optname, value in calls:
                setsockopt(level, optname, value)
        return clock() - start
    finally:
        sock.close()


def time_apply(loops: int) -> float:
    sock = socket.socket()
    apply = keepalive.apply
    policy = POLICY
    clock = cpu_clock
    try:
        start = clock()
        for _ in range(loops):
            apply(sock, policy)
        return clock() - start
    finally:
        sock.close()


class _Listener:
    """A loopback listener whose thread accepts and closes connections (the server closes first)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        host, port = self.sock.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()


_LISTENER: _Listener | None = None


def _address() -> tuple[str, int]:
    global _LISTENER
    if _LISTENER is None:
        _LISTENER = _Listener()
    return _LISTENER.address


def _time_connect(connect: Callable[[tuple[str, int]], socket.socket], loops: int) -> float:
    """Thread CPU time of ``loops`` connects and closes: what this thread spent, in Python and in the kernel's
    connect, setsockopt and close. Wall time would add the waits for the GIL, which the listener's accepting thread
    holds now and then, and the scheduler's: 10-20 % from one block to the next on a shared machine."""
    address = _address()
    clock = cpu_clock
    start = clock()
    for _ in range(loops):
        sock = connect(address)
        sock.close()
    return clock() - start


def time_socket_create_connection(loops: int) -> float:
    return _time_connect(socket.create_connection, loops)


def _raw_calls_create_connection(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family, kind, proto, _canonname, sockaddr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    for level, optname, value in CALLS:
        sock.setsockopt(level, optname, value)
    sock.connect(sockaddr)
    return sock


def time_raw_calls_create_connection(loops: int) -> float:
    return _time_connect(_raw_calls_create_connection, loops)


def time_keepalive_create_connection(loops: int) -> float:
    return _time_connect(lambda a: keepalive.create_connection(a, policy=POLICY), loops)


def time_connect_installed(loops: int) -> float:
    install = getattr(keepalive, "install", None)
    if install is None:
        raise RuntimeError("keepalive.install() is not available")
    install(POLICY)
    try:
        return _time_connect(socket.create_connection, loops)
    finally:
        keepalive.uninstall()


def main() -> None:
    import pyperf  # type: ignore[import-untyped]  # here: `python -m benchmarks` runs the rest without it

    runner = pyperf.Runner()
    runner.metadata["description"] = "keepalive.apply() and wrappers vs the raw calls"
    runner.bench_time_func("raw_setsockopt", time_raw)
    runner.bench_time_func("apply", time_apply)
    runner.bench_time_func("socket_create_connection", time_socket_create_connection)
    runner.bench_time_func("keepalive_create_connection", time_keepalive_create_connection)
    if hasattr(keepalive, "install"):
        runner.bench_time_func("connect_plain", time_socket_create_connection)
        runner.bench_time_func("connect_installed", time_connect_installed)


if __name__ == "__main__":
    main()
