"""Quickstart: open a connection with keepalive, and check what the kernel now holds for it."""

import socket

import keepalive

# A local server to talk to; create_server() makes every accepted connection inherit the policy (Linux).
with keepalive.create_server(("127.0.0.1", 0)) as server:
    host, port = server.getsockname()[:2]

    # Drop-in for socket.create_connection(): keepalive is set before connect(), so it covers the handshake.
    with keepalive.create_connection((host, port), timeout=5) as sock:
        conn, _ = server.accept()
        with conn:
            sock.sendall(b"ping")
            assert conn.recv(4) == b"ping"

        policy = keepalive.default_policy()  # KEEPALIVE_* variables, else the built-in default
        print("policy:", policy)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux, Windows 10 1709+, recent macOS
            print("TCP_KEEPIDLE:", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
