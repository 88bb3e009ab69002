"""fetch_configz on loopback: the timeout is one deadline for connect, headers and body, however slowly a server
answers; redirects are not followed; a real /configz body of kube-proxy 1.30 is read."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keepalive._path._kubeproxy import fetch_configz

CONFIGZ = (Path(__file__).parent / "data" / "kube-proxy" / "configz.json").read_bytes()


class Server:
    """A raw TCP server on 127.0.0.1 that answers each connection with ``script(conn, stop)``."""

    def __init__(self, script: object) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.script = script
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request
                    self.script(conn, self.stop)  # type: ignore[operator]
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[Server] = []

    def start(script: object) -> str:
        server = Server(script)
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/configz"

    yield start
    for server in servers:
        server.close()


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(1.0):
        conn.sendall(b" ")


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 10000:
        if stop.wait(1.0):
            return
        conn.sendall(bytes([byte]))


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("script", [drip_body, drip_headers, silent], ids=["body", "headers", "silent"])
def test_a_server_sending_a_byte_a_second_cannot_hold_the_fetch_past_its_deadline(
    serve: object, script: object
) -> None:
    """Bounded by pytest-timeout: with a per-read timeout this would run for as long as the server likes."""
    url = serve(script)  # type: ignore[operator]
    proxy, reason = fetch_configz(url, timeout=1.5)
    assert proxy is None
    assert reason is not None
    assert "within 1.5 s" in reason


def test_a_real_configz_body_is_read(serve: object) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + CONFIGZ)

    proxy, reason = fetch_configz(serve(answer), timeout=5)  # type: ignore[operator]
    assert reason is None
    assert proxy is not None
    assert proxy.tcp_established_timeout == 86400
    assert proxy.defaulted == ()


def test_a_chunked_answer_is_read(serve: object) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        half = len(CONFIGZ) // 2
        chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (CONFIGZ[:half], CONFIGZ[half:]))
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
        )

    proxy, reason = fetch_configz(serve(answer), timeout=5)  # type: ignore[operator]
    assert reason is None
    assert proxy is not None
    assert proxy.mode == "iptables"


def test_a_redirect_is_not_followed(serve: object) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.0 302 Found\r\nLocation: http://10.0.0.1:10249/configz\r\nContent-Length: 0\r\n\r\n")

    proxy, reason = fetch_configz(serve(answer), timeout=5)  # type: ignore[operator]
    assert proxy is None
    assert reason is not None
    assert "HTTP 302" in reason
    assert "not followed" in reason


def test_garbage_instead_of_http_is_a_reason(serve: object) -> None:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")

    proxy, reason = fetch_configz(serve(answer), timeout=5)  # type: ignore[operator]
    assert proxy is None
    assert reason is not None
    assert "cannot read" in reason
