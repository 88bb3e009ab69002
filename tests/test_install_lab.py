"""KEEPALIVE_AUTO=1 end to end through the conntrack lab: unadapted programs (plain stdlib sockets and asyncio,
no mention of keepalive in their code) in the client namespace, idle for over twice the node's conntrack
timeout, then the server pushes a line. With KEEPALIVE_AUTO=1 the push arrives; without it, it never does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from keepalive.lab import Lab
from tests.helpers import environ_without_keepalive, require_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CONNTRACK_TIMEOUT = 3
IDLE_FOR = 2 * CONNTRACK_TIMEOUT + 2
WAIT = 3.0
PORT = 8095

#: The program under test: knows nothing about keepalive. Connects to VIP:PORT, says hello, waits for the push.
PROGRAM = r"""
import asyncio, json, socket, sys

mode, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def report(received, error, sock):
    print(json.dumps({"received": received, "error": error,
                      "so_keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}), flush=True)

def with_socket():
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"hello\n")
    reader = sock.makefile("rb")
    assert reader.readline() == b"ready\n"
    sock.settimeout(timeout)
    try:
        line = reader.readline()
        sock.sendall(b"ack\n")
        report(line == b"event\n", None, sock)
    except OSError as exc:
        report(False, repr(exc), sock)

async def with_asyncio():
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    writer.write(b"hello\n")
    assert await reader.readline() == b"ready\n"
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        writer.write(b"ack\n")
        await writer.drain()
        report(line == b"event\n", None, sock)
    except (OSError, asyncio.TimeoutError) as exc:
        report(False, repr(exc), sock)

with_socket() if mode == "socket" else asyncio.run(with_asyncio())
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    with Lab(conntrack_timeout=CONNTRACK_TIMEOUT) as lab:
        yield lab


def _read_line(conn: Any) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_keepalive_auto_keeps_an_unadapted_program_alive_through_conntrack(lab: Lab) -> None:
    """Four programs idle 8 s behind a node whose conntrack forgets after 3 s. KEEPALIVE_AUTO=1 with
    KEEPALIVE_PATH_TIMEOUT=3 (as a Deployment would set it): the server's push reaches the socket and the
    asyncio program. Without the variable: the same programs never see it."""
    ready = threading.Semaphore(0)
    push = threading.Event()
    server_seen: list[str] = []

    def handler(conn: Any, backend: str) -> None:
        conn.settimeout(IDLE_FOR + WAIT + 10)
        try:
            _read_line(conn)
            conn.sendall(b"ready\n")
            ready.release()
            push.wait()
            conn.sendall(b"event\n")
            conn.settimeout(WAIT + 2)
            server_seen.append(_read_line(conn).decode().strip())
        except OSError as exc:
            server_seen.append(type(exc).__name__)

    server = lab.serve(PORT, handler, backends=1)
    auto = {"KEEPALIVE_AUTO": "1", "KEEPALIVE_PATH_TIMEOUT": str(CONNTRACK_TIMEOUT), "KEEPALIVE_CHECK": "0"}
    plain = {"KEEPALIVE_CHECK": "0"}
    cases = {"socket+auto": ("socket", auto), "asyncio+auto": ("asyncio", auto)}
    cases |= {"socket plain": ("socket", plain), "asyncio plain": ("asyncio", plain)}
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, (mode, extra) in cases.items():
            argv = [sys.executable, "-c", PROGRAM, mode, lab.vip, str(PORT), str(IDLE_FOR + WAIT)]
            env = environ_without_keepalive()
            processes[name] = lab.popen(
                "client", argv, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        for _ in cases:
            assert ready.acquire(timeout=30), "a program did not connect"
        time.sleep(IDLE_FOR)
        push.set()
        results = {}
        for name, process in processes.items():
            out, err = process.communicate(timeout=IDLE_FOR + WAIT + 30)
            assert process.returncode == 0, f"{name}: {err}"
            results[name] = json.loads(out.strip().splitlines()[-1])
    finally:
        push.set()
        server.stop()
    print(f"\n[lab] {json.dumps(results)} server saw {server_seen}")
    assert results["socket+auto"]["received"] is True, results
    assert results["asyncio+auto"]["received"] is True, results
    assert results["socket+auto"]["so_keepalive"] == 1
    assert results["socket plain"]["received"] is False, results
    assert results["asyncio plain"]["received"] is False, results
    assert results["socket plain"]["so_keepalive"] == 0
    assert server_seen.count("ack") == 2, server_seen
