"""aiohttp: a TCPConnector whose sockets carry the keepalive policy from before connect().

Starts an HTTP/1.1 server on loopback, sends two requests over one pooled connection and reads the options back
on the socket the connector made (through a socket_factory of our own, which the adapter wraps).
"""

import asyncio
import http.server
import socket
import threading

import aiohttp

import keepalive
import keepalive.adapters.aiohttp


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


async def main(url: str) -> None:
    policy = keepalive.Policy(idle=60, interval=10, count=5)
    made: list[socket.socket] = []

    def my_socket_factory(addr_info: tuple) -> socket.socket:  # optional: your own factory still makes the socket
        family, type_, proto, _, _ = addr_info
        made.append(socket.socket(family, type_, proto))
        return made[-1]

    # keepalive_timeout: aiohttp closes pooled connections idle for more than 15 s by default.
    connector = keepalive.adapters.aiohttp.TCPConnector(
        policy=policy, socket_factory=my_socket_factory, keepalive_timeout=300, limit=50
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(2):
            async with session.get(url) as response:
                assert await response.read() == b"hello"
        assert len(made) == 1, "the second request reused the pooled connection"
        sock = made[0]  # still open: it waits in the pool
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
        print(f"two requests over local port {sock.getsockname()[1]}: SO_KEEPALIVE on, idle {policy.idle} s")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
threading.Thread(target=server.serve_forever, daemon=True).start()
asyncio.run(main(f"http://127.0.0.1:{server.server_port}/"))
server.shutdown()
server.server_close()
