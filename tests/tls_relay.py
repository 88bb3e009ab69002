"""A TLS-terminating TCP relay for adapter tests whose local server speaks no TLS."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading

from tests.http_servers import SERVER_CERT


class TlsRelay:
    """A TLS-terminating relay on loopback to a plain server (``upstream``), recording its clients' ports.

    The local PostgreSQL and RabbitMQ have no TLS; a client that speaks TLS from the first byte to this relay
    (asyncpg ``direct_tls=True``, aiormq ``amqps://``) gets asyncio's TLS transport over its TCP socket -- the
    layering a TLS connection to a TLS-enabled server has. The certificate is the test CA's (SAN 127.0.0.1).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.client_ports: list[int] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(SERVER_CERT))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, address = self.listener.accept()
                self.client_ports.append(address[1])
                threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            tls = self.context.wrap_socket(conn, server_side=True)
            with tls, socket.create_connection(self.upstream) as upstream:
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 5)[0]
                    for src in ready:
                        data = src.recv(65536)
                        if not data:
                            return
                        (upstream if src is tls else tls).sendall(data)

    def close(self) -> None:
        self.listener.close()

    def __enter__(self) -> TlsRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
