"""Loopback fixtures shared by the async wrapper tests: a refusing port, a black hole, a TLS certificate."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
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
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port where ``connect()`` hangs: a listener whose accept queue is full and never drained.

    The kernel drops the SYNs of further connections, so a connect attempt stays pending until cancelled (or
    for the SYN retries, minutes). Used to hold a connection attempt open without leaving loopback.
    """
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        probe = socket.socket()
        fillers.append(probe)
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            probe.getpeername()
            pytest.skip("this kernel accepts connections beyond a full backlog: no black hole")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


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
