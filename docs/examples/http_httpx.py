"""httpx, sync and async: transports whose connections carry the keepalive policy, also when reused.

Starts an HTTP/1.1 server on loopback, sends two requests per client over one pooled connection and reads the
options back through the response's public network_stream extension.
"""

import asyncio
import http.server
import socket
import threading

import httpx

import keepalive
import keepalive.adapters.httpx


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


def check(response: httpx.Response, policy: keepalive.Policy) -> int:
    """Assert the connection's socket carries the policy; return its local port."""
    sock = response.extensions["network_stream"].get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
    return int(sock.getsockname()[1])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/"
policy = keepalive.Policy.below(240)  # Azure load balancer / NAT gateway: 4 minutes

# keepalive_expiry: httpx closes pooled connections idle for more than 5 s by default; raise it when
# connections should survive longer idle gaps (TCP keepalive then keeps the path's state alive).
limits = httpx.Limits(max_keepalive_connections=10, keepalive_expiry=300)
transport = keepalive.adapters.httpx.HTTPTransport(policy=policy, limits=limits)  # any HTTPTransport argument
with httpx.Client(transport=transport) as client:
    ports = [check(client.get(url), policy) for _ in range(2)]
    assert ports[0] == ports[1], "the second request reused the pooled connection"
    print(f"sync: two requests over local port {ports[0]}, keepalive idle {policy.idle} s")


async def main() -> None:
    transport = keepalive.adapters.httpx.AsyncHTTPTransport(policy=policy, limits=limits)
    async with httpx.AsyncClient(transport=transport) as client:
        ports = [check(await client.get(url), policy) for _ in range(2)]
        assert ports[0] == ports[1]
        print(f"async: two requests over local port {ports[0]}")


asyncio.run(main())
server.shutdown()
server.server_close()
