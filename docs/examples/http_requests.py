"""requests: every connection of a Session carries the keepalive policy, also when the pool reuses it.

Starts an HTTP/1.1 server on loopback, sends two requests over one pooled keep-alive connection and reads the
options back from that connection's socket with getsockopt.
"""

import http.server
import socket
import threading

import keepalive
import keepalive.adapters.requests


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep the connection open between requests

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

policy = keepalive.Policy.below(350)  # a path through an AWS NAT gateway: idle flows forgotten after 350 s
local_ports = []
with keepalive.adapters.requests.session(policy) as session:  # or keepalive.adapters.requests.mount(session)
    session.trust_env = False  # this demo talks to loopback only: ignore any HTTP_PROXY in the environment
    for _ in range(2):
        response = session.get(url, stream=True)
        sock = response.raw.connection.sock  # the pooled connection's socket, while the body is unread
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == policy.idle
        local_ports.append(sock.getsockname()[1])
        assert response.content == b"hello"  # reading the body hands the connection back to the pool
        print(f"request over local port {local_ports[-1]}: SO_KEEPALIVE on, idle {policy.idle} s")

assert local_ports[0] == local_ports[1], "the second request reused the pooled connection"
server.shutdown()
server.server_close()
