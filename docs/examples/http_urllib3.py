"""urllib3: a PoolManager whose connections carry the keepalive policy next to urllib3's own TCP_NODELAY.

Starts an HTTP/1.1 server on loopback, sends two requests over one pooled connection and reads the options back
with getsockopt. keepalive.adapters.urllib3.socket_options() gives the same list for any other urllib3 API.
"""

import http.server
import socket
import threading

import urllib3

import keepalive
import keepalive.adapters.urllib3


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/"

policy = keepalive.Policy(idle=60, interval=10, count=5)
local_ports = []
with keepalive.adapters.urllib3.PoolManager(policy=policy, maxsize=4) as http:  # any PoolManager argument
    for _ in range(2):
        response = http.request("GET", url, preload_content=False)
        sock = response.connection.sock  # the pooled connection's socket, while the body is unread
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # urllib3's default, kept
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
        local_ports.append(sock.getsockname()[1])
        assert response.read() == b"hello"
        response.release_conn()
        print(f"request over local port {local_ports[-1]}: SO_KEEPALIVE and TCP_NODELAY on")

assert local_ports[0] == local_ports[1], "the second request reused the pooled connection"

# The same options for an API the adapter does not wrap:
pool = urllib3.HTTPConnectionPool(
    "127.0.0.1", server.server_port, socket_options=keepalive.adapters.urllib3.socket_options(policy)
)
with pool:
    assert pool.request("GET", "/").data == b"hello"

server.shutdown()
server.server_close()
