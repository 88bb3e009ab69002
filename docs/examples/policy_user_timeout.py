"""TCP_USER_TIMEOUT's trade-off: a peer that stops reading gets its connection dropped after user_timeout.

Linux only (other platforms have no TCP_USER_TIMEOUT); elsewhere the script says so and exits 0.
"""

import errno
import select
import socket
import sys
import time

import keepalive

if not hasattr(socket, "TCP_USER_TIMEOUT"):
    print("TCP_USER_TIMEOUT is not available on this platform")
    sys.exit(0)

impatient = keepalive.Policy(idle=60, interval=10, count=5, user_timeout=2)  # 2 s, to keep the demo short

server = keepalive.create_server(("127.0.0.1", 0), policy=keepalive.Policy(user_timeout=None))
sock = keepalive.create_connection(server.getsockname(), policy=impatient)
peer, _ = server.accept()  # a peer that is alive but never reads
with server, sock, peer:
    sock.setblocking(False)
    sent = 0
    try:
        while True:  # fill the peer's receive buffer and our send buffer
            sent += sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    print(f"sent {sent} bytes; the peer's window is now closed")

    # The peer's kernel still answers our zero-window probes, yet Linux aborts once user_timeout has passed
    # without progress: the connection ends with ETIMEDOUT.
    deadline = time.monotonic() + 60
    error = 0
    while not error and time.monotonic() < deadline:
        select.select([sock], [], [], 0.5)
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print("connection ended with", errno.errorcode.get(error, error))
    assert error == errno.ETIMEDOUT
