"""Loopback servers for the HTTP adapter tests: an HTTP/1.1 origin (plain or TLS), a forward/CONNECT proxy, SOCKS5.

Every server is threaded, binds 127.0.0.1 on a free port and records the client port of each connection it
accepts, so a test can find the client library's real socket with ``helpers.socket_for_local_port``. The origin
also answers every request with the client port it sees, so a test can tell a reused connection from a new one.
Closing a server shuts down every connection it still holds, so no thread or socket outlives the test.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import select
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
CA_FILE = DATA / "http_ca.pem"
"""The test CA that signed ``http_server.pem`` (CN localhost, SAN 127.0.0.1 and localhost)."""
SERVER_CERT = DATA / "http_server.pem"


def client_ssl_context() -> ssl.SSLContext:
    """A client context that trusts the test CA."""
    return ssl.create_default_context(cafile=str(CA_FILE))


class _Tracking:
    """Mixin for socketserver servers: remember accepted sockets and client ports; close them all on close."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def _track_init(self) -> None:
        self.client_ports: list[int] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def track(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            self._conns.add(sock)
            if isinstance(address, tuple):
                self.client_ports.append(address[1])

    def close_all(self) -> None:
        with self._lock:
            conns, self._conns = set(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers any method and path (origin-form or absolute-form) with the client's port as the body."""

    protocol_version = "HTTP/1.1"
    server: OriginServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        body = str(self.client_address[1] if isinstance(self.client_address, tuple) else 0).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class OriginServer(_Tracking, http.server.ThreadingHTTPServer):
    """HTTP/1.1 keep-alive origin on 127.0.0.1 that answers with the client port; TLS with the test cert if asked."""

    def __init__(self, *, tls: bool = False) -> None:
        self._track_init()
        self._tls: ssl.SSLContext | None = None
        if tls:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(str(SERVER_CERT))
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}/"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self._tls is not None:
            # Handshake in the handler's thread (setup), not in the accept loop.
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.track(sock, address)
        return sock, address


class UnixOriginServer(_Tracking, socketserver.ThreadingUnixStreamServer):
    """The same origin on a Unix socket (for clients' ``uds=`` paths); answers with port 0."""

    def __init__(self, path: str) -> None:
        self._track_init()
        super().__init__(path, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.track(sock, address)
        return sock, address


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with contextlib.suppress(OSError):
        while True:
            readable, _, _ = select.select([a, b], [], [], 5)
            for src in readable:
                data = src.recv(65536)
                if not data:
                    return
                (b if src is a else a).sendall(data)


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return
            head += data
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.server.track(upstream, None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # Absolute-form request: relay it unchanged (the origin ignores the path); later requests on this
            # connection go to the same origin, which is all these tests need.
            authority = target.split("://", 1)[1].split("/", 1)[0]
            host, port = authority.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.server.track(upstream, None)
            upstream.sendall(head)
        with upstream:
            _relay(client, upstream)


class ProxyServer(_Tracking, socketserver.ThreadingTCPServer):
    """HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-form forwarding; ``client_ports`` lists its clients."""

    def __init__(self) -> None:
        self._track_init()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.track(sock, address)
        return sock, address


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("SOCKS client went away")
        data += chunk
    return data


class _SocksHandler(socketserver.BaseRequestHandler):
    server: SocksServer

    def handle(self) -> None:
        client: socket.socket = self.request
        with contextlib.suppress(ConnectionError, OSError):
            _version, nmethods = _recv_exact(client, 2)
            _recv_exact(client, nmethods)
            client.sendall(b"\x05\x00")  # no authentication
            _version, command, _reserved, atyp = _recv_exact(client, 4)
            if atyp == 1:
                host = socket.inet_ntop(socket.AF_INET, _recv_exact(client, 4))
            elif atyp == 4:
                host = socket.inet_ntop(socket.AF_INET6, _recv_exact(client, 16))
            else:
                host = _recv_exact(client, _recv_exact(client, 1)[0]).decode()
            (port,) = struct.unpack("!H", _recv_exact(client, 2))
            if command != 1:  # only CONNECT
                client.sendall(b"\x05\x07\x00\x01" + bytes(6))
                return
            upstream = socket.create_connection((host, port))
            self.server.track(upstream, None)
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            with upstream:
                _relay(client, upstream)


class SocksServer(_Tracking, socketserver.ThreadingTCPServer):
    """SOCKS5 proxy on 127.0.0.1 (no auth, CONNECT only); ``client_ports`` lists its clients."""

    def __init__(self) -> None:
        self._track_init()
        super().__init__(("127.0.0.1", 0), _SocksHandler)

    def url(self, scheme: str = "socks5") -> str:
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        self.track(sock, address)
        return sock, address


@contextlib.contextmanager
def serving(server: Any) -> Iterator[Any]:
    """Run ``server`` in a thread; on exit stop it, close every connection it holds and its listening socket."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.close_all()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def unix_origin(tmp_path: Path) -> Iterator[str]:
    """A :class:`UnixOriginServer` on a fresh path under ``tmp_path``; yields the path."""
    path = str(tmp_path / "origin.sock")
    with serving(UnixOriginServer(path)):
        yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
