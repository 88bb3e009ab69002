"""Child program for tests/test_sweep_native.py and tests/test_run_supervisor.py: open a connection through a
client and hold it until standard input closes. The program never mentions keepalive; the test reads the options
back from outside with pidfd_getfd (keepalive.audit(pid=...)).

Usage: ``python tests/reach_child.py CLIENT HOST PORT``. Prints ``ready`` once the connection is made (pymongo:
once the client is created; it connects in a background thread), then waits for EOF on standard input.

Clients: ``psycopg2`` (libpq, in C), ``grpc`` (gRPC core, in C), ``pymongo`` (sets 120/10/9 itself before
connect), ``own-30-5-3`` and ``own-120-10-9`` (a plain socket with that keepalive set before connect, like
redis-py and pymongo), ``plain`` (a plain socket, keepalive off). Run with ``python -S`` the last three connect
with no start-up hook at all, like a program in any other language.
"""

from __future__ import annotations

import socket
import sys


def _own(host: str, port: int, idle: int, interval: int, count: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    sock.connect((host, port))
    return sock


def main() -> None:
    client, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    held: object
    if client == "psycopg2":
        import psycopg2

        held = psycopg2.connect(host=host, port=port, user="postgres", dbname="test")
    elif client == "grpc":
        import grpc

        channel = grpc.insecure_channel(f"{host}:{port}")
        assert channel.unary_unary("/reach.Echo/Call")(b"ping", timeout=10) == b"ping"
        held = channel
    elif client == "pymongo":
        import pymongo

        held = pymongo.MongoClient(host, port, connectTimeoutMS=60_000, serverSelectionTimeoutMS=60_000)
    elif client.startswith("own-"):
        idle, interval, count = (int(v) for v in client[4:].split("-"))
        held = _own(host, port, idle, interval, count)
    elif client == "plain":
        held = socket.create_connection((host, port))
    else:
        raise SystemExit(f"unknown client {client!r}")
    print("ready", flush=True)
    sys.stdin.read()
    del held


if __name__ == "__main__":
    main()
