"""Loopback fixtures shared by the async wrapper tests: a refusing port, a black hole, a TLS certificate."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keepalive import Policy

#: A policy no default would produce, so a match proves the wrapper applied it.
POLICY = Policy(idle=17, interval=4, count=3)
#: Another one, for "policy=None uses the default" checks.
ENV_POLICY = {"KEEPALIVE_IDLE": "23", "KEEPALIVE_INTERVAL": "6", "KEEPALIVE_COUNT": "2"}


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as holder:
        holder.bind((host, port))
        yield holder.getsockname()[1]


@contextlib.contextmanager
def black_hole(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A loopback port where ``connect()`` hangs: a listener whose accept queue is full and never drained.

    The kernel drops the SYNs of further connections, so a connect attempt stays pending until cancelled (or
    for the SYN retries, minutes). Used to hold a connection attempt open without leaving loopback.
    """
    with socket.socket() as listener:
        listener.bind((host, port))
        with _hang(listener):
            yield listener.getsockname()[1]


@contextlib.contextmanager
def _hang(listener: socket.socket) -> Iterator[None]:
    host, port = listener.getsockname()[:2]
    listener.listen(0)
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # the last one is the probe
            filler = socket.socket()
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex((host, port))
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            fillers[-1].getpeername()
            pytest.skip("this kernel accepts connections beyond a full backlog: no black hole")
        yield
    finally:
        for filler in fillers:
            filler.close()


@contextlib.contextmanager
def _echo(listener: socket.socket) -> Iterator[None]:
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def serve_one(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conns.append(conn)
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)
        for conn in conns:
            conn.close()


#: Loopback addresses, in the order a made-up name resolves to them in the multi-address tests.
HOSTS = ("127.0.0.1", "127.0.0.2")


@contextlib.contextmanager
def one_port(*kinds: str) -> Iterator[int]:
    """One port on 127.0.0.1, 127.0.0.2, ...: each address ``"refuse"``s, ``"hang"``s or ``"echo"``es.

    For the multi-address tests: a name that resolves to several addresses keeps the port the caller asked for,
    so the addresses differ, not the ports.
    """
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in kinds]
            try:
                sockets[0].bind((HOSTS[0], 0))
                port = sockets[0].getsockname()[1]
                for host, sock in zip(HOSTS[1:], sockets[1:], strict=False):
                    sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            for kind, sock in zip(kinds, sockets, strict=True):
                if kind == "hang":
                    stack.enter_context(_hang(sock))
                elif kind == "echo":
                    stack.enter_context(_echo(sock))
            yield port
            return
    raise AssertionError("no port free on every loopback address")


def open_socket_fds() -> set[int]:
    """The fds of this process that are sockets (Linux: /proc/self/fd)."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.add(int(name))
    return fds


def connections_to(port: int) -> set[int]:
    """Socket inodes of this process's TCP sockets whose remote port is ``port``, in any state (Linux)."""
    inodes: set[int] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(fields[9]))
    mine = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                mine.add(int(target[8:-1]))
    return mine


@functools.cache
def _certificate() -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = Path(tempfile.mkdtemp(prefix="keepalive-tls-"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a self-signed ``localhost`` / 127.0.0.1 certificate."""
    cert, key = _certificate()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
